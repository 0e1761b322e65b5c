"""Re-drive: send a queue's dead letters back to it, and reopen the tiles they carry.

Any queue's dead letters can be moved back (`redrive`); those of the composite queue name a
job's tile, which is reopened as well.

A tile whose message exhausted its retries was marked failed (so its job could end) and the
message sits in the composite dead-letter queue. Re-driving puts the tile back to pending and
its job back to running, then the message back on the queue: when the tile finishes, the fan-in
makes the mosaic again. Order matters for crashes: reopen, send, then delete the dead letter;
a re-drive that dies half-way leaves the letter in place, and running it again is harmless
(a tile already pending stays so; a duplicate message is an idempotent re-delivery).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sansnuages.errors import InvalidRequest, SansnuagesError
from sansnuages.settings import Settings
from sansnuages.stores import aws
from sansnuages.stores.jobs import JobStore


@dataclass
class RedriveReport:
    moved: int = 0
    reopened: list[str] = field(default_factory=list)
    """`job/tile` of the tiles put back to pending."""
    unreadable: int = 0
    """Letters that name no tile (moved back all the same: the queue decides their fate)."""


def dead_letter_queue_url(sqs: Any, queue_url: str) -> str:
    """The dead-letter queue of `queue_url`, from its redrive policy."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise SansnuagesError(f"queue {queue_url} has no dead-letter queue")
    name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[1]
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def _tile_of(body: str) -> tuple[str, str] | None:
    try:
        message = json.loads(body)
        return str(message["job_id"]), str(message["tile"])
    except (ValueError, KeyError, TypeError):
        return None


def redrive_composites(
    settings: Settings, sqs: Any = None, jobs: JobStore | None = None, limit: int | None = None
) -> RedriveReport:
    """Move up to `limit` (default all) dead tile messages back to the composite queue."""
    if not settings.composite_queue_url:
        raise InvalidRequest("no composite queue configured")
    sqs = sqs or aws.client("sqs", settings)
    jobs = jobs or JobStore(settings)
    source = settings.composite_queue_url
    return redrive(sqs, source, dead_letter_queue_url(sqs, source), jobs, limit)


def redrive(
    sqs: Any, source: str, dead: str, jobs: JobStore | None = None, limit: int | None = None
) -> RedriveReport:
    """Move up to `limit` (default all) messages of the dead-letter queue `dead` back to the
    queue `source`. With `jobs`, a message that names a job's tile reopens it first."""
    report = RedriveReport()
    while limit is None or report.moved < limit:
        wanted = 10 if limit is None else min(10, limit - report.moved)
        batch = sqs.receive_message(
            QueueUrl=dead, MaxNumberOfMessages=wanted, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return report
        for message in batch:
            if jobs is not None:
                tile = _tile_of(message["Body"])
                if tile is None:
                    report.unreadable += 1
                elif jobs.reopen_tile(*tile):
                    report.reopened.append("/".join(tile))
            sqs.send_message(QueueUrl=source, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=dead, ReceiptHandle=message["ReceiptHandle"])
            report.moved += 1
    return report
