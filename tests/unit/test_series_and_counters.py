"""The pure parts of the time series (mask decoding, band mapping, means) and of the production
statistics (counters recomputed from Items, the daily and monthly document)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from sansnuages import errors
from sansnuages.processing.timeseries import (
    PixelBlock,
    asset_of_band,
    decode_flags,
    observe,
    parse_bands,
)
from sansnuages.stores.catalog.stats import (
    ACQUIRED_PK,
    INGESTED_PK,
    counts_from_items,
    production_csv,
    production_document,
)


def _item(collection: str, **properties: Any) -> dict[str, Any]:
    fre = {"raster:bands": [{"scale": 0.001 if "landsat" in collection else 0.0001,
                             "nodata": -10000}]}  # fmt: skip
    group = "XS" if "landsat" in collection else "R1"
    names = ("B2", "B5") if "landsat" in collection else ("B2", "B8")
    assets = {f"FRE_{b}": fre for b in names}
    assets |= {f"{k}_{group}": {} for k in ("CLM", "MG2", "EDG")}
    assets[f"ATB_{group}"] = {"raster:bands": [{"scale": 0.05}, {"scale": 0.005}]}
    return {"id": properties.pop("id", "P"), "collection": collection,
            "properties": properties, "assets": assets}  # fmt: skip


def test_flags_follow_the_theia_bit_order() -> None:
    clm = np.array([[0, 1 | 2, 1 | 32, 1 | 64, 16]], dtype=np.uint8)
    mg2 = np.array([[1, 0, 4, 0, 0]], dtype=np.uint8)
    edg = np.array([[0, 0, 0, 1, 0]], dtype=np.uint8)
    flags = decode_flags(clm, mg2, edg)
    assert flags["cloud"].tolist() == [[False, True, False, False, False]]
    assert flags["shadow"].tolist() == [[False, False, True, True, False]]
    assert flags["water"].tolist() == [[True, False, False, False, False]]
    assert flags["snow"].tolist() == [[False, False, True, False, False]]
    assert flags["edge"].tolist() == [[False, False, False, True, False]]


def test_landsat_answers_with_its_twin_bands() -> None:
    landsat = _item("landsat8-l2a")
    assert asset_of_band(landsat, "B8") == "FRE_B5"
    assert asset_of_band(landsat, "B5") is None  # no red edge on Landsat-8
    assert asset_of_band(_item("sentinel2-l2a"), "B8") == "FRE_B8"
    assert parse_bands("b4, B2,B4") == ("B4", "B2")
    with pytest.raises(errors.InvalidRequest):
        parse_bands("B2,B13")


def test_a_polygon_averages_its_clear_pixels_at_the_assets_scale() -> None:
    item = _item("landsat8-l2a", datetime="2018-07-09T10:30:12Z", platform="landsat-8")
    inside = np.array([[True, True], [True, False]])
    blocks = {
        "FRE_B2": PixelBlock(np.array([[100, 300], [900, 5]], np.int16), inside),
        "FRE_B5": PixelBlock(np.array([[200, -10000], [400, 5]], np.int16), inside),
        "CLM_XS": PixelBlock(np.array([[0, 0], [3, 0]], np.uint8), inside),
        "MG2_XS": PixelBlock(np.zeros((2, 2), np.uint8), inside),
        "EDG_XS": PixelBlock(np.zeros((2, 2), np.uint8), inside),
        "ATB_XS": PixelBlock(np.array([[20, 40], [90, 1]], np.uint8), inside),
    }
    observation = observe(item, ("B2", "B8", "B5"), blocks)
    assert observation is not None
    assert observation.pixels == 3 and observation.clear_fraction == pytest.approx(2 / 3, abs=1e-4)
    assert observation.clear is True
    assert observation.reflectance == {"B2": 0.2, "B8": 0.2, "B5": None}  # nodata left out
    assert observation.aot == pytest.approx(0.15)  # (20 + 40) / 2 * 0.005
    assert observation.flags["cloud"] == pytest.approx(1 / 3, abs=1e-4)


def test_counters_recomputed_from_items_count_an_acquisition_once() -> None:
    def product(pid: str, ingested: str, cloudy: bool = False, when: str = "2018-07-04T10:56:26Z",
                platform: str = "sentinel-2b") -> dict[str, Any]:  # fmt: skip
        return {"id": pid, "collection": "sentinel2-l2a", "properties": {
            "datetime": when, "platform": platform, "grid:code": "MGRS-31UFS",
            "sansnuages:cloudy": cloudy, "sansnuages:ingested": ingested}}  # fmt: skip

    counts = counts_from_items(
        [
            product("V1", "2018-07-06T00:00:00Z"),
            product("V2", "2018-08-01T00:00:00Z"),  # its reprocessing
            product("C", "2018-07-16T00:00:00Z", True, "2018-07-14T10:56:26Z", "sentinel-2a"),
            {"id": "L3A", "collection": "sentinel2-l3a", "properties": {}},
        ],
        ["2018-07-06T09:00:00+00:00", "2018-07-06T10:00:00+00:00"],
    )
    assert counts.days[ACQUIRED_PK, "2018-07-04"] == {"sentinel2-l2a|sentinel-2b": 1}
    assert counts.days[ACQUIRED_PK, "2018-07-14"] == {"sentinel2-l2a|sentinel-2a|cloudy": 1}
    assert counts.days[INGESTED_PK, "2018-07-06"] == {
        "sentinel2-l2a|sentinel-2b": 1,
        "quarantined": 2,
    }
    assert counts.days[INGESTED_PK, "2018-08-01"] == {"sentinel2-l2a|sentinel-2b": 1}
    assert len(counts.markers) == 2


def test_the_monthly_average_leaves_cloudy_products_out() -> None:
    acquired = {
        "2018-06-30": {"sentinel2-l2a|sentinel-2a": 3},
        "2018-07-01": {"sentinel2-l2a|sentinel-2a": 2, "landsat8-l2a|landsat-8": 1},
        "2018-07-02": {"sentinel2-l2a|sentinel-2b|cloudy": 4},
    }
    ingested = {"2018-07-02": {"sentinel2-l2a|sentinel-2b": 4, "quarantined": 1}}
    document = production_document(acquired, ingested, date(2018, 6, 30), date(2018, 7, 31))
    june, july = document["monthly"]
    assert (june["days"], june["acquired"], june["daily_average"]) == (1, 3, 3.0)
    assert june["whole_month"] is False
    assert (july["days"], july["acquired"], july["acquired_cloudy"]) == (31, 3, 4)
    assert july["daily_average"] == pytest.approx(3 / 31, abs=1e-4)
    assert july["daily_average_by_platform"] == {
        "landsat-8": pytest.approx(1 / 31, abs=1e-4),
        "sentinel-2a": pytest.approx(2 / 31, abs=1e-4),
    }
    landsat = production_document(acquired, ingested, date(2018, 7, 1), date(2018, 7, 2),
                                  ["landsat8-l2a"])  # fmt: skip
    assert landsat["monthly"][0]["acquired"] == 1
    lines = production_csv(document).splitlines()
    assert "2018-07-02,sentinel-2b,0,4,4,0" in lines and "2018-07-02,,0,0,0,1" in lines
