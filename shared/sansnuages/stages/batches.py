"""The queue stages' batches: Powertools' partial-batch processing, with the failed records
counted. Lambda's `Errors` metric misses a record that fails inside a batch reported through
`ReportBatchItemFailures`; `FailedRecords` (the alarms' metric) counts every one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

FAILED_RECORDS = "FailedRecords"


def process_batch(
    event: dict[str, Any],
    context: Any,
    record_handler: Callable[[SQSRecord], None],
    processor: BatchProcessor,
    metrics: Metrics,
) -> dict[str, Any]:
    """Process an SQS batch, reporting the records that failed; the count is emitted even when
    every record failed, which Powertools raises for."""
    try:
        return dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
    finally:
        metrics.add_metric(
            name=FAILED_RECORDS, unit=MetricUnit.Count, value=len(processor.fail_messages)
        )
