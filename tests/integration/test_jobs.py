"""Job state in the jobs table of the template: conditional transitions, exactly-once fan-in."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sansnuages.errors import InvalidRequest
from sansnuages.period import SynthesisPeriod
from sansnuages.settings import Settings
from sansnuages.stages import composite
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.ingest import Ingestor
from sansnuages.stores.aws import client
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import InjectedCrash, crash_at
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.stores.messages import TileTask
from sansnuages.tools.simulate import simulate_product


def test_a_job_records_its_tiles_pending(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    job, started = store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    assert started and job.job_id == "2018-07-BEL"
    assert job.state == JobState.RUNNING and job.pending == 2
    assert [(t.tile, t.state) for t in job.tiles] == [("31UES", "pending"), ("31UFS", "pending")]


def test_an_unfinished_job_is_not_started_twice(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", ["31UES"])
    again, started = store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    assert not started and [t.tile for t in again.tiles] == ["31UES"]


def test_a_tile_finishes_once_whatever_the_deliveries(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    assert store.finish_tile("2018-07-BEL", "31UES", TileState.DONE, item="l3a/x.json")
    assert not store.finish_tile("2018-07-BEL", "31UES", TileState.DONE, item="l3a/x.json")
    assert not store.finish_tile("2018-07-BEL", "31UES", TileState.FAILED, reason="late failure")
    job = store.get("2018-07-BEL")
    assert job is not None and job.pending == 1
    assert job.tiles[0].state == TileState.DONE and job.tiles[0].item == "l3a/x.json"


def test_the_mosaic_is_claimed_once_and_only_when_no_tile_is_pending(
    function_settings: Settings,
) -> None:
    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    store.finish_tile("2018-07-BEL", "31UES", TileState.DONE, item="a")
    assert not store.claim_mosaic("2018-07-BEL")
    store.finish_tile("2018-07-BEL", "31UFS", TileState.FAILED, reason="no clear view")
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda n: store.claim_mosaic("2018-07-BEL", by=f"t{n}"), range(4)))
    assert claims.count(True) == 1
    store.finish("2018-07-BEL", JobState.DONE, item="mosaics/BEL/2018/07/m.json")
    job = store.get("2018-07-BEL")
    assert job is not None and job.finished and job.mosaic_item == "mosaics/BEL/2018/07/m.json"
    assert job.count(TileState.FAILED) == 1 and job.tiles[1].reason == "no clear view"
    assert [j.job_id for j in store.all()] == ["2018-07-BEL"]


def test_a_finished_job_can_be_run_again(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", ["31UES"])
    store.finish_tile("2018-07-BEL", "31UES", TileState.DONE)
    store.claim_mosaic("2018-07-BEL")
    store.finish("2018-07-BEL", JobState.DONE)
    job, started = store.create("2018-07", "Belgium", "BEL", ["31UES"])
    assert started and job.state == JobState.RUNNING and job.tiles[0].state == TileState.PENDING


# --- faults: one tile's synthesis under duplicate delivery, crashes and exhausted retries -------


TILE = "31UFS"
JOB = "2018-07-BEL"


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fault-products")
    return [
        simulate_product(TILE, when, platform, folder, resolution=1220, seed=seed, cloud_cover=0.4)
        for when, platform, seed in (
            (datetime(2018, 7, 9, 10, 56, tzinfo=UTC), "SENTINEL2A", 1),
            (datetime(2018, 7, 14, 10, 56, tzinfo=UTC), "SENTINEL2B", 2),
            (datetime(2018, 7, 17, 10, 40, tzinfo=UTC), "LANDSAT8-OLITIRS-XS", 3),
        )
    ]


@pytest.fixture()
def compositor(function_settings: Settings, products: list[Path]) -> TileCompositor:
    ingestor = Ingestor.from_settings(function_settings)
    for path in products:
        key = f"incoming/{path.name}"
        ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip")
        ingestor.ingest(key)
    JobStore(function_settings).create("2018-07", "Belgium", "BEL", [TILE])
    return TileCompositor.from_settings(function_settings)


def _task(version: int = 0) -> TileTask:
    return TileTask(JOB, TILE, SynthesisPeriod.parse("2018-07"), version)


def _mosaic_messages(settings: Settings) -> int:
    sqs = client("sqs", settings)
    count = 0
    while True:
        batch = sqs.receive_message(QueueUrl=settings.mosaic_queue_url, MaxNumberOfMessages=10)
        messages = batch.get("Messages", [])
        if not messages:
            return count
        count += len(messages)
        for message in messages:
            sqs.delete_message(
                QueueUrl=settings.mosaic_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def _l3a_ids(settings: Settings) -> list[str]:
    page = Catalog(settings.catalog_table, settings=settings).search(
        ["sentinel2-l3a"], None, None, None, 100, None
    )
    return sorted(item["id"] for item in page.items)


def test_a_duplicate_delivery_writes_once(
    compositor: TileCompositor, function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = compositor.run(_task())
    assert first is not None

    writes: list[str] = []
    compositor.bucket.put_bytes = lambda key, *_: writes.append(key)  # type: ignore[method-assign]
    assert compositor.run(_task()) == first
    assert writes == []  # nothing written again
    assert _l3a_ids(function_settings) == [first.rsplit("/", 1)[1].removesuffix(".json")]  # type: ignore[union-attr]
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.state == JobState.MOSAIC_QUEUED and job.pending == 0
    assert _mosaic_messages(function_settings) == 1


def test_a_crash_in_the_middle_of_a_tile_leaves_nothing_half_done(
    compositor: TileCompositor, function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = composite.synthesize_group
    calls: list[str] = []

    def dies_on_the_second_group(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1][0])
        if len(calls) == 2:
            raise MemoryError("killed half-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(composite, "synthesize_group", dies_on_the_second_group)
    with pytest.raises(MemoryError):
        compositor.run(_task())
    assert _l3a_ids(function_settings) == []  # the R1 COGs exist, but no Item: not published
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.tiles[0].state == TileState.PENDING
    item_key = compositor.run(_task())  # the message comes back: the tile completes
    assert item_key is not None
    item = compositor.bucket.get_json(item_key)
    for asset in item["assets"].values():
        assert compositor.bucket.exists(asset["href"].split("/", 3)[3]), asset["href"]
    assert JobStore(function_settings).get(JOB).tiles[0].state == TileState.DONE  # type: ignore[union-attr]


def test_a_tile_that_fails_for_good_ends_failed_and_the_job_goes_on(
    compositor: TileCompositor, function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("S3 said no")

    monkeypatch.setattr(composite, "synthesize_group", always_fails)
    for _ in range(2):
        with pytest.raises(OSError):
            compositor.run(_task())
    assert JobStore(function_settings).get(JOB).tiles[0].state == TileState.PENDING  # type: ignore[union-attr]
    with pytest.raises(OSError):  # raised again, so that the message goes to the DLQ
        compositor.run(_task(), last_attempt=True)
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.tiles[0].state == TileState.FAILED
    assert "S3 said no" in (job.tiles[0].reason or "")
    assert job.state == JobState.MOSAIC_QUEUED  # the fan-in went on without the tile
    assert _mosaic_messages(function_settings) == 1
    # re-driven from the dead-letter queue, and now it works: the job runs again
    monkeypatch.undo()
    assert JobStore(function_settings).reopen_tile(JOB, TILE)
    assert not JobStore(function_settings).reopen_tile(JOB, TILE)
    assert compositor.run(_task()) is not None
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.tiles[0].state == TileState.DONE
    assert job.state == JobState.MOSAIC_QUEUED and _mosaic_messages(function_settings) == 1


def test_a_poison_message_is_refused_without_touching_the_job(function_settings: Settings) -> None:
    JobStore(function_settings).create("2018-07", "Belgium", "BEL", [TILE])
    with pytest.raises(InvalidRequest):
        TileTask.from_message({"job_id": JOB, "tile": TILE, "month": "not a month"})
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.pending == 1


def test_a_rerun_writes_a_new_version_and_keeps_the_old_one(
    compositor: TileCompositor, function_settings: Settings
) -> None:
    store = JobStore(function_settings)
    first = compositor.run(_task())
    store.finish(JOB, JobState.DONE)
    job, started = store.create("2018-07", "Belgium", "BEL", [TILE])
    assert started and job.run == 2
    second = compositor.run(_task(version=job.run - 1))
    assert first and second and first != second and second.endswith("_V1-1.json")
    assert _l3a_ids(function_settings) == [second.rsplit("/", 1)[1].removesuffix(".json")]
    old = compositor.bucket.get_json(first)  # still addressable at its key
    assert old["properties"]["sansnuages:version"] == 0
    assert compositor.bucket.get_json(second)["properties"]["sansnuages:version"] == 1


def test_redrive_sends_dead_letters_back_and_reopens_their_tiles(
    function_settings: Settings,
) -> None:
    import json

    from sansnuages.tools.redrive import dead_letter_queue_url, redrive_composites

    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", [TILE, "31UES"])
    store.finish_tile(JOB, TILE, TileState.FAILED, reason="gave up")
    store.finish_tile(JOB, "31UES", TileState.DONE, item="k")
    assert store.claim_mosaic(JOB)
    sqs = client("sqs", function_settings)
    dead = dead_letter_queue_url(sqs, function_settings.composite_queue_url)
    body = json.dumps({"job_id": JOB, "tile": TILE, "month": "2018-07", "version": 0})
    sqs.send_message(QueueUrl=dead, MessageBody=body)
    sqs.send_message(QueueUrl=dead, MessageBody="not json")

    report = redrive_composites(function_settings)
    assert report.moved == 2 and report.reopened == [f"{JOB}/{TILE}"] and report.unreadable == 1
    job = store.get(JOB)
    assert job is not None and job.state == JobState.RUNNING and job.pending == 1
    assert [t.state for t in job.tiles] == [TileState.DONE, TileState.PENDING]
    received = sqs.receive_message(
        QueueUrl=function_settings.composite_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    assert sorted(m["Body"] for m in received) == sorted([body, "not json"])
    assert redrive_composites(function_settings).moved == 0  # nothing left, nothing reopened


def test_a_late_product_marks_the_synthesis_stale(
    compositor: TileCompositor, function_settings: Settings, tmp_path: Path
) -> None:
    from sansnuages.stages.staleness import mark_stale_syntheses

    item_key = compositor.run(_task())
    assert item_key is not None
    late = simulate_product(
        TILE, datetime(2018, 7, 24, 10, 56, tzinfo=UTC), "SENTINEL2A", tmp_path, 1220, seed=9
    )
    ingestor = Ingestor.from_settings(function_settings)
    ingestor.bucket.put_bytes(f"incoming/{late.name}", late.read_bytes(), "application/zip")
    before = compositor.bucket.get_json(item_key)
    assert not before["properties"].get("sansnuages:stale")
    result = ingestor.ingest(f"incoming/{late.name}")  # ingest marks what the product makes stale
    product = ingestor.bucket.get_json(result.item_key or "")
    after = compositor.bucket.get_json(item_key)
    assert after["properties"]["sansnuages:stale"] is True
    assert after["properties"]["sansnuages:late_inputs"] == [late.stem]
    indexed = compositor.catalog.get_item("sentinel2-l3a", before["id"])
    assert indexed["properties"]["sansnuages:stale"] is True
    # an input it was made from, or the same late product again, changes nothing
    inputs = [link["href"] for link in before["links"] if link["rel"] == "derived_from"]
    assert len(inputs) == 3
    assert mark_stale_syntheses(compositor.bucket, compositor.catalog, product) == []


def test_jobs_json_shows_a_polygon_area_by_name_and_keeps_its_geometry(
    function_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`sansnuages jobs --json` on a polygon job: the area's id, name and bbox; the job record
    still holds the polygon (the mosaic cuts to it)."""
    from sansnuages import areas
    from sansnuages.tools.cli import build_parser
    from sansnuages.tools.stack import Deployment

    polygon = {
        "type": "Polygon",
        "coordinates": [
            [[4.1, 50.6], [4.6, 50.6], [4.6, 50.9], [4.35, 51.0], [4.1, 50.9], [4.1, 50.6]]
        ],
    }
    area = areas.area_from_geojson(polygon, "Fields")
    store = JobStore(function_settings)
    job, _ = store.create("2018-07", areas.geojson_spec(area), area.id, ["31UFS"])

    deployment = Deployment.from_settings(function_settings)
    monkeypatch.setattr(Deployment, "open", classmethod(lambda cls, *args: deployment))
    args = build_parser().parse_args(["jobs", job.job_id, "--json"])
    assert args.func(args) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["area"] == {"id": area.id, "name": "Fields", "bbox": [4.1, 50.6, 4.6, 51.0]}
    stored = store.get(job.job_id)
    assert stored is not None
    assert areas.area_geometry(stored.area).geometry.equals(area.geometry)


