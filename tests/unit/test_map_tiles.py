"""Map tiles and the months document: a snow season's days drawn in the colour map (each value
in the colour `SNOW_DAYS` gives it, no data transparent), beside true-colour months."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from sansnuages import errors
from sansnuages.api import map_routes, tiles
from sansnuages.formats.colour_maps import SNOW_DAYS
from sansnuages.raster import cog

NODATA = 65535
RES = 100.0
WEST, SOUTH, EAST, NORTH = 4.0, 50.0, 5.0, 50.6
"""The raster's extent in degrees (written in web mercator, so tiles cut it without warping)."""
LEFT_DAYS, RIGHT_DAYS = 45, 200


def _season_cog(path: Path) -> tuple[str, Affine, tuple[int, int]]:
    """West half 45 days, east half 200 days, a southern strip without data."""
    mercator = morecantile.tms.get("WebMercatorQuad")
    left, bottom = mercator.xy(WEST, SOUTH)
    right, top = mercator.xy(EAST, NORTH)
    width, height = round((right - left) / RES), round((top - bottom) / RES)
    data = np.full((height, width), LEFT_DAYS, dtype="uint16")
    data[:, width // 2 :] = RIGHT_DAYS
    data[-height // 4 :, :] = NODATA
    affine = Affine(RES, 0, left, 0, -RES, top)
    cog.write_cog(
        str(path), data, crs="EPSG:3857", transform=affine, nodata=NODATA,
        OVERVIEW_RESAMPLING="NEAREST",
    )  # fmt: skip
    return str(path), affine, (height, width)


def _season_item(href: str, affine: Affine, shape_hw: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": "mosaic-TST-snow-2018",
        "collection": "mosaics",
        "bbox": [WEST, SOUTH, EAST, NORTH],
        "geometry": {"type": "Point", "coordinates": [4.5, 50.3]},
        "properties": {
            "datetime": "2017-09-01T00:00:00Z",
            "start_datetime": "2017-09-01T00:00:00Z",
            "end_datetime": "2018-08-31T23:59:59.999999Z",
            "sansnuages:product": "snow-cover-duration",
            "sansnuages:period": "snow-2018",
            "sansnuages:area_id": "TST",
            "sansnuages:area": "Testland",
        },
        "assets": {
            "SCD": {
                "href": href,
                "proj:transform": list(affine)[:6],
                "proj:shape": list(shape_hw),
                "raster:bands": [{"data_type": "uint16", "nodata": NODATA, "unit": "days"}],
                "sansnuages:colour_map": "snow-days",
            },
            "thumbnail": {"href": "preview.png"},
        },
    }


def _month_item(month: str) -> dict[str, Any]:
    """A true-colour mosaic Item as made before products were named."""
    return {
        "id": f"mosaic-TST-{month}",
        "collection": "mosaics",
        "bbox": [WEST, SOUTH, EAST, NORTH],
        "geometry": {"type": "Point", "coordinates": [4.5, 50.3]},
        "properties": {
            "datetime": f"{month}-15T00:00:00Z",
            "start_datetime": f"{month}-01T00:00:00Z",
            "end_datetime": f"{month}-28T00:00:00Z",
            "sansnuages:area_id": "TST",
            "sansnuages:area": "Testland",
        },
        "assets": {
            "visual": {"href": "s3://b/visual.tif", "proj:transform": [10.0, 0, 0, 0, -10.0, 0]}
        },
    }


def _rgba(png: bytes) -> np.ndarray:
    with warnings.catch_warnings(), rasterio.MemoryFile(png) as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open() as src:
            return src.read()


def _colour(days: int) -> list[int]:
    return [int(v) for v in SNOW_DAYS.rgba(np.array([days]))[:, 0]]


@pytest.fixture
def season(tmp_path: Path) -> dict[str, Any]:
    return _season_item(*_season_cog(tmp_path / "scd.tif"))


def test_a_season_tile_shows_each_value_in_its_colour_and_no_data_clear(
    season: dict[str, Any],
) -> None:
    layer = tiles.layer_of(season)
    assert layer.colour_map is SNOW_DAYS and layer.nodata == NODATA
    assert layer.product == "snow-cover-duration"
    zoom = layer.maxzoom
    mercator = morecantile.tms.get("WebMercatorQuad")
    checks = {(4.2, 50.45): LEFT_DAYS, (4.8, 50.45): RIGHT_DAYS, (4.5, 50.02): None}
    for (lon, lat), days in checks.items():
        tile = mercator.tile(lon, lat, zoom)
        rgba = _rgba(tiles.tile_png(layer, zoom, tile.x, tile.y))
        bounds = mercator.xy_bounds(tile)
        x, y = mercator.xy(lon, lat)
        col = int((x - bounds.left) / (bounds.right - bounds.left) * 256)
        row = int((bounds.top - y) / (bounds.top - bounds.bottom) * 256)
        pixel = rgba[:, row, col].tolist()
        if days is None:
            assert pixel[3] == 0  # no data: transparent
        else:
            assert pixel == _colour(days), (lon, lat)
    # a tile across the two halves holds both colours and nothing in between (never blended)
    tile = mercator.tile(4.5, 50.4, zoom - 3)
    rgba = _rgba(tiles.tile_png(layer, zoom - 3, tile.x, tile.y))
    opaque = rgba[3] == 255
    colours = {tuple(c) for c in rgba[:, opaque].T.tolist()}
    assert colours == {tuple(_colour(LEFT_DAYS)), tuple(_colour(RIGHT_DAYS))}


def test_tilejson_names_the_product_and_its_legend(season: dict[str, Any]) -> None:
    document = tiles.tilejson(tiles.layer_of(season), "http://x/{z}/{x}/{y}.png")
    assert document["sansnuages:product"] == "snow-cover-duration"
    assert document["sansnuages:legend"] == SNOW_DAYS.legend()
    month = tiles.tilejson(tiles.layer_of(_month_item("2018-07")), "http://x/{z}/{x}/{y}.png")
    assert month["sansnuages:product"] == "true-colour" and month["sansnuages:legend"] is None


def test_an_item_without_a_drawable_asset_or_with_an_unknown_colour_map(
    season: dict[str, Any],
) -> None:
    season["assets"]["SCD"]["sansnuages:colour_map"] = "rainbow"
    with pytest.raises(errors.NotFound, match="unknown colour map"):
        tiles.layer_of(season)
    del season["assets"]["SCD"]
    with pytest.raises(errors.NotFound, match="no visual asset"):
        tiles.layer_of(season)


def test_the_months_document_lists_months_and_seasons(season: dict[str, Any]) -> None:
    items = [_month_item("2018-07"), season, _month_item("2017-08")]
    ordered = sorted(items, key=lambda i: (map_routes._start(i), i["id"]))
    document = map_routes.months_document(ordered, "http://api")
    assert [m["month"] for m in document["months"]] == ["2017-08", "snow-2018", "2018-07"]
    assert [m["product"] for m in document["months"]] == [
        "true-colour",
        "snow-cover-duration",
        "true-colour",
    ]
    assert [p["product"] for p in document["products"]] == ["true-colour", "snow-cover-duration"]
    snow = document["products"][1]
    assert snow["title"] == "Snow cover duration" and snow["legend"] == SNOW_DAYS.legend()
    assert document["products"][0]["legend"] is None
    entry = document["months"][1]
    assert entry["legend"] == SNOW_DAYS.legend() and entry["until"] == "2018-08"
    assert entry["tilejson"] == "http://api/map/mosaic-TST-snow-2018/tilejson.json"
    assert document["months"][0]["until"] == "2017-08"


def test_the_viewer_url_of_a_season_asks_for_its_product() -> None:
    assert map_routes.viewer_url("http://api/", "TST", "2018-07") == (
        "http://api/viewer/TST?month=2018-07"
    )
    assert map_routes.viewer_url("http://api", "TST", "snow-2018") == (
        "http://api/viewer/TST?month=snow-2018&product=snow-cover-duration"
    )
