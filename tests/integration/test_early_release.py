"""Failed records are released early: on a real queue (the moto server), a record whose handler
raised is visible again after its back-off, not after the queue's visibility timeout, while the
others stay in flight; and a release that fails is only logged."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.settings import Settings
from sansnuages.stages.batches import process_batch, release_failed, retry_delay_s
from sansnuages.stores import aws


def _event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """The SQS event Lambda would build of received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def _handler(record: SQSRecord) -> None:
    if json.loads(record.body)["fail"]:
        raise TimeoutError("storage did not answer")


def test_failed_records_come_back_after_their_back_off(function_settings: Settings) -> None:
    sqs = aws.client("sqs", function_settings)
    url = function_settings.composite_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for fail in (True, False, True):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"fail": fail}))
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, AttributeNames=["All"]
    )["Messages"]
    assert len(received) == 3
    processor = BatchProcessor(event_type=EventType.SQS)
    metrics = Metrics(namespace="test", service="t")
    event = _event(received, arn)
    response = process_batch(event, None, _handler, processor, metrics)  # no client: no release
    assert len(response["batchItemFailures"]) == 2
    failed = [SQSRecord(r) for r in event["Records"] if json.loads(r["body"])["fail"]]
    assert release_failed(sqs, failed, delay_s=lambda count: 1) == 2
    time.sleep(2)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    bodies = [json.loads(m["Body"]) for m in again.get("Messages", [])]
    assert bodies == [{"fail": True}, {"fail": True}]  # the succeeded one stays in flight


def test_a_release_that_fails_is_only_logged(function_settings: Settings) -> None:
    sqs = aws.client("sqs", function_settings)
    record = SQSRecord(
        _event(
            [
                {
                    "MessageId": "m",
                    "ReceiptHandle": "not-a-receipt",
                    "Body": "{}",
                    "MD5OfBody": "",
                    "Attributes": {"ApproximateReceiveCount": "1"},
                }
            ],
            "arn:aws:sqs:us-east-1:123456789012:no-such-queue",
        )["Records"][0]
    )
    assert release_failed(sqs, [record]) == 0


def test_the_back_off_doubles_up_to_a_quarter_of_an_hour() -> None:
    assert [retry_delay_s(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [30, 60, 120, 240, 480, 900, 900]
