"""Job state in the jobs table of the template: conditional transitions, exactly-once fan-in."""

from concurrent.futures import ThreadPoolExecutor

from sansnuages.jobs import JobState, JobStore, TileState
from sansnuages.settings import Settings


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
        claims = list(pool.map(lambda _: store.claim_mosaic("2018-07-BEL"), range(4)))
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
