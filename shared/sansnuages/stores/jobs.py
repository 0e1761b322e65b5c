"""Synthesis jobs: a month over an area, one record per tile, each change a conditional write.

The fan-in works without a coordinator: finishing a tile and decrementing the job's count of
pending tiles is one transaction, and only one caller can claim the mosaic once none is pending.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sansnuages import areas
from sansnuages.costs import Usage
from sansnuages.errors import NotFound, TransientError
from sansnuages.period import HydrologicalYear, SynthesisPeriod, parse_job_period
from sansnuages.settings import Settings
from sansnuages.stores import aws
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.messages import TileTask

JOB_LIST_PK = "jobs"


class TileState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class JobState(enum.StrEnum):
    RUNNING = "running"
    MOSAIC_QUEUED = "mosaic-queued"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class TileStatus:
    tile: str
    state: TileState
    reason: str | None = None
    item: str | None = None
    started: str | None = None
    """When its message was last received (None: still waiting in the queue)."""
    attempts: int = 0


@dataclass(frozen=True)
class Job:
    job_id: str
    month: str
    """The period's label: a month (`2018-07`) or a snow season (`snow-2018`)."""
    area: str
    """The area spec (`areas.area_geometry`): a country, a file, or an inline polygon's GeoJSON."""
    area_id: str
    state: JobState
    pending: int
    tiles: list[TileStatus] = field(default_factory=list)
    mosaic_item: str | None = None
    reason: str | None = None
    created: str = ""
    run: int = 1
    """How many times the month was run over this area: the outputs' version is `run - 1`."""
    sent: int = 0
    """Tile messages sent so far, in tile order (a retried plan sends the rest)."""
    claimed_by: str | None = None
    claimed_at: str | None = None
    mosaic_sent: str | None = None
    mosaic_started: str | None = None
    mosaic_attempts: int = 0
    done: int | None = None
    failed: int | None = None
    """Tiles done and failed, as the job record counts them (None: a record older than the
    counters, whose tiles are counted instead)."""
    usage: Usage = field(default_factory=Usage)
    """What its units used so far, every attempt and run included (`costs`)."""

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)

    def count(self, state: TileState) -> int:
        """Tiles in `state`, from the job record's counters: a job's head alone says it."""
        value = {
            TileState.PENDING: self.pending,
            TileState.DONE: self.done,
            TileState.FAILED: self.failed,
        }[state]
        if value is None:
            return sum(1 for tile in self.tiles if tile.state == state)
        return value

    @property
    def period(self) -> SynthesisPeriod | HydrologicalYear:
        return parse_job_period(self.month)

    @property
    def product(self) -> str:
        """What the job makes: `synthesis` (a month) or `snow-season`."""
        return "snow-season" if isinstance(self.period, HydrologicalYear) else "synthesis"

    def task(self, tile: str) -> TileTask:
        """The composite message of one of its tiles, as the plan, the sweeper and a re-run of
        a tile send it."""
        return TileTask(self.job_id, tile, self.period, self.run - 1)


def job_id_for(month: str, area_id: str) -> str:
    return f"{month}-{area_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


CONFLICT_TRIES = 8
"""Attempts of a transaction that other writers of the same job record keep cancelling."""


def _is_conditional_failure(error: ClientError) -> bool:
    """The write's condition did not hold. A transaction cancelled for another reason (a
    conflict with a concurrent transaction on the job record, throttling) is not one."""
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
    # without reasons (some emulators) a cancellation can only be read as the condition's
    return not reasons or "ConditionalCheckFailed" in reasons


def _is_conflict(error: ClientError) -> bool:
    """A transaction cancelled by a concurrent one, or throttled: try again, it may pass."""
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("TransactionConflictException", "TransactionCanceledException") and (
        not _is_conditional_failure(error)
    )


