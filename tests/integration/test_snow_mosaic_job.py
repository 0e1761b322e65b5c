"""The mosaic stage for a snow season's job on the S3 server: the days of snow cover of two
tiles in two UTM zones, one uint16 COG (or parts) kept exactly, its preview in the colour map,
its Item in `mosaics`, the job finished."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform

from sansnuages import layout
from sansnuages.formats import grid
from sansnuages.formats.colour_maps import SNOW_DAYS
from sansnuages.period import HydrologicalYear
from sansnuages.raster import cog
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stages.mosaic import Mosaicker
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore, TileState

SEASON = HydrologicalYear(2018)
NODATA = 65535
PIXEL = 1830.0  # 60 px per 109.8 km tile: small rasters, real geometry
TILES = {"31UFS": 120, "32ULA": 250}
"""Flanders and the Ardennes' east (zone 31), the Eifel (zone 32): days of snow cover."""
IN_31UFS = (4.9, 50.85)
IN_32ULA = (6.3, 50.35)  # Manderfeld, in Belgium, south of 31UFS
OUTSIDE = (5.75, 51.25)  # Weert, the Netherlands: inside 31UFS, outside the area
MELT_HOLE = (slice(40, 44), slice(20, 24))
"""A block of 31UFS without a clear observation all season (no data)."""


def _scd_item(bucket: DataBucket, name: str, job_id: str) -> tuple[str, dict[str, Any]]:
    """A snow-season tile Item with its SCD COG (uint16, nodata 65535), stored in the bucket."""
    tile = grid.tile(name)
    affine = Affine(PIXEL, 0, tile.ulx, 0, -PIXEL, tile.uly)
    size = round(tile.size_m / PIXEL)
    days = np.full((size, size), TILES[name], "uint16")
    days[:, : size // 2] -= 1  # the western half one day less: any mix of the two shows
    if name == "31UFS":
        days[MELT_HOLE] = NODATA
    item_id = f"SNOW-SEASON-{name}-{SEASON.label}"
    prefix = f"snow/seasons/{name}/{SEASON.year}/{item_id}/"
    key = f"{prefix}SCD.tif"
    with gdal_env(bucket.settings):
        cog.write_cog(
            layout.vsi_path(bucket.name, key), days, crs=f"EPSG:{tile.epsg}", transform=affine,
            nodata=NODATA, OVERVIEW_RESAMPLING="NEAREST",
        )  # fmt: skip
    footprint = tile.footprint_lonlat()
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "snow-seasons",
        "geometry": footprint.__geo_interface__,
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": None,
            "start_datetime": SEASON.start_datetime.isoformat(),
            "end_datetime": SEASON.end_datetime.isoformat(),
            "grid:code": f"MGRS-{name}",
            "proj:code": f"EPSG:{tile.epsg}",
            "sansnuages:job": job_id,
        },
        "links": [{"rel": "collection", "href": "../../../../collections/snow-seasons.json"}],
        "assets": {
            "SCD": {
                "href": layout.s3_href(bucket.name, key),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "proj:code": f"EPSG:{tile.epsg}",
                "proj:shape": [size, size],
                "proj:transform": list(affine)[:6],
                "raster:bands": [{"data_type": "uint16", "nodata": NODATA, "unit": "days"}],
            }
        },
    }
    item_key = f"{prefix}{item_id}.json"
    bucket.put_json(item_key, item)
    return item_key, item


def _setup(settings: Settings) -> tuple[DataBucket, Catalog, JobStore, str, dict[str, str]]:
    """A finished snow job over Belgium: each tile recorded its Item, as the composite does."""
    bucket = DataBucket(settings)
    catalog = Catalog(settings.catalog_table, settings=settings)
    jobs = JobStore(settings)
    job, started = jobs.create(SEASON.label, "Belgium", "BEL", sorted(TILES))
    assert started and job.job_id == "snow-2018-BEL"
    keys = {}
    for name in TILES:
        keys[name], _ = _scd_item(bucket, name, job.job_id)
        assert jobs.finish_tile(job.job_id, name, TileState.DONE, item=keys[name])
    return bucket, catalog, jobs, job.job_id, keys


def _value_at(path: str, settings: Settings, lon: float, lat: float) -> int:
    with gdal_env(settings), rasterio.open(path) as src:
        (x,), (y,) = transform("EPSG:4326", src.crs, [lon], [lat])
        return int(next(src.sample([(x, y)]))[0])


def _tile_value(name: str, lon: float) -> int:
    """What the tile holds at a longitude: its western half one day less."""
    centre = grid.tile(name).centre_lonlat[0]
    return TILES[name] - (1 if lon < centre else 0)


