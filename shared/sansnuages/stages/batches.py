"""The queue stages' batches: Powertools' partial-batch processing, with the failed records
counted and released early.

Lambda's `Errors` metric misses a record that fails inside a batch reported through
`ReportBatchItemFailures`; `FailedRecords` (the alarms' metric) counts every one.

A failed record stays invisible until its queue's visibility timeout ends, which Lambda
requires to be at least the function's timeout (90 minutes for the composite queue): a tile
whose storage call was throttled would wait that long for its retry. So every record that
failed with an error the handler caught is made visible again after a short back-off
(`ChangeMessageVisibility`: 30 s, then 60 s, 120 s... at most 15 minutes), and its retry comes
in seconds. Only an invocation that crashes (out of memory, timed out) still costs the full
visibility timeout, which the sweeper's overdue rule accounts for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

logger = Logger(child=True)

FAILED_RECORDS = "FailedRecords"
RELEASE_FIRST_S = 30
RELEASE_MOST_S = 900


def retry_delay_s(receive_count: int) -> int:
    """The back-off before the next delivery of a record received `receive_count` times."""
    return min(RELEASE_MOST_S, RELEASE_FIRST_S * 2 ** max(0, receive_count - 1))


def queue_url_of(arn: str) -> str:
    """The queue URL of an `eventSourceARN` (`arn:aws:sqs:REGION:ACCOUNT:NAME`)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    _, _, _, region, account, name = parts
    return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


def release_failed(
    sqs: Any, records: Sequence[SQSRecord], delay_s: Callable[[int], int] = retry_delay_s
) -> int:
    """Make failed records visible again after their back-off; returns how many were. A
    release that fails is logged and left alone: the record then waits out its timeout."""
    by_queue: dict[str, list[SQSRecord]] = defaultdict(list)
    for record in records:
        by_queue[queue_url_of(record.event_source_arn)].append(record)
    released = 0
    for url, queued in by_queue.items():
        for start in range(0, len(queued), 10):
            entries = [
                {
                    "Id": str(n),
                    "ReceiptHandle": record.receipt_handle,
                    "VisibilityTimeout": delay_s(
                        int(record.attributes.approximate_receive_count or 1)
                    ),
                }
                for n, record in enumerate(queued[start : start + 10])
            ]
            try:
                response = sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                logger.warning("failed records not released early", extra={"error": str(error)})
                continue
            released += len(response.get("Successful") or [])
    return released


def process_batch(
    event: dict[str, Any],
    context: Any,
    record_handler: Callable[[SQSRecord], None],
    processor: BatchProcessor,
    metrics: Metrics,
    sqs: Any = None,
) -> dict[str, Any]:
    """Process an SQS batch, reporting the records that failed, and with an `sqs` client
    releasing them early; the count is emitted even when every record failed, which
    Powertools raises for."""
    try:
        return dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
    finally:
        failed = list(processor.fail_messages)
        metrics.add_metric(name=FAILED_RECORDS, unit=MetricUnit.Count, value=len(failed))
        if sqs is not None and failed:
            release_failed(sqs, [r for r in failed if isinstance(r, SQSRecord)])
