"""The queue stages count their failed records, whether some or all of a batch failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.stages.batches import FAILED_RECORDS, process_batch


def _event(bodies: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def _handler(record: SQSRecord) -> None:
    if json.loads(record.body).get("fail"):
        raise ValueError("this record fails")


def _failed(metrics: Metrics) -> list[float]:
    values = metrics.metric_set.get(FAILED_RECORDS, {}).get("Value", [])
    return [float(v) for v in values]


def test_failed_records_of_a_partly_failed_batch_are_counted() -> None:
    metrics = Metrics(namespace="test", service="t")
    metrics.clear_metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    bodies = [json.dumps({"fail": True}), json.dumps({}), json.dumps({"fail": True})]
    response = process_batch(_event(bodies), None, _handler, processor, metrics)
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m0", "m2"]
    assert _failed(metrics) == [2.0]


def test_a_batch_that_failed_whole_is_counted_too() -> None:
    metrics = Metrics(namespace="test", service="t")
    metrics.clear_metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    with pytest.raises(BatchProcessingError):
        process_batch(_event([json.dumps({"fail": True})]), None, _handler, processor, metrics)
    assert _failed(metrics) == [1.0]
