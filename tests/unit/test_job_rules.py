"""The job's rules that need no AWS: schedule lag, last delivery, tile messages, status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sansnuages.composite import TileTask, is_last_attempt
from sansnuages.errors import InvalidRequest
from sansnuages.jobs import Job, JobState, TileState, TileStatus, job_status
from sansnuages.period import latest_closed_period
from sansnuages.plan import JobRequest, schedule_lag_days


def test_the_lag_leaves_time_for_late_products() -> None:
    fired = datetime(2018, 8, 10, 3, tzinfo=UTC)  # July's window closed at the end of 7 August
    assert latest_closed_period(fired).label == "2018-07"
    assert latest_closed_period(fired, lag_days=2).label == "2018-07"
    assert latest_closed_period(fired, lag_days=3).label == "2018-06"
    with pytest.raises(InvalidRequest):
        latest_closed_period(fired, lag_days=-1)


def test_a_scheduled_event_uses_the_lag() -> None:
    event = {"area": "Belgium", "scheduled_time": "2018-08-09T03:00:00Z"}
    assert JobRequest.from_event(event).period.label == "2018-07"
    assert JobRequest.from_event(event, lag_days=2).period.label == "2018-06"
    manual = {"area": "Belgium", "month": "2018-07"}
    assert JobRequest.from_event(manual, lag_days=30).period.label == "2018-07"


def test_lag_setting_is_read_or_refused() -> None:
    assert schedule_lag_days({}) == 0
    assert schedule_lag_days({"SCHEDULE_LAG_DAYS": "2"}) == 2
    with pytest.raises(InvalidRequest):
        schedule_lag_days({"SCHEDULE_LAG_DAYS": "two"})


def test_the_last_delivery_is_known_from_the_receive_count() -> None:
    assert not is_last_attempt("1", "3")
    assert not is_last_attempt("2", "3")
    assert is_last_attempt("3", "3")
    assert is_last_attempt(4, 3)
    assert not is_last_attempt("3", None)  # no maxReceiveCount set: never give up early
    assert not is_last_attempt("x", "3")


def test_tile_messages_carry_the_run_and_bad_ones_are_refused() -> None:
    task = TileTask.from_message({"job_id": "j", "tile": "31UFS", "month": "2018-07", "version": 2})
    assert task.version == 2
    assert TileTask.from_message({"job_id": "j", "tile": "31UFS", "month": "2018-07"}).version == 0
    with pytest.raises(InvalidRequest):
        TileTask.from_message({"tile": "31UFS"})
    with pytest.raises(InvalidRequest):
        TileTask.from_message({"job_id": "j", "tile": "31UFS", "month": "July"})


def test_job_status_document() -> None:
    job = Job(
        "2018-07-BEL",
        "2018-07",
        "Belgium",
        "BEL",
        JobState.RUNNING,
        1,
        [
            TileStatus("31UES", TileState.DONE, item="k"),
            TileStatus("31UFS", TileState.FAILED, "boom"),
        ],
        run=2,
    )
    status = job_status(job)
    assert status["counts"] == {"pending": 0, "done": 1, "failed": 1}
    assert status["version"] == 1 and status["state"] == "running"
    assert status["tiles"][1] == {
        "tile": "31UFS",
        "state": "failed",
        "reason": "boom",
        "item": None,
    }


def test_the_composite_function_knows_its_queues_max_receive_count() -> None:
    """The handler gives a tile up on the delivery the queue will dead-letter: both numbers
    come from template.yaml and must agree."""
    from pathlib import Path

    from sansnuages.local.template import load_stack

    stack = load_stack(Path(__file__).resolve().parents[2] / "template.yaml")
    queue = stack.queue("CompositeQueue")
    environment = stack.function("CompositeFunction").environment
    assert queue.dead_letter == "CompositeDeadLetterQueue"
    assert environment["COMPOSITE_MAX_RECEIVE_COUNT"] == str(queue.max_receive_count)
    assert float(stack.function("PlanFunction").environment["SCHEDULE_LAG_DAYS"]) >= 0