def _conditionally(write: Callable[[], object], sleep: float = 0.05) -> bool:
    """Run a conditional write: False when its condition did not hold, True when it happened.

    Many tiles of a job finish at the same moment, and each one's transaction updates the job
    record: DynamoDB cancels those that collide (`TransactionConflict`). They are tried again
    after a random pause; `TransientError` when they keep colliding."""
    for attempt in range(CONFLICT_TRIES):
        try:
            write()
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            if not _is_conflict(error):
                raise
            time.sleep(sleep * (1 + random.random()) * 2**attempt)
            continue
        return True
    raise TransientError(f"a job record kept colliding with other writers ({CONFLICT_TRIES} tries)")


def _set_expression(
    fixed: dict[str, str], optional: dict[str, str | None], values: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """A SET expression of `state` plus the optional attributes given (names escaped, since
    words such as `item` are reserved in DynamoDB expressions)."""
    names = {"#s": "state"}
    parts = [f"{name} = {value}" for name, value in fixed.items()]
    for attribute, value in optional.items():
        if value is not None:
            names[f"#{attribute}"] = attribute
            values[f":{attribute}"] = {"S": value}
            parts.append(f"#{attribute} = :{attribute}")
    return "SET " + ", ".join(parts), names


class JobStore:
    """Job and tile states in the jobs table (keys `pk`, `sk`)."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.table = settings.jobs_table
        self.client = client or aws.client("dynamodb", settings)

    def create(self, month: str, area: str, area_id: str, tiles: list[str]) -> tuple[Job, bool]:
        """Record a job and its tiles; an unfinished job of the same id is returned as it is.

        Returns the job and whether this call (re)started it. The job record is written with a
        condition (no job yet, or the finished run that was read), so of two plans at once
        exactly one starts the run; the tile records are written before it, in batches.
        """
        job_id = job_id_for(month, area_id)
        pk = f"job#{job_id}"
        existing = self.get(job_id)
        if existing is not None and not existing.finished:
            self._list(job_id, existing.created)  # a plan that crashed before listing it
            return existing, False
        run = existing.run + 1 if existing is not None else 1
        now = _now()
        if existing is not None:
            self._delete_tiles(pk, [t for t in existing.tiles if t.tile not in set(tiles)])
        self._write_tiles(pk, tiles)
        checkpoint("jobs.after-tiles")
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if existing is not None:
            condition = {
                "ConditionExpression": "#s IN (:done, :failed) AND #run = :previous",
                "ExpressionAttributeNames": {"#s": "state", "#run": "run"},
                "ExpressionAttributeValues": {
                    ":done": {"S": JobState.DONE},
                    ":failed": {"S": JobState.FAILED},
                    ":previous": {"N": str(existing.run)},
                },
            }
        created = _conditionally(
            lambda: self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": pk},
                    "sk": {"S": "job"},
                    "month": {"S": month},
                    "area": {"S": area},
                    "area_id": {"S": area_id},
                    "state": {"S": JobState.RUNNING},
                    "pending": {"N": str(len(tiles))},
                    "done": {"N": "0"},
                    "failed": {"N": "0"},
                    "sent": {"N": "0"},
                    "created": {"S": now},
                    "run": {"N": str(run)},
                },
                **condition,
            )
        )
        if not created:  # another plan started this run first
            job = self.get(job_id)
            assert job is not None
            return job, False
        checkpoint("jobs.after-create")
        self._list(job_id, now)
        job = self.get(job_id)
        assert job is not None
        return job, True

    def _list(self, job_id: str, created: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={"pk": {"S": JOB_LIST_PK}, "sk": {"S": job_id}, "created": {"S": created}},
        )

    def _write_tiles(self, pk: str, tiles: list[str]) -> None:
        """Pending tile records, 25 to a request (unprocessed ones are written again)."""
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": pk},
                        "sk": {"S": f"tile#{tile}"},
                        "state": {"S": TileState.PENDING},
                    }
                }
            }
            for tile in tiles
        ]
        for start in range(0, len(requests), 25):
            batch: dict[str, Any] = {self.table: requests[start : start + 25]}
            for attempt in range(8):
                left = self.client.batch_write_item(RequestItems=batch).get("UnprocessedItems")
                if not left:
                    break
                batch = left
                time.sleep(0.05 * 2**attempt)
            else:
                raise TransientError("tile records left unwritten after 8 tries")

    def record_sent(self, job_id: str, before: int, after: int) -> bool:
        """Record that the tile messages up to `after` (in tile order) went out; conditional on
        the count read (`before`), so the count never goes back. False when it moved."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression="SET sent = :after",
                ConditionExpression="sent = :before OR (attribute_not_exists(sent) AND :before = :zero)",
                ExpressionAttributeValues={
                    ":after": {"N": str(after)},
                    ":before": {"N": str(before)},
                    ":zero": {"N": "0"},
                },
            )
        )

    def start_tile(self, job_id: str, tile: str) -> int:
        """Stamp a pending tile as started now (its message was received) and count the
        attempt; returns the attempts so far, 0 when the tile is not pending."""
        key = {"pk": {"S": f"job#{job_id}"}, "sk": {"S": f"tile#{tile}"}}
        return self._stamp_start(key, ("started", "attempts"), TileState.PENDING, count=True)

    def start_mosaic(self, job_id: str, attempt: bool = True) -> int:
        """Stamp a queued mosaic as started now (counting an attempt, or only showing that a
        part of it is at work); the attempts so far, 0 when not queued."""
        key = {"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}}
        return self._stamp_start(
            key, ("mosaic_started", "mosaic_attempts"), JobState.MOSAIC_QUEUED, count=attempt
        )

    def _stamp_start(
        self, key: dict[str, Any], fields: tuple[str, str], state: str, count: bool
    ) -> int:
        """Set the `started` field of a record in `state` to now and add to its `attempts`
        field (one, or nothing when not `count`); the attempts so far, 0 if not in `state`.
        `NotFound` if there is no such record: the message is refused, it changes nothing."""
        started, attempts = fields
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"SET {started} = :now ADD {attempts} :one",
                ConditionExpression="#s = :state",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":now": {"S": _now()},
                    ":one": {"N": "1" if count else "0"},
                    ":state": {"S": state},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            if "Item" not in error.response:  # a message naming a unit no plan made
                raise NotFound(f"no {key['sk']['S']} record in {key['pk']['S']}") from error
            return 0
        return int(response["Attributes"].get(attempts, {}).get("N", "0"))

    def finish_tile(
        self,
        job_id: str,
        tile: str,
        state: TileState,
        reason: str | None = None,
        item: str | None = None,
    ) -> bool:
        """Move a pending tile to done or failed and count it; False if it had already finished."""
        pk = {"S": f"job#{job_id}"}
        values: dict[str, Any] = {":new": {"S": state}, ":pending": {"S": TileState.PENDING}}
        update, names = _set_expression({"#s": ":new"}, {"reason": reason, "item": item}, values)
        return _conditionally(
            lambda: self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": pk, "sk": {"S": f"tile#{tile}"}},
                            "UpdateExpression": update,
                            "ConditionExpression": "#s = :pending",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": pk, "sk": {"S": "job"}},
                            "UpdateExpression": "ADD pending :minus_one, #counted :one",
                            "ExpressionAttributeNames": {"#counted": str(state)},
                            "ExpressionAttributeValues": {
                                ":minus_one": {"N": "-1"},
                                ":one": {"N": "1"},
                            },
                        }
                    },
                ]
            )
        )

    def reopen_tile(self, job_id: str, tile: str) -> bool:
        """Put a failed tile back to pending (its message is being re-driven) and the job back
        to running, so that the mosaic is made again once the tile finishes. False when the
        tile is not failed (a re-drive of a tile that has since succeeded changes nothing)."""
        pk = {"S": f"job#{job_id}"}
        return _conditionally(
            lambda: self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": pk, "sk": {"S": f"tile#{tile}"}},
                            "UpdateExpression": "SET #s = :pending REMOVE reason",
                            "ConditionExpression": "#s = :failed",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {
                                ":pending": {"S": TileState.PENDING},
                                ":failed": {"S": TileState.FAILED},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": pk, "sk": {"S": "job"}},
                            "UpdateExpression": "SET #s = :running ADD pending :one, failed :minus_one",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {
                                ":running": {"S": JobState.RUNNING},
                                ":one": {"N": "1"},
                                ":minus_one": {"N": "-1"},
                            },
                        }
                    },
                ]
            )
        )

    def requeue_tile(self, job_id: str, tile: str, started: str) -> bool:
        """Put an overdue tile back to waiting (its message is sent again): conditional on
        the start read, so two sweeps never send it twice. False when it moved on."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": f"tile#{tile}"}},
                UpdateExpression="REMOVE started",
                ConditionExpression="#s = :pending AND started = :started",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":pending": {"S": TileState.PENDING},
                    ":started": {"S": started},
                },
            )
        )

    def requeue_mosaic(self, job_id: str, started: str) -> bool:
        """Put an overdue mosaic back to waiting (its message is sent again), conditional on
        the start read. False when it moved on."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression="SET mosaic_sent = :now REMOVE mosaic_started",
                ConditionExpression="#s = :queued AND mosaic_started = :started",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":queued": {"S": JobState.MOSAIC_QUEUED},
                    ":started": {"S": started},
                    ":now": {"S": _now()},
                },
            )
        )

    def unfinished(self) -> list[Job]:
        """Jobs still running or waiting for their mosaic (a finished job's tiles are not read)."""
        jobs = []
        for record in self._query(JOB_LIST_PK):
            head = self.client.get_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{record['sk']['S']}"}, "sk": {"S": "job"}},
                ConsistentRead=True,
                ProjectionExpression="#s",
                ExpressionAttributeNames={"#s": "state"},
            ).get("Item")
            if head and head["state"]["S"] in (JobState.RUNNING, JobState.MOSAIC_QUEUED):
                job = self.get(record["sk"]["S"])
                if job is not None:
                    jobs.append(job)
        return jobs

    def add_usage(self, job_id: str, usage: Usage) -> bool:
        """Add a unit's usage to the job's (atomic counters: units finishing at once all
        count); False when it could not be. Never raises: what a unit used is an estimate for
        the cost table, and must not fail (or hide the error of) the unit itself. A unit that
        crashes before this loses its share."""
        counts = usage.as_dict()
        values = {f":{name}": {"N": str(value)} for name, value in counts.items()}
        update = ", ".join(f"usage_{name} :{name}" for name in counts)
        try:
            return _conditionally(
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                    UpdateExpression=f"ADD {update}",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=values,
                )
            )
        except (ClientError, BotoCoreError, TransientError):
            return False

    def claim_mosaic(self, job_id: str, by: str = "") -> bool:
        """True for exactly one caller once no tile is pending, and again for the same claimer
        (`by`: the tile whose message is being retried) until `mosaic_sent` records that the
        mosaic message went out: a crash between the claim and the send is resumed."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression="SET #s = :queued, claimed_by = :by, claimed_at = :now "
                "REMOVE mosaic_sent, mosaic_started, mosaic_attempts",
                ConditionExpression="(pending = :zero AND #s = :running) OR (#s = :queued "
                "AND claimed_by = :by AND attribute_not_exists(mosaic_sent))",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":queued": {"S": JobState.MOSAIC_QUEUED},
                    ":running": {"S": JobState.RUNNING},
                    ":zero": {"N": "0"},
                    ":by": {"S": by},
                    ":now": {"S": _now()},
                },
            )
        )

    def record_mosaic_sent(self, job_id: str) -> bool:
        """The claimed mosaic's message went out: a later retry of the claimer sends nothing."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression="SET mosaic_sent = :now",
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":now": {"S": _now()},
                    ":queued": {"S": JobState.MOSAIC_QUEUED},
                },
            )
        )

    def finish(
        self, job_id: str, state: JobState, item: str | None = None, reason: str | None = None
    ) -> bool:
        """End the job (or record a rebuilt mosaic); False when there is no such job."""
        values: dict[str, Any] = {":s": {"S": state}}
        update, names = _set_expression(
            {"#s": ":s"}, {"mosaic_item": item, "reason": reason}, values
        )
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression=update,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        )

    def get(self, job_id: str) -> Job | None:
        """The job and its tiles (one Query of its records)."""
        records = self._query(f"job#{job_id}")
        head = next((r for r in records if r["sk"]["S"] == "job"), None)
        if head is None:
            return None
        tiles = [
            TileStatus(
                tile=r["sk"]["S"].removeprefix("tile#"),
                state=TileState(r["state"]["S"]),
                reason=r.get("reason", {}).get("S"),
                item=r.get("item", {}).get("S"),
                started=r.get("started", {}).get("S"),
                attempts=int(r.get("attempts", {}).get("N", "0")),
            )
            for r in records
            if r["sk"]["S"].startswith("tile#")
        ]
        return _job_of(job_id, head, tiles)

    def head(self, job_id: str) -> Job | None:
        """The job without its tiles (a Query of its one head record, whatever the number of
        tiles): its state and its counts, what a list of jobs shows."""
        records = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk = :head",
            ExpressionAttributeValues={":pk": {"S": f"job#{job_id}"}, ":head": {"S": "job"}},
            ConsistentRead=True,
        )["Items"]
        return _job_of(job_id, records[0], []) if records else None

    def all(self) -> list[Job]:
        """Every job's head (state and counts, not the tiles: `get` one job for those)."""
        ids = [record["sk"]["S"] for record in self._query(JOB_LIST_PK)]
        return [job for job in (self.head(job_id) for job_id in ids) if job is not None]

    def _delete_tiles(self, pk: str, tiles: list[TileStatus]) -> None:
        """A re-run may cover other tiles than the last run: forget the old tile records."""
        for status in tiles:
            self.client.delete_item(
                TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": f"tile#{status.tile}"}}
            )

    def _query(self, pk: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        records: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        ):
            records.extend(page["Items"])
        return records


