from sansnuages.tools.local.invoker import Invocation
from sansnuages.tools.local.pump import QueueBinding, failed_message_ids, sqs_event

MESSAGES = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "{}"} for i in range(3)]


def test_a_failed_invocation_returns_the_whole_batch() -> None:
    result = Invocation(False, None, "Sandbox.Timedout", "timed out")
    assert failed_message_ids(result, MESSAGES, partial=True) == {"m0", "m1", "m2"}


def test_partial_failures_return_only_the_reported_items() -> None:
    result = Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m1"}]})
    assert failed_message_ids(result, MESSAGES, partial=True) == {"m1"}


def test_partial_failures_are_ignored_without_report_batch_item_failures() -> None:
    result = Invocation(True, {"batchItemFailures": [{"itemIdentifier": "m1"}]})
    assert failed_message_ids(result, MESSAGES, partial=False) == set()


def test_an_unknown_identifier_fails_the_batch_as_lambda_does() -> None:
    result = Invocation(True, {"batchItemFailures": [{"itemIdentifier": "other"}]})
    assert failed_message_ids(result, MESSAGES, partial=True) == {"m0", "m1", "m2"}


def test_sqs_event_has_the_lambda_shape() -> None:
    binding = QueueBinding("F", "http://q", "arn:aws:sqs:us-east-1:123456789012:q", 10, 0, True)
    event = sqs_event(MESSAGES, binding, "us-east-1")
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == binding.queue_arn
    assert [r["messageId"] for r in event["Records"]] == ["m0", "m1", "m2"]