# --- crash windows of a tile: between the Item file and the index, before retiring, staleness


def test_a_retry_after_a_crash_between_the_item_file_and_the_index_finishes_the_tile(
    compositor: TileCompositor, function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(function_settings)
    first = compositor.run(_task())
    store.finish(JOB, JobState.DONE)
    job, _ = store.create("2018-07", "Belgium", "BEL", [TILE])
    real = compositor.catalog.put_item
    calls: list[str] = []

    def crashes_once(item):  # type: ignore[no-untyped-def]
        calls.append(item["id"])
        if len(calls) == 1:
            raise InjectedCrash("between the Item file and the index")
        return real(item)

    monkeypatch.setattr(compositor.catalog, "put_item", crashes_once)
    with pytest.raises(InjectedCrash):
        compositor.run(_task(version=job.run - 1))
    assert first is not None
    assert _l3a_ids(function_settings) == [first.rsplit("/", 1)[1].removesuffix(".json")]
    second = compositor.run(_task(version=job.run - 1))  # the message comes back
    assert second is not None and second.endswith("_V1-1.json")
    assert _l3a_ids(function_settings) == [second.rsplit("/", 1)[1].removesuffix(".json")]
    assert store.get(JOB).tiles[0].state == TileState.DONE  # type: ignore[union-attr]


def test_a_retry_after_a_crash_before_retiring_the_older_version_retires_it(
    compositor: TileCompositor, function_settings: Settings
) -> None:
    store = JobStore(function_settings)
    compositor.run(_task())
    store.finish(JOB, JobState.DONE)
    job, _ = store.create("2018-07", "Belgium", "BEL", [TILE])
    with crash_at("composite.after-publish"), pytest.raises(InjectedCrash):
        compositor.run(_task(version=job.run - 1))
    assert len(_l3a_ids(function_settings)) == 2  # both versions indexed for a moment
    second = compositor.run(_task(version=job.run - 1))
    assert second is not None
    assert _l3a_ids(function_settings) == [second.rsplit("/", 1)[1].removesuffix(".json")]


def test_an_invalid_tile_fails_at_once_without_retries(
    compositor: TileCompositor, function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def invalid(task, meter=None):  # type: ignore[no-untyped-def]
        raise InvalidRequest("a tile the grid does not know")

    monkeypatch.setattr(compositor, "synthesise", invalid)
    assert compositor.run(_task()) is None  # not raised: the message is not delivered again
    job = JobStore(function_settings).get(JOB)
    assert job is not None and job.tiles[0].state == TileState.FAILED
    assert job.tiles[0].reason == "InvalidRequest: a tile the grid does not know"
    assert job.state == JobState.MOSAIC_QUEUED and _mosaic_messages(function_settings) == 1


def test_two_late_products_at_once_are_both_recorded(
    compositor: TileCompositor, function_settings: Settings
) -> None:
    from sansnuages.stages import staleness

    item_key = compositor.run(_task())
    assert item_key is not None
    late = [f"LATE-{n}" for n in range(6)]
    with ThreadPoolExecutor(6) as pool:
        marked = list(
            pool.map(
                lambda product: staleness._mark(
                    compositor.bucket, compositor.catalog, item_key, product, None
                ),
                late,
            )
        )
    assert marked == [True] * 6
    synthesis_id = compositor.bucket.get_json(item_key)["id"]
    for document in (
        compositor.bucket.get_json(item_key),
        compositor.catalog.get_item("sentinel2-l3a", synthesis_id),
    ):
        assert document["properties"]["sansnuages:late_inputs"] == late


def test_an_ingest_that_crashes_before_marking_staleness_marks_it_on_its_retry(
    compositor: TileCompositor, function_settings: Settings, tmp_path: Path
) -> None:
    item_key = compositor.run(_task())
    assert item_key is not None
    late = simulate_product(
        TILE, datetime(2018, 7, 24, 10, 56, tzinfo=UTC), "SENTINEL2A", tmp_path, 1220, seed=9
    )
    ingestor = Ingestor.from_settings(function_settings)
    key = f"incoming/{late.name}"
    ingestor.bucket.put_bytes(key, late.read_bytes(), "application/zip")
    with crash_at("ingest.after-publish"), pytest.raises(InjectedCrash):
        ingestor.ingest(key)
    assert not compositor.bucket.get_json(item_key)["properties"].get("sansnuages:stale")
    ingestor.ingest(key)  # the notification comes back
    after = compositor.bucket.get_json(item_key)
    assert after["properties"]["sansnuages:stale"] is True
    assert after["properties"]["sansnuages:late_inputs"] == [late.stem]
