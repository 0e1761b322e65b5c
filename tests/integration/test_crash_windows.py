"""Each hand-off of a job crashed at its named point, then retried: the job converges.

Crashes are played by `faults.crash_at(point)`, which raises at that point of the code once.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from sansnuages.settings import Settings
from sansnuages.stages import plan
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.plan import JobRequest, plan_job
from sansnuages.stores.aws import client
from sansnuages.stores.faults import InjectedCrash, crash_at
from sansnuages.stores.jobs import JobState, JobStore, TileState

JOB = "2018-07-BEL"
TILES = [f"31U{chr(65 + n // 26)}{chr(65 + n % 26)}" for n in range(23)]


def _drain(settings: Settings, url: str) -> list[dict[str, object]]:
    sqs = client("sqs", settings)
    bodies: list[dict[str, object]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture()
def planned_tiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The catalog's answer for the month, without products: the plan's hand-offs alone."""
    monkeypatch.setattr(plan, "tiles_with_observations", lambda *_: list(TILES))
    return TILES


def _request() -> JobRequest:
    return JobRequest.from_event({"area": "Belgium", "month": "2018-07"})


def test_two_plans_at_once_start_one_run(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: store.create("2018-07", "Belgium", "BEL", TILES), range(4))
        )
    assert [started for _, started in results].count(True) == 1
    store.finish(JOB, JobState.DONE)
    with ThreadPoolExecutor(4) as pool:  # a finished month run again by four at once
        results = list(
            pool.map(lambda _: store.create("2018-07", "Belgium", "BEL", TILES), range(4))
        )
    assert [started for _, started in results].count(True) == 1
    job = store.get(JOB)
    assert job is not None and job.run == 2 and job.pending == len(TILES)


@pytest.mark.parametrize("point", ["jobs.after-tiles", "jobs.after-create", "plan.after-create"])
def test_a_plan_that_crashes_while_creating_the_job_sends_every_tile_on_its_retry(
    function_settings: Settings, planned_tiles: list[str], point: str
) -> None:
    with crash_at(point) as passed, pytest.raises(InjectedCrash):
        plan_job(_request(), function_settings)
    assert point in passed
    job, _ = plan_job(_request(), function_settings)  # the queue (or the operator) retries
    sent = Counter(
        m["tile"] for m in _drain(function_settings, function_settings.composite_queue_url)
    )
    assert sent == Counter(planned_tiles)  # every tile, once
    assert JobStore(function_settings).get(job.job_id).sent == len(planned_tiles)  # type: ignore[union-attr]
    plan_job(_request(), function_settings)  # a third delivery: nothing left to send
    assert _drain(function_settings, function_settings.composite_queue_url) == []


def test_a_plan_that_crashes_before_a_batch_sends_exactly_the_rest(
    function_settings: Settings, planned_tiles: list[str]
) -> None:
    with pytest.raises(InjectedCrash):  # the first batch goes out, the second does not
        _plan_crashing_on(function_settings, "plan.before-send", 2)
    first = _drain(function_settings, function_settings.composite_queue_url)
    assert len(first) == 10
    plan_job(_request(), function_settings)
    rest = _drain(function_settings, function_settings.composite_queue_url)
    assert Counter(m["tile"] for m in first + rest) == Counter(planned_tiles)


def _plan_crashing_on(settings: Settings, point: str, nth: int) -> None:
    from sansnuages.stores import faults

    seen = [0]

    def hook(name: str) -> None:
        if name == point:
            seen[0] += 1
            if seen[0] == nth:
                raise InjectedCrash(name)

    faults.install(hook)
    try:
        plan_job(_request(), settings)
    finally:
        faults.install(None)


def test_a_plan_that_crashes_after_a_send_resends_that_batch_only(
    function_settings: Settings, planned_tiles: list[str]
) -> None:
    with pytest.raises(InjectedCrash):
        _plan_crashing_on(function_settings, "plan.after-send", 2)
    plan_job(_request(), function_settings)
    sent = Counter(
        m["tile"] for m in _drain(function_settings, function_settings.composite_queue_url)
    )
    assert set(sent) == set(planned_tiles)
    twice = sorted(t for t, n in sent.items() if n > 1)
    assert twice == planned_tiles[10:20]  # the batch sent but not recorded; tiles are idempotent


@pytest.mark.parametrize("point", ["composite.before-mosaic-send", "composite.after-mosaic-send"])
def test_a_crash_between_the_mosaic_claim_and_its_send_is_resumed_by_the_retry(
    function_settings: Settings, point: str
) -> None:
    store = JobStore(function_settings)
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    compositor = TileCompositor.from_settings(function_settings)
    store.finish_tile(JOB, "31UES", TileState.DONE, item="a")
    compositor.fan_in(JOB, "31UES")
    store.finish_tile(JOB, "31UFS", TileState.DONE, item="b")
    with crash_at(point), pytest.raises(InjectedCrash):
        compositor.fan_in(JOB, "31UFS")
    job = store.get(JOB)
    assert job is not None and job.state == JobState.MOSAIC_QUEUED and job.mosaic_sent is None
    compositor.fan_in(JOB, "31UES")  # another tile's late duplicate does not send
    compositor.fan_in(JOB, "31UFS")  # the retry of the claimer's message sends
    compositor.fan_in(JOB, "31UFS")  # once recorded as sent, a further retry does not
    sent = _drain(function_settings, function_settings.mosaic_queue_url)
    expected = 1 if point == "composite.before-mosaic-send" else 2  # sent, crashed, sent again
    assert sent == [{"v": 1, "job_id": JOB}] * expected
    assert store.get(JOB).mosaic_sent is not None  # type: ignore[union-attr]