def _optional_count(record: dict[str, Any], name: str) -> int | None:
    value = record.get(name, {}).get("N")
    return None if value is None else int(value)


def _job_of(job_id: str, head: dict[str, Any], tiles: list[TileStatus]) -> Job:
    return Job(
        job_id=job_id,
        month=head["month"]["S"],
        area=head["area"]["S"],
        area_id=head["area_id"]["S"],
        state=JobState(head["state"]["S"]),
        pending=int(head["pending"]["N"]),
        tiles=tiles,
        mosaic_item=head.get("mosaic_item", {}).get("S"),
        reason=head.get("reason", {}).get("S"),
        created=head.get("created", {}).get("S", ""),
        run=int(head.get("run", {}).get("N", "1")),
        sent=int(head.get("sent", {}).get("N", "0")),
        claimed_by=head.get("claimed_by", {}).get("S"),
        claimed_at=head.get("claimed_at", {}).get("S"),
        mosaic_sent=head.get("mosaic_sent", {}).get("S"),
        mosaic_started=head.get("mosaic_started", {}).get("S"),
        mosaic_attempts=int(head.get("mosaic_attempts", {}).get("N", "0")),
        done=_optional_count(head, "done"),
        failed=_optional_count(head, "failed"),
        usage=Usage.from_dict(
            {k.removeprefix("usage_"): v["N"] for k, v in head.items() if k.startswith("usage_")}
        ),
    )


def job_status(job: Job) -> dict[str, Any]:
    """A job as a JSON document (CLI `--json`, an API route): counts, tiles and reasons; the
    area as its id, name and bbox (`areas.area_summary`: the polygon stays in the record)."""
    return {
        "job_id": job.job_id,
        "product": job.product,
        "period": job.month,
        "month": job.month,
        "area": areas.area_summary(job.area, job.area_id),
        "state": str(job.state),
        "run": job.run,
        "version": job.run - 1,
        "created": job.created,
        "counts": {str(state): job.count(state) for state in TileState},
        "tiles": [
            {"tile": t.tile, "state": str(t.state), "reason": t.reason, "item": t.item}
            for t in job.tiles
        ],
        "mosaic_item": job.mosaic_item,
        "reason": job.reason,
        "usage": {**job.usage.as_dict(), "lambda_gb_seconds": round(job.usage.gb_seconds, 3)},
    }
