"""The sweeper: overdue units of unfinished jobs re-driven or failed, the backlog left alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sansnuages.settings import Settings
from sansnuages.stages.sweeper import Sweeper, SweepLimits
from sansnuages.stores.aws import client
from sansnuages.stores.faults import InjectedCrash, crash_at
from sansnuages.stores.jobs import JobState, TileState

JOB = "2018-07-BEL"
LIMITS = SweepLimits(tile_overdue_s=6300, mosaic_overdue_s=6300, max_attempts=3)
LATER = timedelta(seconds=6400)


def _drain(settings: Settings, url: str) -> list[dict[str, object]]:
    sqs = client("sqs", settings)
    bodies: list[dict[str, object]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture()
def sweeper(function_settings: Settings) -> Sweeper:
    return Sweeper.from_settings(function_settings, LIMITS)


def test_an_overdue_tile_is_redriven_and_the_backlog_is_left_alone(
    sweeper: Sweeper, function_settings: Settings
) -> None:
    store = sweeper.jobs
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS", "31UGS"])
    store.record_sent(JOB, 0, 3)
    assert store.start_tile(JOB, "31UES") == 1  # received, then its worker died unseen
    now = datetime.now(UTC)
    assert sweeper.sweep(now).redriven == []  # not overdue yet
    report = sweeper.sweep(now + LATER)
    assert report.redriven == [f"{JOB}/31UES"] and report.failed == []
    messages = _drain(function_settings, function_settings.composite_queue_url)
    assert [(m["tile"], m["version"]) for m in messages] == [("31UES", 0)]
    assert sweeper.sweep(now + LATER).redriven == []  # once: it waits in the queue again
    job = store.get(JOB)
    assert job is not None and job.state == JobState.RUNNING
    assert [(t.tile, t.started, t.attempts) for t in job.tiles] == [
        ("31UES", None, 1),
        ("31UFS", None, 0),  # never received: in the backlog, never touched
        ("31UGS", None, 0),
    ]


def test_a_tile_out_of_attempts_fails_with_a_reason_and_the_job_goes_on(
    sweeper: Sweeper, function_settings: Settings
) -> None:
    store = sweeper.jobs
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])
    store.record_sent(JOB, 0, 2)
    store.finish_tile(JOB, "31UFS", TileState.DONE, item="k")
    for _ in range(3):  # three deliveries, each killed: the message is in the dead-letter queue
        store.start_tile(JOB, "31UES")
    report = sweeper.sweep(datetime.now(UTC) + LATER)
    assert report.failed == [f"{JOB}/31UES"]
    job = store.get(JOB)
    assert job is not None and job.state == JobState.MOSAIC_QUEUED and job.mosaic_sent
    assert "no result after 3 attempts" in (job.tiles[0].reason or "")
    assert _drain(function_settings, function_settings.mosaic_queue_url) == [
        {"v": 1, "job_id": JOB}
    ]


def test_a_claimed_mosaic_whose_claimer_died_is_sent(
    sweeper: Sweeper, function_settings: Settings
) -> None:
    store = sweeper.jobs
    store.create("2018-07", "Belgium", "BEL", ["31UES"])
    store.finish_tile(JOB, "31UES", TileState.DONE, item="k")
    with crash_at("composite.before-mosaic-send"), pytest.raises(InjectedCrash):
        sweeper.compositor.fan_in(JOB, "31UES")  # and its message is never delivered again
    assert sweeper.sweep(datetime.now(UTC)).mosaics_sent == []  # not overdue yet
    assert sweeper.sweep(datetime.now(UTC) + LATER).mosaics_sent == [JOB]
    assert _drain(function_settings, function_settings.mosaic_queue_url) == [
        {"v": 1, "job_id": JOB}
    ]


def test_an_overdue_mosaic_is_redriven_then_failed_when_out_of_attempts(
    sweeper: Sweeper, function_settings: Settings
) -> None:
    store = sweeper.jobs
    store.create("2018-07", "Belgium", "BEL", ["31UES"])
    store.finish_tile(JOB, "31UES", TileState.DONE, item="k")
    sweeper.compositor.fan_in(JOB, "31UES")
    _drain(function_settings, function_settings.mosaic_queue_url)
    assert sweeper.sweep(datetime.now(UTC) + LATER).redriven == []  # sent, not received: backlog
    store.start_mosaic(JOB)
    assert sweeper.sweep(datetime.now(UTC) + LATER).redriven == [JOB]
    assert len(_drain(function_settings, function_settings.mosaic_queue_url)) == 1
    store.start_mosaic(JOB)
    store.start_mosaic(JOB)
    assert sweeper.sweep(datetime.now(UTC) + LATER).failed == [JOB]
    job = store.get(JOB)
    assert job is not None and job.state == JobState.FAILED
    assert "no mosaic after 3 attempts" in (job.reason or "")


def test_tiles_a_dead_plan_did_not_send_are_sent(
    sweeper: Sweeper, function_settings: Settings
) -> None:
    store = sweeper.jobs
    store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS"])  # then the plan died
    assert sweeper.sweep(datetime.now(UTC)).sent_tiles == 0  # the plan's retry may still come
    assert sweeper.sweep(datetime.now(UTC) + LATER).sent_tiles == 2
    tiles = [m["tile"] for m in _drain(function_settings, function_settings.composite_queue_url)]
    assert sorted(tiles) == ["31UES", "31UFS"]
    assert sweeper.sweep(datetime.now(UTC) + LATER).sent_tiles == 0
