"""The mosaic stage on the S3 server: one COG for a small area, parts fanned out for a large one."""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform

from sansnuages import layout
from sansnuages.errors import InvalidRequest
from sansnuages.formats import grid
from sansnuages.period import SynthesisPeriod
from sansnuages.raster import cog
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stages.mosaic import Mosaicker
from sansnuages.stages.publish import ensure_collection
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore
from sansnuages.tools import cli

MONTH = "2018-07"
TILES = {"31UFS": (800, 600, 400), "31UGS": (1600, 1200, 200)}
"""Two Belgian tiles, each one flat colour (DN of B4, B3, B2)."""
PIXEL = 1830.0  # 60 px per 109.8 km tile: small rasters, real geometry


def _l3a_item(bucket: DataBucket, name: str, job_id: str) -> dict[str, Any]:
    tile = grid.tile(name)
    affine = Affine(PIXEL, 0, tile.ulx, 0, -PIXEL, tile.uly)
    size = round(tile.size_m / PIXEL)
    period = SynthesisPeriod.parse(MONTH)
    prefix = f"l3a/{name}/2018/07/L3A-{name}/"
    assets = {}
    for band, dn in zip(("B4", "B3", "B2"), TILES[name], strict=True):
        key = f"{prefix}FRC_{band}.tif"
        with gdal_env(bucket.settings):
            cog.write_cog(
                layout.vsi_path(bucket.name, key),
                np.full((size, size), dn, "int16"),
                crs=f"EPSG:{tile.epsg}",
                transform=affine,
                nodata=-10000,
            )
        assets[f"FRC_{band}"] = {
            "href": layout.s3_href(bucket.name, key),
            "proj:transform": list(affine)[:6],
            "raster:bands": [{"scale": 1e-4, "nodata": -10000}],
        }
    footprint = tile.footprint_lonlat()
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"L3A-{name}-{MONTH}",
        "collection": "sentinel2-l3a",
        "geometry": footprint.__geo_interface__,
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": period.centre_datetime.isoformat(),
            "start_datetime": period.start.isoformat(),
            "end_datetime": period.end.isoformat(),
            "grid:code": f"MGRS-{name}",
            "sansnuages:job": job_id,
        },
        "links": [],
        "assets": assets,
    }


def _setup(settings: Settings) -> tuple[DataBucket, Catalog, JobStore, str]:
    bucket = DataBucket(settings)
    catalog = Catalog(settings.catalog_table, settings=settings)
    jobs = JobStore(settings)
    job, _ = jobs.create(MONTH, "Belgium", "BEL", sorted(TILES))
    ensure_collection(bucket, catalog, "sentinel2-l3a")
    for name in TILES:
        catalog.put_item(_l3a_item(bucket, name, job.job_id))
    return bucket, catalog, jobs, job.job_id


def _colour_at(path: str, settings: Settings, lon: float, lat: float) -> list[int]:
    with gdal_env(settings), rasterio.open(path) as src:
        (x,), (y,) = transform("EPSG:4326", src.crs, [lon], [lat])
        return [int(v) for v in next(src.sample([(x, y)]))]


