"""The control plane at world scale, on the moto server: a month over 20,000 tiles (about every
land tile of the world) is recorded and fanned out in batches, within the plan function's
timeout and memory, with no record near DynamoDB's item limit; a list of jobs reads their heads
only; and the fan-in holds when many tiles finish at the same moment."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from sansnuages.api.job_routes import list_jobs
from sansnuages.errors import TransientError
from sansnuages.settings import Settings
from sansnuages.stages.plan import send_tile_messages
from sansnuages.stores import aws
from sansnuages.stores.jobs import JobState, JobStore, TileState, _conditionally

ROOT = Path(__file__).resolve().parents[2]
WORLD_TILES = 20_000
ITEM_LIMIT = 400 * 1024


def world_tiles(count: int = WORLD_TILES) -> list[str]:
    """Well-formed tile names, as many as the world's land tiles (their geography plays no
    part in the control plane)."""
    bands, letters = "CDEFGHJKLMNPQRSTUVWX", "ABCDEFGHJKLMNPQRSTUVWXYZ"
    names = [
        f"{zone:02d}{band}{col}{row}"
        for zone in range(1, 61)
        for band in bands
        for col in letters[:8]
        for row in letters[:3]
    ]
    return names[:count]


def _template_function(name: str) -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506
    return dict(template["Resources"][name]["Properties"])


def _count_calls(client: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    client.meta.events.register(
        "before-call.*.*", lambda model, **kwargs: calls.update([model.name])
    )
    return calls


def test_a_world_month_is_planned_in_batches_within_the_plan_function(
    function_settings: Settings,
) -> None:
    plan = _template_function("PlanFunction")
    dynamodb, sqs = aws.client("dynamodb", function_settings), aws.client("sqs", function_settings)
    db_calls, queue_calls = _count_calls(dynamodb), _count_calls(sqs)
    store = JobStore(function_settings, client=dynamodb)
    tiles = world_tiles()
    assert len(set(tiles)) == WORLD_TILES
    tracemalloc.start()
    started = time.monotonic()
    job, begun = store.create("2018-07", "the world", "WLD", tiles)
    sent = send_tile_messages(job, store, function_settings, sqs=sqs)
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert begun and sent == WORLD_TILES
    print(f"plan of {WORLD_TILES:,} tiles: {seconds:.1f} s, {peak / 2**20:.0f} MiB traced")
    assert seconds < plan["Timeout"] and peak < plan["MemorySize"] * 2**20 / 4
    # records in batches of 25, messages in batches of 10: never one call per tile
    assert db_calls["BatchWriteItem"] == WORLD_TILES // 25
    assert db_calls["PutItem"] <= 2 and queue_calls["SendMessage"] == 0
    assert queue_calls["SendMessageBatch"] == WORLD_TILES // 10
    attributes = sqs.get_queue_attributes(
        QueueUrl=function_settings.composite_queue_url,
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessages"]) == WORLD_TILES
    # the job record holds counts, not tiles: far from the item limit
    head = dynamodb.get_item(
        TableName=store.table, Key={"pk": {"S": f"job#{job.job_id}"}, "sk": {"S": "job"}}
    )["Item"]
    assert len(json.dumps(head)) < ITEM_LIMIT / 100
    assert store.head(job.job_id) is not None
    # a list of jobs reads each job's head: one record, whatever its tiles
    db_calls.clear()
    page = list_jobs(store, limit=10)
    listed = {j.job_id: j for j in page.jobs}[job.job_id]
    assert listed.count(TileState.PENDING) == WORLD_TILES and listed.tiles == []
    assert db_calls["Query"] <= len(page.jobs) + 1


def test_the_fan_in_holds_when_every_tile_finishes_at_once(function_settings: Settings) -> None:
    store = JobStore(function_settings)
    tiles = world_tiles(300)
    job, _ = store.create("2018-08", "many tiles", "MANY", tiles)

    def finish(tile: str) -> bool:
        state = TileState.FAILED if tile.endswith("C") else TileState.DONE
        assert store.finish_tile(job.job_id, tile, state, reason="r" if state == "failed" else None)
        return store.claim_mosaic(job.job_id, by=tile)

    with ThreadPoolExecutor(24) as pool:
        claims = list(pool.map(finish, tiles))
    assert sum(claims) == 1  # exactly one finisher hands over to the mosaic
    after = store.get(job.job_id)
    assert after is not None and after.state == JobState.MOSAIC_QUEUED
    failed = sum(1 for t in tiles if t.endswith("C"))
    assert (after.count(TileState.PENDING), after.count(TileState.FAILED)) == (0, failed)
    assert after.count(TileState.DONE) == len(tiles) - failed
    counted = Counter(t.state for t in after.tiles)  # the counters agree with the records
    assert counted == {TileState.DONE: len(tiles) - failed, TileState.FAILED: failed}


def _cancelled(*codes: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


def test_a_transaction_cancelled_by_a_conflict_is_tried_again() -> None:
    """DynamoDB cancels transactions that collide on the job record; only a failed condition
    means the tile had finished already."""
    outcomes = [_cancelled("None", "TransactionConflict"), _cancelled("None", "None"), None]

    def write() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    assert _conditionally(write, sleep=0.001) is True and outcomes == []
    assert _conditionally(lambda: _raise(_cancelled("ConditionalCheckFailed", "None"))) is False

    def always() -> None:
        raise _cancelled("None", "TransactionConflict")

    with pytest.raises(TransientError):
        _conditionally(always, sleep=0.0001)


def _raise(error: Exception) -> None:
    raise error
