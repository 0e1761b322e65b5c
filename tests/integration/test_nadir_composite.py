"""Nadir normalisation in a tile's synthesis: the setting, the angles from the ingested
product (its Item and its metadata's angle grids) and the L3A Item that says so."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from sansnuages.period import SynthesisPeriod
from sansnuages.processing.tile_inputs import view_geometry
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stac.common import COG
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.ingest import Ingestor
from sansnuages.stores.messages import TileTask
from sansnuages.tools.simulate import simulate_product

TILE = "31UFS"
WHEN = datetime(2018, 7, 14, 10, 56, tzinfo=UTC)


def _product(folder: Path, directional: bool) -> Path:
    return simulate_product(
        TILE, WHEN, "SENTINEL2A", folder, 1220, seed=21, cloud_cover=0.0, directional=directional
    )


@pytest.fixture()
def products(tmp_path: Path) -> tuple[Path, Path]:
    return _product(tmp_path / "flat", False), _product(tmp_path / "directional", True)


def _read_zip_band(path: Path, band: str) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith(f"_FRE_{band}.tif"))
    with rasterio.open(f"/vsizip/{path}/{member}") as src:
        return src.read(1).astype(np.float64)


def _read_asset(settings: Settings, item: dict, key: str) -> np.ndarray:
    href = item["assets"][key]["href"].replace("s3://", "/vsis3/", 1)
    with gdal_env(settings), rasterio.open(href) as src:
        return src.read(1).astype(np.float64)


def test_the_setting_brings_a_tile_to_nadir_view(
    function_settings: Settings, products: tuple[Path, Path]
) -> None:
    """One clear directional view: without normalisation the synthesis is that view; with it,
    the view as seen from nadir, which is the flat twin product (same scene, same seed)."""
    flat, directional = products
    ingestor = Ingestor.from_settings(function_settings)
    key = f"incoming/{directional.name}"
    ingestor.bucket.put_bytes(key, directional.read_bytes(), "application/zip")
    ingestor.ingest(key)
    results = {
        nadir: bands["B8"]
        for nadir, bands in _synthesise_off_and_on(
            function_settings, "2018-07-test", ("B8",)
        ).items()
    }
    seen, nadir_view = _read_zip_band(directional, "B8"), _read_zip_band(flat, "B8")
    assert np.abs(results[False] - seen).max() <= 1  # not normalised: the view as it is
    off = np.abs(results[False] - nadir_view).max()
    on = np.abs(results[True] - nadir_view)
    assert off > 40  # the directional effect in NIR, in DN of 1e-4
    assert on.max() <= 8 and on.mean() < 2  # per-pixel angles from the metadata's grids


def test_a_product_seen_from_nadir_is_left_as_it_is(
    function_settings: Settings, products: tuple[Path, Path]
) -> None:
    """A product without directional effects declares the nadir view its pixels show (view
    zenith 0, no angle grids), so the normalisation, on by default, changes none of its
    pixels: the demo's products are not "corrected" for angles they were never seen at."""
    flat, _ = products
    ingestor = Ingestor.from_settings(function_settings)
    key = f"incoming/{flat.name}"
    ingestor.bucket.put_bytes(key, flat.read_bytes(), "application/zip")
    result = ingestor.ingest(key)
    assert result.item_key is not None
    l2a = pystac.Item.from_dict(ingestor.bucket.get_json(result.item_key))
    l2a.validate()
    assert (l2a.properties["view:incidence_angle"], l2a.properties["view:azimuth"]) == (0, 0)
    assert view_geometry(l2a.properties) is not None  # so the normalisation does run
    results = _synthesise_off_and_on(function_settings, "2018-07-flat", ("B2", "B8", "B12"))
    for band, off in results[False].items():
        assert off.tobytes() == results[True][band].tobytes(), band
    assert np.abs(results[True]["B8"] - _read_zip_band(flat, "B8")).max() <= 1


def _synthesise_off_and_on(
    function_settings: Settings, job_id: str, bands: tuple[str, ...]
) -> dict[bool, dict[str, np.ndarray]]:
    """The tile's July synthesis without, then with, nadir normalisation (two versions of one
    job), each checked to say in its Item which it was; the asked FRC bands of each."""
    period = SynthesisPeriod.parse("2018-07")
    results = {}
    for version, nadir in enumerate((False, True)):
        settings = replace(function_settings, nadir_normalisation=nadir)
        compositor = TileCompositor.from_settings(settings)
        item_key = compositor.synthesise(TileTask(job_id, TILE, period, version))
        item = compositor.bucket.get_json(item_key)
        assert item["properties"]["sansnuages:nadir_normalisation"] is nadir
        _assert_stored_as_described(compositor, item)
        results[nadir] = {b: _read_asset(settings, item, f"FRC_{b}") for b in bands}
    return results


def _assert_stored_as_described(compositor: TileCompositor, item: dict[str, object]) -> None:
    """Each raster of the Item is stored with the size the Item gives it, as a COG (the
    layers are written on local disk and then stored, their sizes read from the files)."""
    assets = item["assets"]
    assert isinstance(assets, dict)
    rasters = {k: a for k, a in assets.items() if a["type"].startswith("image/tiff")}
    assert len(rasters) == 16  # 10 bands, FLG / WGT / DTS of each group (Sentinel-2 only)
    bucket = compositor.bucket
    for name, asset in rasters.items():
        head = bucket.client.head_object(Bucket=bucket.name, Key=asset["href"].split("/", 3)[3])
        assert head["ContentLength"] == asset["file:size"], name
        assert head["ContentType"] == COG, name
