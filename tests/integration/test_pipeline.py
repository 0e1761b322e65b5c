"""The whole event chain on the embedded local AWS, with the real handlers in worker processes:
upload -> S3 notification -> ingest -> schedule -> plan -> composites -> mosaic -> STAC search."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import rasterio
from pystac_client import Client
from rasterio.warp import transform
from waiting import wait_for

from sansnuages.formats import grid
from sansnuages.raster.gdal import gdal_env
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.cli import main as cli
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime, state_file
from sansnuages.tools.simulate import simulate_month

ROOT = Path(__file__).resolve().parents[2]
TILES = ["31UES", "31UFS"]
RESOLUTION = 1098.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local")


@pytest.fixture(scope="module")
def runtime(workdir: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", workdir, concurrency=2).start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate_month(
        TILES, 2018, 7, tmp_path_factory.mktemp("products"), resolution=RESOLUTION, seed=7
    )


def _without_member(source: Path, suffix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(buffer, "w") as copy:
        for info in original.infolist():
            if not info.filename.endswith(suffix):
                copy.writestr(info, original.read(info))
    return buffer.getvalue()


def _not_muscate() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday/photo.txt", "not a satellite product")
    return buffer.getvalue()


def _l2a_count(catalog: Catalog) -> int:
    page = catalog.search(["sentinel2-l2a", "landsat8-l2a"], None, None, None, 1000, None)
    return len(page.items)


@pytest.fixture(scope="module")
def ingested(runtime: LocalRuntime, products: list[Path]) -> dict[str, object]:
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    broken = _without_member(products[1], "_FRE_B3.tif")
    for path in products:
        bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
    # the same product again, under another name, and the first one notified twice
    bucket.client.upload_file(str(products[0]), bucket.name, f"incoming/again/{products[0].name}")
    bucket.put_bytes("incoming/notes.zip", b"this is not a zip", "application/zip")
    bucket.put_bytes("incoming/holiday.zip", _not_muscate(), "application/zip")
    bucket.put_bytes("incoming/missing band.zip", broken, "application/zip")
    catalog = Catalog(settings.catalog_table, settings=settings)
    wait_for(lambda: _l2a_count(catalog) == len(products), what="every product indexed")
    wait_for(lambda: len(_reasons(bucket)) == 3, what="three quarantined uploads")
    wait_for(
        lambda: not [k for k in bucket.list_keys("incoming/") if k.endswith(".zip")],
        what="drop zone emptied",
    )
    return {"settings": settings, "bucket": bucket, "catalog": catalog}


def _reasons(bucket: DataBucket) -> dict[str, dict[str, object]]:
    keys = [k for k in bucket.list_keys("quarantine/") if k.endswith(".reason.json")]
    return {k: bucket.get_json(k) for k in keys}


def test_every_product_is_indexed_once(ingested: dict[str, object], products: list[Path]) -> None:
    catalog = ingested["catalog"]
    assert isinstance(catalog, Catalog)
    page = catalog.search(["sentinel2-l2a", "landsat8-l2a"], None, None, None, 1000, None)
    ids = [item["id"] for item in page.items]
    assert len(ids) == len(set(ids)) == len(products)
    assert {path.stem for path in products} == set(ids)


def test_bad_uploads_are_quarantined_with_a_reason(ingested: dict[str, object]) -> None:
    bucket = ingested["bucket"]
    assert isinstance(bucket, DataBucket)
    reasons = _reasons(bucket)
    by_key = {str(r["key"]): r for r in reasons.values()}
    assert set(by_key) == {
        "incoming/notes.zip",
        "incoming/holiday.zip",
        "incoming/missing band.zip",
    }
    assert by_key["incoming/notes.zip"]["error"] == "NotAZip"
    assert by_key["incoming/holiday.zip"]["error"] == "NotAMuscateProduct"
    assert by_key["incoming/missing band.zip"]["error"] == "MissingBand"
    assert "B3" in str(by_key["incoming/missing band.zip"]["reason"])
    for reason in by_key.values():  # the upload itself is kept beside its reason
        assert bucket.exists(str(reason["quarantined_as"]))


def test_ingest_dead_letter_queue_stays_empty(
    ingested: dict[str, object], runtime: LocalRuntime
) -> None:
    status = runtime.status()["queues"]
    assert status["IngestDeadLetterQueue"]["visible"] == 0
    assert status["IngestQueue"]["visible"] == 0


@pytest.fixture(scope="module")
def job(ingested: dict[str, object], runtime: LocalRuntime):  # type: ignore[no-untyped-def]
    """The monthly schedule, fired through the control endpoint as on 10 August 2018."""
    schedule = "PlanFunctionMonthly"
    assert schedule in runtime.status()["schedules"]
    result = RuntimeClient(runtime.facts()).fire_schedule(schedule, "2018-08-10T03:00:00+00:00")
    assert result["ok"], result["error_message"]
    assert result["payload"]["tiles"] == TILES
    store = JobStore(ingested["settings"])  # type: ignore[arg-type]
    job_id = result["payload"]["job_id"]
    wait_for(lambda: store.get(job_id).finished, timeout=300, what="the job to finish")  # type: ignore[union-attr]
    return store.get(job_id)


def test_the_monthly_job_runs_every_tile_and_the_mosaic(job) -> None:  # type: ignore[no-untyped-def]
    assert job.month == "2018-07"
    assert job.state == JobState.DONE, job.reason
    assert [t.state for t in job.tiles] == [TileState.DONE, TileState.DONE]
    assert job.mosaic_item


def test_pystac_client_finds_every_stage(job, runtime: LocalRuntime) -> None:  # type: ignore[no-untyped-def]
    client = Client.open(runtime.facts()["stac_api_url"])
    assert {c.id for c in client.get_collections()} >= {"sentinel2-l2a", "sentinel2-l3a", "mosaics"}
    l3a = list(client.search(collections=["sentinel2-l3a"], datetime="2018-07").items())
    assert sorted(i.properties["grid:code"] for i in l3a) == [f"MGRS-{t}" for t in TILES]
    assert all(i.properties["start_datetime"].startswith("2018-06-22") for i in l3a)
    l2a = client.search(
        collections=["sentinel2-l2a"],
        bbox=[3.0, 50.5, 4.0, 51.0],
        datetime="2018-07-01/2018-07-31",
        limit=3,
    )
    pages = list(l2a.pages())
    items = [i for p in pages for i in p.items]
    assert len(pages) > 1 and len({i.id for i in items}) == len(items) > 3
    assert all(i.datetime and i.datetime.month == 7 for i in items)
    mosaics = list(client.search(collections=["mosaics"]).items())
    assert len(mosaics) == 1 and mosaics[0].properties["sansnuages:tiles"] == TILES


def test_the_mosaic_has_true_colour_inside_the_area(job, ingested: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    bucket = ingested["bucket"]
    settings = ingested["settings"]
    item = bucket.get_json(job.mosaic_item)  # type: ignore[attr-defined]
    path = item["assets"]["visual"]["href"].replace("s3://", "/vsis3/", 1)
    with gdal_env(settings), rasterio.open(path) as mosaic:  # type: ignore[attr-defined]
        assert mosaic.count == 3 and mosaic.dtypes[0] == "uint8"
        assert mosaic.crs.to_epsg() == 3035
        data = mosaic.read()
        valid = (data > 0).all(axis=0)
        assert 0.05 < valid.mean() < 1.0  # the two tiles cover part of the area, not all of it
        assert data[:, valid].min() >= 1
        # true colour at the centre of a tile is its synthesis, stretched from DN 0-2000 to 1-255
        lon, lat = grid.tile("31UES").centre_lonlat
        (x,), (y,) = transform("EPSG:4326", mosaic.crs, [lon], [lat])
        pixel = [int(v) for v in next(mosaic.sample([(x, y)]))]
    tile_item = bucket.get_json(job.tiles[0].item)  # type: ignore[attr-defined]
    expected = []
    with gdal_env(settings):  # type: ignore[attr-defined]
        for band in ("FRC_B4", "FRC_B3", "FRC_B2"):
            with rasterio.open(
                tile_item["assets"][band]["href"].replace("s3://", "/vsis3/", 1)
            ) as frc:
                (ux,), (uy,) = transform("EPSG:4326", frc.crs, [lon], [lat])
                dn = float(next(frc.sample([(ux, uy)]))[0])
            expected.append(1 + min(max(dn, 0), 2000) / 2000 * 254)
    assert pixel == pytest.approx(expected, abs=6), (pixel, expected)
    assert len(set(data[0, valid].tolist())) > 20  # a real image, not a constant


def test_the_cli_reports_the_job(
    job, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(workdir)
    assert state_file(workdir).exists()
    assert json.loads(state_file(workdir).read_text())["data_bucket"]
    assert cli(["jobs", job.job_id]) == 0
    output = capsys.readouterr().out
    assert "done" in output and "31UES" in output and "31UFS" in output


def test_a_month_started_by_hand_runs_again_to_completion(  # type: ignore[no-untyped-def]
    job, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    assert cli(["month", "2018-07", "--area", "BEL"]) == 0
    output = capsys.readouterr().out
    assert "2018-07-BEL" in output and "done" in output
    assert "31UES" in output and "31UFS" in output


def test_a_poison_message_ends_in_the_dead_letter_queue_after_the_retries(
    runtime: LocalRuntime,
) -> None:
    assert runtime.stack is not None
    queue = runtime.stack.queue("CompositeQueue")
    dead_letters = runtime.stack.queue(queue.dead_letter or "")
    sqs = runtime.client("sqs")
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"not": "a tile task"}))

    def in_dead_letter_queue() -> list[dict[str, object]]:
        response = sqs.receive_message(
            QueueUrl=dead_letters.url, AttributeNames=["All"], WaitTimeSeconds=1
        )
        return list(response.get("Messages", []))

    found: list[dict[str, object]] = []
    wait_for(
        lambda: bool(found.extend(in_dead_letter_queue()) or found), timeout=120, what="the DLQ"
    )
    (message,) = found
    assert json.loads(str(message["Body"])) == {"not": "a tile task"}
    receives = int(message["Attributes"]["ApproximateReceiveCount"])  # type: ignore[index]
    assert receives >= queue.max_receive_count  # type: ignore[operator]


TRIANGLE = {
    "type": "Polygon",
    "coordinates": [[[5.0, 50.6], [5.6, 50.6], [5.3, 51.2], [5.0, 50.6]]],
}
"""Inside 31UFS only (31UES ends near 4.55 E at this latitude)."""


def test_a_polygon_job_plans_the_tiles_it_touches_and_cuts_the_mosaic_to_it(  # type: ignore[no-untyped-def]
    job,
    ingested: dict[str, object],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Started by hand with an inline polygon (the CLI reads the file and sends the GeoJSON in
    the plan event); it runs after the Belgium jobs, so its tile reuses their synthesis."""
    from sansnuages.areas import area_geometry, geojson_argument

    monkeypatch.chdir(workdir)
    path = tmp_path / "triangle.geojson"
    path.write_text(json.dumps(TRIANGLE))
    assert cli(["month", "2018-07", "--area-geojson", str(path), "--area-name", "Triangle"]) == 0
    output = capsys.readouterr().out
    area = area_geometry(geojson_argument(str(path), "Triangle"))
    assert f"2018-07-{area.id}: 1 tiles (31UFS)" in output
    store = JobStore(ingested["settings"])  # type: ignore[arg-type]
    polygon_job = store.get(f"2018-07-{area.id}")
    assert polygon_job is not None and polygon_job.state == JobState.DONE, polygon_job
    assert [t.tile for t in polygon_job.tiles] == ["31UFS"]
    assert area_geometry(polygon_job.area) == area  # the geometry is kept with the job

    bucket, settings = ingested["bucket"], ingested["settings"]
    item = bucket.get_json(polygon_job.mosaic_item)  # type: ignore[attr-defined]
    assert item["properties"]["sansnuages:area"] == "Triangle"
    assert item["properties"]["sansnuages:tiles"] == ["31UFS"]
    assert item["bbox"] == pytest.approx([5.0, 50.6, 5.6, 51.2])
    href = item["assets"]["visual"]["href"].replace("s3://", "/vsis3/", 1)
    with gdal_env(settings), rasterio.open(href) as mosaic:  # type: ignore[attr-defined]
        data = mosaic.read()
        valid = (data > 0).all(axis=0)
        assert 0.3 < valid.mean() < 0.7  # a triangle fills about half of its bounding box
        inside, corner = (5.3, 50.8), (5.02, 51.18)
        lons, lats = [inside[0], corner[0]], [inside[1], corner[1]]
        xs, ys = transform("EPSG:4326", mosaic.crs, lons, lats)
        points = list(zip(xs, ys, strict=True))
        at_inside, at_corner = ([int(v) for v in p] for p in mosaic.sample(points))
    assert min(at_inside) > 0 and at_corner == [0, 0, 0]
