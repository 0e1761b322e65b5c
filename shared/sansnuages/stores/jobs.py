"""Synthesis jobs: a month over an area, one record per tile, each change a conditional write.

The fan-in works without a coordinator: finishing a tile and decrementing the job's count of
pending tiles is one transaction, and only one caller can claim the mosaic once none is pending.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sansnuages import areas
from sansnuages.settings import Settings
from sansnuages.stores import aws

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


@dataclass(frozen=True)
class Job:
    job_id: str
    month: str
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

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)

    def count(self, state: TileState) -> int:
        return sum(1 for tile in self.tiles if tile.state == state)


def job_id_for(month: str, area_id: str) -> str:
    return f"{month}-{area_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_conditional_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _conditionally(write: Callable[[], object]) -> bool:
    """Run a conditional write: False when its condition did not hold, True when it happened."""
    try:
        write()
    except ClientError as error:
        if _is_conditional_failure(error):
            return False
        raise
    return True


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

        Returns the job and whether it was (re)started, so the caller fans out only then.
        """
        job_id = job_id_for(month, area_id)
        existing = self.get(job_id)
        if existing is not None and not existing.finished:
            return existing, False
        run = existing.run + 1 if existing is not None else 1
        pk = f"job#{job_id}"
        now = _now()
        if existing is not None:
            self._delete_tiles(pk, existing.tiles)
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": pk},
                "sk": {"S": "job"},
                "month": {"S": month},
                "area": {"S": area},
                "area_id": {"S": area_id},
                "state": {"S": JobState.RUNNING},
                "pending": {"N": str(len(tiles))},
                "created": {"S": now},
                "run": {"N": str(run)},
            },
        )
        for tile in tiles:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": pk},
                    "sk": {"S": f"tile#{tile}"},
                    "state": {"S": TileState.PENDING},
                },
            )
        self.client.put_item(
            TableName=self.table,
            Item={"pk": {"S": JOB_LIST_PK}, "sk": {"S": job_id}, "created": {"S": now}},
        )
        job = self.get(job_id)
        assert job is not None
        return job, True

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
                            "UpdateExpression": "ADD pending :minus_one",
                            "ExpressionAttributeValues": {":minus_one": {"N": "-1"}},
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
                            "UpdateExpression": "SET #s = :running ADD pending :one",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {
                                ":running": {"S": JobState.RUNNING},
                                ":one": {"N": "1"},
                            },
                        }
                    },
                ]
            )
        )

    def claim_mosaic(self, job_id: str) -> bool:
        """True for exactly one caller, once no tile is pending."""
        return _conditionally(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
                UpdateExpression="SET #s = :queued",
                ConditionExpression="pending = :zero AND #s = :running",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":queued": {"S": JobState.MOSAIC_QUEUED},
                    ":running": {"S": JobState.RUNNING},
                    ":zero": {"N": "0"},
                },
            )
        )

    def finish(
        self, job_id: str, state: JobState, item: str | None = None, reason: str | None = None
    ) -> None:
        values: dict[str, Any] = {":s": {"S": state}}
        update, names = _set_expression(
            {"#s": ":s"}, {"mosaic_item": item, "reason": reason}, values
        )
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"job#{job_id}"}, "sk": {"S": "job"}},
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get(self, job_id: str) -> Job | None:
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
            )
            for r in records
            if r["sk"]["S"].startswith("tile#")
        ]
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
        )

    def all(self) -> list[Job]:
        ids = [record["sk"]["S"] for record in self._query(JOB_LIST_PK)]
        return [job for job in (self.get(job_id) for job_id in ids) if job is not None]

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


def job_status(job: Job) -> dict[str, Any]:
    """A job as a JSON document (CLI `--json`, an API route): counts, tiles and reasons; the
    area as its id, name and bbox (`areas.area_summary`: the polygon stays in the record)."""
    return {
        "job_id": job.job_id,
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
    }
