"""The Lambda event source mapping for SQS, played locally.

It polls the queues the template wires to functions and invokes the handlers with the declared
batch size and batching window. Messages that fail (the whole batch, or the items a handler
reports with ReportBatchItemFailures) go back to the queue; SQS itself counts receives and moves
a message to its dead-letter queue after the redrive policy's maxReceiveCount.
Locally, a failed message becomes visible again after a short back-off instead of the queue's
full visibility timeout, so that retries take seconds, not hours.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sansnuages.tools.local.invoker import FunctionPool, Invocation

log = logging.getLogger("sansnuages.local")

MAX_RECEIVE = 10


@dataclass
class QueueBinding:
    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool


def sqs_event(messages: list[dict[str, Any]], binding: QueueBinding, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": binding.queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_message_ids(
    result: Invocation, messages: list[dict[str, Any]], partial: bool
) -> set[str]:
    """Which messages go back to the queue after an invocation."""
    every = {m["MessageId"] for m in messages}
    if not result.ok:
        return every
    if not partial or not isinstance(result.payload, dict):
        return set()
    failures = result.payload.get("batchItemFailures") or []
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if any(i not in every for i in ids):
        return every  # Lambda treats an unknown identifier as a failure of the whole batch
    return {i for i in ids if i}


class QueuePoller(threading.Thread):
    def __init__(
        self,
        binding: QueueBinding,
        pool: FunctionPool,
        sqs: Any,
        region: str,
        stop: threading.Event,
        retry_delay_s: int = 2,
    ) -> None:
        super().__init__(name=f"poll-{binding.function}", daemon=True)
        self.binding, self.pool, self.sqs, self.region = binding, pool, sqs, region
        self.stop_event = stop
        self.retry_delay_s = retry_delay_s
        self.busy = False

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    self.busy = True
                    self._deliver(messages)
            except Exception:  # noqa: BLE001 (the pump must outlive a transient error)
                if not self.stop_event.is_set():
                    log.exception("poller of %s failed; retrying", self.binding.function)
                    time.sleep(1)
            finally:
                self.busy = False

    def _receive_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.binding.batching_window_s
        while len(batch) < self.binding.batch_size and not self.stop_event.is_set():
            wanted = min(MAX_RECEIVE, self.binding.batch_size - len(batch))
            response = self.sqs.receive_message(
                QueueUrl=self.binding.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=1 if not batch else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch.extend(response.get("Messages", []))
            if not batch or time.monotonic() >= deadline:
                break
            if not response.get("Messages"):
                time.sleep(0.2)
        return batch

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        try:
            result = self.pool.invoke(sqs_event(messages, self.binding, self.region))
        except Exception as error:  # noqa: BLE001 (a failed invocation: release the batch)
            result = Invocation(False, None, "Runtime.Unknown", f"{type(error).__name__}: {error}")
        failed = failed_message_ids(result, messages, self.binding.report_batch_item_failures)
        if not result.ok:
            log.warning(
                "%s failed: %s: %s", self.binding.function, result.error_type, result.error_message
            )
        for message in messages:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.binding.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.retry_delay_s,
                )
            else:
                self.sqs.delete_message(
                    QueueUrl=self.binding.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