def test_a_small_area_is_one_cog(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    item_key = mosaicker.run(job_id, resolution=1000.0)
    assert item_key == "mosaics/BEL/2018/07/mosaic-BEL-2018-07.json"
    item = bucket.get_json(item_key)
    assert item["assets"]["visual"]["type"].startswith("image/tiff; application=geotiff")
    assert "overview" not in item["assets"]
    assert {link["rel"] for link in item["links"]} >= {"derived_from"}
    assert item["properties"]["sansnuages:piece"] == 0
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.mosaic_item == item_key


def test_a_large_area_is_built_as_parts_by_parallel_messages(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs, part_pixels=64)
    assert mosaicker.run(job_id, resolution=1000.0) is None  # planned, parts queued
    sqs = boto3.client(
        "sqs", endpoint_url=function_settings.endpoint_url, region_name=function_settings.region
    )
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=function_settings.mosaic_queue_url, MaxNumberOfMessages=10
    ).get("Messages"):
        messages.extend(json.loads(m["Body"]) for m in batch)
    assert len(messages) >= 4 and all(set(m) == {"v", "plan", "part"} for m in messages)
    assert jobs.get(job_id).state != JobState.DONE  # type: ignore[union-attr]
    results = [mosaicker.handle(m) for m in messages]  # the pump, in any order
    item_key = results[-1]
    assert item_key == "mosaics/BEL/2018/07/mosaic-BEL-2018-07.json"
    assert results[:-1] == [None] * (len(results) - 1)
    item = bucket.get_json(item_key)
    parts = [k for k in item["assets"] if k.startswith("part-")]
    assert len(parts) >= 4
    assert item["assets"]["visual"]["type"] == "application/x-vrt"
    assert "overview" in item["assets"]["overview"]["roles"]
    vrt = cog.s3_to_vsi(item["assets"]["visual"]["href"])
    overview = cog.s3_to_vsi(item["assets"]["overview"]["href"])
    for path in (vrt, overview):
        # 1 + DN / 2000 * 254 in each tile's own interior, whichever part holds the pixel
        assert _colour_at(path, function_settings, 4.9, 50.85) == [103, 77, 52]  # 31UFS
        assert _colour_at(path, function_settings, 6.1, 50.45) == [204, 153, 26]  # 31UGS
        assert _colour_at(path, function_settings, 5.75, 51.25) == [0, 0, 0]  # Weert, NL
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.mosaic_item == item_key
    again = mosaicker.handle(messages[0])  # a duplicate delivery: nothing rebuilt, same Item
    assert again == item_key


def _plan_keys(bucket: DataBucket) -> list[str]:
    return sorted(
        k for k in bucket.list_keys("mosaics/BEL/2018/07/parts/") if k.endswith("plan.json")
    )


def test_a_part_outside_the_plan_is_refused(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs, part_pixels=64, fan_out=False)
    assert mosaicker.run(job_id, resolution=1000.0) is not None  # parts built in this call
    (plan_key,) = _plan_keys(bucket)
    with pytest.raises(InvalidRequest, match="no part"):
        mosaicker.run_part(plan_key, "r999c999")
    # as queue messages: raised (they end in the dead-letter queue), the job left alone
    for poison in (
        {"plan": plan_key, "part": "r999c999"},
        {"plan": "mosaics/BEL/2018/07/parts/none/plan.json", "part": "a"},
        "not json",
    ):
        with pytest.raises(InvalidRequest):
            mosaicker.handle(poison, last_attempt=True)
    assert jobs.get(job_id).state == JobState.DONE  # type: ignore[union-attr]


def test_parts_belong_to_their_run_grid_and_plan(function_settings: Settings) -> None:
    """A stray part in the folder is not assembled; a re-run and a rebuild at another
    resolution write parts of their own, never the old run's."""
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs, part_pixels=64, fan_out=False)
    first = mosaicker.run(job_id, resolution=1000.0)
    assert first is not None
    (plan_key,) = _plan_keys(bucket)
    folder = plan_key.removesuffix("plan.json")
    assert "run1-" in folder and "-1000m-" in folder
    cells = {c["name"] for c in bucket.get_json(plan_key)["cells"]}
    parts = {k for k in bucket.get_json(first)["assets"] if k.startswith("part-")}
    stray = bucket.get_bytes(f"{folder}{sorted(parts)[0].removeprefix('part-')}.tif")
    bucket.put_bytes(f"{folder}r99c99.tif", stray, "image/tiff")  # not in the plan
    last = sorted(cells)[-1]
    bucket.delete(f"{folder}{last}.tif") if bucket.exists(f"{folder}{last}.tif") else None
    bucket.delete(f"{folder}{last}.empty") if bucket.exists(f"{folder}{last}.empty") else None
    again = mosaicker.run_part(plan_key, last)  # the last part again: assembles the plan's
    assert again == first
    assert {k for k in bucket.get_json(first)["assets"] if k.startswith("part-")} == parts
    assert "part-r99c99" not in bucket.get_json(first)["assets"]
    # a re-run of the month: its own folder, whatever the old run left
    jobs.finish(job_id, JobState.DONE)
    job, started = jobs.create(MONTH, "Belgium", "BEL", sorted(TILES))
    assert started and job.run == 2
    assert mosaicker.run(job_id, resolution=1000.0) == first
    assert mosaicker.run(job_id, resolution=2000.0) == first  # a rebuild on another grid
    folders = {k.removesuffix("plan.json") for k in _plan_keys(bucket)}
    assert len(folders) == 3 and any("run2-" in f and "-2000m-" in f for f in folders)