def test_a_season_is_mosaicked_as_days_with_its_item_and_preview(
    function_settings: Settings,
) -> None:
    bucket, catalog, jobs, job_id, keys = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    item_key = mosaicker.handle({"v": 1, "job_id": job_id})  # the fan-in's message
    assert item_key == "mosaics/BEL/2017/09/mosaic-BEL-snow-2018.json"
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.mosaic_item == item_key
    item = bucket.get_json(item_key)
    assert item["collection"] == "mosaics" and item["id"] == "mosaic-BEL-snow-2018"
    props = item["properties"]
    assert props["sansnuages:product"] == "snow-cover-duration"
    assert props["sansnuages:period"] == "snow-2018"
    assert props["start_datetime"].startswith("2017-09-01T00:00:00")
    assert props["end_datetime"].startswith("2018-08-31T23:59:59")
    assert props["sansnuages:tiles"] == ["31UFS", "32ULA"]
    assert "visual" not in item["assets"]
    scd = item["assets"]["SCD"]
    assert scd["raster:bands"] == [{"nodata": NODATA, "data_type": "uint16", "unit": "days"}]
    assert scd["sansnuages:colour_map"] == "snow-days" and scd["roles"] == ["data"]
    assert scd["proj:transform"][0] == PIXEL  # the inputs' own pixel
    derived = sorted(link["href"] for link in item["links"] if link["rel"] == "derived_from")
    assert derived == sorted(layout.s3_href(bucket.name, k) for k in keys.values())
    assert catalog.get_item("mosaics", "mosaic-BEL-snow-2018")["id"] == item["id"]
    path = cog.s3_to_vsi(scd["href"])
    with gdal_env(function_settings), rasterio.open(path) as src:
        assert (src.count, src.dtypes, src.nodata) == (1, ("uint16",), NODATA)
        values = set(np.unique(src.read(1)).tolist())
    expected = {119, 120, 249}  # both halves of 31UFS; 32ULA's eastern half is in Germany
    assert values == expected | {NODATA}  # never mixed
    assert _value_at(path, function_settings, *IN_31UFS) == _tile_value("31UFS", IN_31UFS[0])
    assert _value_at(path, function_settings, *IN_32ULA) == _tile_value("32ULA", IN_32ULA[0])
    assert _value_at(path, function_settings, *OUTSIDE) == NODATA
    preview = bucket.get_bytes(item["assets"]["thumbnail"]["href"].split("/", 3)[3])
    with warnings.catch_warnings(), rasterio.MemoryFile(preview) as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open() as png:
            rgba = png.read()
    colours = {tuple(c) for c in rgba[:3, rgba[3] == 255].T.tolist()}
    assert colours == {tuple(SNOW_DAYS.rgba(np.array([v]))[:3, 0].tolist()) for v in expected}


def test_a_large_season_is_built_in_parts_kept_exact(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id, _ = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs, part_pixels=64, fan_out=False)
    item_key = mosaicker.run(job_id, resolution=1000.0)
    assert item_key == "mosaics/BEL/2017/09/mosaic-BEL-snow-2018.json"
    plans = [k for k in bucket.list_keys("mosaics/BEL/2017/09/parts/") if k.endswith("plan.json")]
    assert len(plans) == 1 and "/parts/snow-2018-run1-" in plans[0]  # not a month's folder
    item = bucket.get_json(item_key)
    assert item["assets"]["SCD"]["type"] == "application/x-vrt"
    assert len([k for k in item["assets"] if k.startswith("part-")]) >= 4
    for key in ("SCD", "overview"):
        path = cog.s3_to_vsi(item["assets"][key]["href"])
        assert item["assets"][key]["raster:bands"][0]["nodata"] == NODATA
        for lon, lat in (IN_31UFS, IN_32ULA):
            name = "31UFS" if (lon, lat) == IN_31UFS else "32ULA"
            assert _value_at(path, function_settings, lon, lat) == _tile_value(name, lon)
        assert _value_at(path, function_settings, *OUTSIDE) == NODATA
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.mosaic_item == item_key


@pytest.mark.parametrize("codec", ["webp", "jpeg"])
def test_a_codec_that_would_change_days_fails_the_job(
    function_settings: Settings, codec: str
) -> None:
    bucket, catalog, jobs, job_id, _ = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    assert mosaicker.handle({"job_id": job_id, "codec": codec}) is None
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.FAILED
    assert "cannot keep uint16" in (job.reason or "")
    assert not bucket.list_keys("mosaics/BEL/")


def test_a_season_without_tiles_fails_the_job_with_the_reason(function_settings: Settings) -> None:
    bucket = DataBucket(function_settings)
    catalog = Catalog(function_settings.catalog_table, settings=function_settings)
    jobs = JobStore(function_settings)
    job, _ = jobs.create("snow-2019", "Belgium", "BEL", ["31UFS"])
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    assert mosaicker.handle({"v": 1, "job_id": job.job_id}) is None
    failed = jobs.get(job.job_id)
    assert failed is not None and failed.state == JobState.FAILED
    assert "no snow season of snow-2019 over Belgium" in (failed.reason or "")
