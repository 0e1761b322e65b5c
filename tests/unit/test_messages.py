"""Queue messages: typed, versioned, validated; batches whose failed entries are sent again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sansnuages.errors import InvalidRequest, TransientError
from sansnuages.period import HydrologicalYear, SynthesisPeriod
from sansnuages.stores import messages
from sansnuages.stores.messages import (
    MosaicJob,
    MosaicPart,
    TileTask,
    parse_mosaic_message,
    send_all,
)


def test_a_tile_task_goes_round_and_carries_only_what_is_read() -> None:
    task = TileTask("2018-07-BEL", "31UFS", SynthesisPeriod.parse("2018-07"), 2)
    body = json.loads(task.body())
    assert set(body) == {"v", "job_id", "tile", "period", "version"} and body["v"] == 1
    assert TileTask.from_message(task.body()) == task


def test_a_season_task_goes_round_and_an_earlier_month_body_is_still_read() -> None:
    season = TileTask("snow-2018-AND", "31TCH", HydrologicalYear(2018), 0)
    assert json.loads(season.body())["period"] == "snow-2018"
    assert TileTask.from_message(season.body()) == season
    earlier = {"v": 1, "job_id": "2018-07-BEL", "tile": "31UFS", "month": "2018-07"}
    assert TileTask.from_message(earlier).period == SynthesisPeriod(2018, 7)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        {"tile": "31UFS", "month": "2018-07"},
        {"job_id": "j", "tile": "", "month": "2018-07"},
        {"job_id": "j", "tile": "31UFS", "month": "July"},
        {"job_id": "j", "tile": "31UFS", "month": "2018-07", "version": -1},
        {"job_id": "j", "tile": "31UFS", "month": "2018-07", "version": "1"},
        {"v": 2, "job_id": "j", "tile": "31UFS", "month": "2018-07"},
        {"job_id": "j", "tile": "31UFS", "period": "snow-18"},
        {"job_id": "j", "tile": "31UFS", "period": 2018},
    ],
)
def test_a_bad_tile_message_is_refused_as_invalid(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        TileTask.from_message(body)


def test_mosaic_messages_are_a_job_or_a_part() -> None:
    job = MosaicJob("j", resolution=20.0, crs="EPSG:3035")
    assert parse_mosaic_message(job.body()) == job
    assert json.loads(MosaicJob("j").body()) == {"v": 1, "job_id": "j"}
    part = MosaicPart("mosaics/BEL/2018/07/parts/run1-epsg3035-20m-deflate/plan.json", "r0c0")
    assert parse_mosaic_message(part.body()) == part
    for bad in ({"job_id": "j", "resolution": -5}, {"plan": "p"}, {"job_id": 3}, {"v": 0}):
        with pytest.raises(InvalidRequest):
            parse_mosaic_message(bad)


class FlakyQueue:
    """Fails the entries named in `failures`, one round each, as SQS reports them."""

    def __init__(self, failures: list[set[str]], sender_fault: bool = False) -> None:
        self.failures = failures
        self.sender_fault = sender_fault
        self.accepted: list[str] = []
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        failing = self.failures[self.calls] if self.calls < len(self.failures) else set()
        self.calls += 1
        failed = [e for e in Entries if e["MessageBody"] in failing]
        self.accepted.extend(e["MessageBody"] for e in Entries if e not in failed)
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e not in failed],
            "Failed": [
                {"Id": e["Id"], "Code": "ServiceUnavailable", "SenderFault": self.sender_fault}
                for e in failed
            ],
        }


def test_failed_entries_of_a_batch_are_sent_again_and_only_those() -> None:
    bodies = [f"m{n}" for n in range(23)]
    queue = FlakyQueue([{"m3", "m7"}, {"m7"}])
    send_all(queue, "url", bodies, sleep=0)
    assert sorted(queue.accepted) == sorted(bodies)  # each once
    assert queue.calls == 5  # three batches, two of them again for the failures


def test_entries_that_keep_failing_raise_a_retryable_error() -> None:
    queue = FlakyQueue([{"m1"}] * messages.SEND_TRIES)
    with pytest.raises(TransientError, match="1 messages"):
        send_all(queue, "url", ["m0", "m1"], sleep=0)
    with pytest.raises(InvalidRequest):  # the queue says the message itself is wrong
        send_all(FlakyQueue([{"m0"}], sender_fault=True), "url", ["m0"], sleep=0)