def test_a_month_without_syntheses_fails_the_job_once_with_the_reason(
    function_settings: Settings,
) -> None:
    bucket, catalog, jobs, _ = _setup(function_settings)
    job, _ = jobs.create("2018-03", "Belgium", "BEL", ["31UFS"])
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    assert mosaicker.handle({"v": 1, "job_id": job.job_id}) is None  # not raised: no retry
    failed = jobs.get(job.job_id)
    assert failed is not None and failed.state == JobState.FAILED
    assert "NoInputs: no synthesis of 2018-03" in (failed.reason or "")


def test_a_mosaic_that_fails_on_its_last_delivery_fails_the_job(
    function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("S3 went away")

    monkeypatch.setattr(mosaicker, "build", unreachable)
    with pytest.raises(ConnectionResetError):
        mosaicker.handle({"v": 1, "job_id": job_id})
    assert jobs.get(job_id).state == JobState.RUNNING  # type: ignore[union-attr]
    with pytest.raises(ConnectionResetError):  # raised still: the message goes to the DLQ
        mosaicker.handle({"v": 1, "job_id": job_id}, last_attempt=True)
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.FAILED
    assert job.reason == "gave up after the last retry: ConnectionResetError: S3 went away"


def _mask_at(path: str, settings: Settings, lon: float, lat: float) -> int:
    with gdal_env(settings), rasterio.open(path) as src:
        (x,), (y,) = transform("EPSG:4326", src.crs, [lon], [lat])
        row, col = src.index(x, y)
        return int(src.dataset_mask(window=((row, row + 1), (col, col + 1)))[0, 0])


def test_a_lossy_codec_in_parts_keeps_no_data_in_masks(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs, part_pixels=64, fan_out=False)
    message = {"job_id": job_id, "resolution": 1000.0, "codec": "webp"}
    item_key = mosaicker.handle(message)
    assert item_key is not None
    item = bucket.get_json(item_key)
    assert "nodata" not in item["assets"]["visual"]["raster:bands"][0]
    for path in (cog.s3_to_vsi(item["assets"][k]["href"]) for k in ("visual", "overview")):
        colour = _colour_at(path, function_settings, 4.9, 50.85)  # 31UFS: 103, 77, 52
        assert np.abs(np.array(colour) - [103, 77, 52]).max() <= 2
        assert _mask_at(path, function_settings, 4.9, 50.85) == 255
        assert _mask_at(path, function_settings, 5.75, 51.25) == 0  # Weert, NL: outside


def test_an_unknown_codec_fails_the_job_with_the_reason(function_settings: Settings) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    mosaicker = Mosaicker(function_settings, bucket, catalog, jobs)
    assert mosaicker.handle({"job_id": job_id, "codec": "gif"}) is None
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.FAILED
    assert "unknown codec 'gif'" in (job.reason or "")
    assert not bucket.list_keys("mosaics/BEL/")


def test_the_cli_rebuilds_a_month_on_another_grid(
    function_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, catalog, jobs, job_id = _setup(function_settings)
    first = Mosaicker(function_settings, bucket, catalog, jobs).run(job_id, resolution=1000.0)
    assert first is not None
    argv = ["mosaic", MONTH, "--area", "Belgium", "--from-env"]
    assert cli.main([*argv, "--crs", "EPSG:32631", "--resolution", "2000"]) == 0
    assert f"mosaic written: {first}" in capsys.readouterr().out
    visual = bucket.get_json(first)["assets"]["visual"]
    assert visual["proj:code"] == "EPSG:32631" and visual["proj:transform"][0] == 2000.0
    with gdal_env(function_settings):
        with rasterio.open(cog.s3_to_vsi(visual["href"])) as src:
            assert src.crs.to_epsg() == 32631 and src.res == (2000.0, 2000.0)
    # bad options are refused before any work: the finished job stays as it was
    for bad, message in (
        (["--codec", "gif"], "unknown codec"),
        (["--crs", "EPSG:999999"], "unknown CRS"),
        (["--resolution", "-5"], "must be positive"),
    ):
        assert cli.main([*argv, *bad]) == 2
        assert message in capsys.readouterr().err
    job = jobs.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.mosaic_item == first
    assert cli.main(["mosaic", MONTH, "--area", "Netherlands", "--from-env"]) == 2
    assert "no job of 2018-07 over Netherlands" in capsys.readouterr().err
