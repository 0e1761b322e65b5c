"""The job's rules that need no AWS: schedule lag, last delivery, tile messages, status."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sansnuages import areas
from sansnuages.errors import InvalidRequest
from sansnuages.period import latest_closed_period
from sansnuages.stages.outcomes import is_last_attempt
from sansnuages.stages.plan import JobRequest, schedule_lag_days
from sansnuages.stores.jobs import Job, JobState, TileState, TileStatus, job_status
from sansnuages.stores.messages import TileTask


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
        0,
        [
            TileStatus("31UES", TileState.DONE, item="k"),
            TileStatus("31UFS", TileState.FAILED, "boom"),
        ],
        run=2,
    )
    status = job_status(job)  # a record older than the counters: its tiles are counted
    assert status["counts"] == {"pending": 0, "done": 1, "failed": 1}
    counted = job_status(replace(job, pending=3, done=7, failed=2, tiles=[]))
    assert counted["counts"] == {"pending": 3, "done": 7, "failed": 2}
    assert status["version"] == 1 and status["state"] == "running"
    assert status["tiles"][1] == {
        "tile": "31UFS",
        "state": "failed",
        "reason": "boom",
        "item": None,
    }


def _job(spec: str, area_id: str) -> Job:
    return Job(f"2018-07-{area_id}", "2018-07", spec, area_id, JobState.RUNNING, 1)


def test_a_polygon_job_status_shows_the_area_name_id_and_bbox_not_the_geometry() -> None:
    ring = [
        (4.0 + 0.5 * math.cos(k / 500 * math.tau), 50.5 + 0.3 * math.sin(k / 500 * math.tau))
        for k in range(500)
    ]
    polygon = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    area = areas.area_from_geojson(polygon, "Fields")
    status = job_status(_job(areas.geojson_spec(area), area.id))
    assert status["area"]["id"] == area.id and area.id.startswith("geojson-")
    assert status["area"]["name"] == "Fields"
    assert status["area"]["bbox"] == pytest.approx([3.5, 50.2, 4.5, 50.8], abs=1e-4)
    document = json.dumps(status)
    assert "coordinates" not in document and len(document) < 1000


def test_a_country_job_status_shows_the_country() -> None:
    status = job_status(_job("BEL", "BEL"))
    assert status["area"]["id"] == "BEL" and status["area"]["name"] == "Belgium"
    west, south, east, north = status["area"]["bbox"]
    assert 2.4 < west < 2.6 and 49.4 < south < 49.6 and 6.3 < east < 6.5 and 51.4 < north < 51.6


def test_a_job_whose_area_no_longer_resolves_still_has_a_status(tmp_path) -> None:
    gone = str(tmp_path / "moved.geojson")
    assert job_status(_job(gone, "moved"))["area"] == {
        "id": "moved",
        "name": gone,
        "bbox": None,
    }
    broken = job_status(_job('{"type": "Polygon"', "geojson-0123456789"))
    assert broken["area"] == {
        "id": "geojson-0123456789",
        "name": "geojson-0123456789",
        "bbox": None,
    }


def test_the_composite_function_knows_its_queues_max_receive_count() -> None:
    """The handler gives a tile up on the delivery the queue will dead-letter: both numbers
    come from template.yaml and must agree."""
    from pathlib import Path

    from sansnuages.tools.local.template import load_stack

    stack = load_stack(Path(__file__).resolve().parents[2] / "template.yaml")
    queue = stack.queue("CompositeQueue")
    environment = stack.function("CompositeFunction").environment
    assert queue.dead_letter == "CompositeDeadLetterQueue"
    assert environment["COMPOSITE_MAX_RECEIVE_COUNT"] == str(queue.max_receive_count)
    assert float(stack.function("PlanFunction").environment["SCHEDULE_LAG_DAYS"]) >= 0
