"""Create a stack's buckets, queues and tables in the local AWS (the moto server).

What CloudFormation does on deployment, limited to the resources that hold data or carry
messages: moto's own CloudFormation ignores the SAM resources and the bucket notifications, so
the local runtime provisions from the same `Stack` model instead. Every step converges, so
provisioning twice (or after editing the template) is safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sansnuages.settings import Settings
from sansnuages.stores.aws import client
from sansnuages.tools.local.calls import function_access_key
from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS
from sansnuages.tools.local.template import BucketSpec, FunctionSpec, QueueSpec, Stack, TableSpec


@dataclass(frozen=True)
class Clients:
    s3: Any
    sqs: Any
    dynamodb: Any

    @classmethod
    def for_endpoint(cls, endpoint_url: str | None, region: str) -> Clients:
        settings = Settings(data_bucket="", region=region, endpoint_url=endpoint_url)
        return cls(*(client(service, settings) for service in ("s3", "sqs", "dynamodb")))


def provision(
    stack: Stack, endpoint_url: str | None = None, *, clients: Clients | None = None
) -> None:
    """Create (or bring up to date) every bucket, queue and table of `stack`.

    Queues come first (dead-letter queues before their sources) because bucket notifications
    name a queue that must exist. What does not depend on another resource is created at
    once, in threads (boto3's clients are thread-safe): each step is a round trip or two to
    a server in another process, so overlapping them halves the wait.
    """
    clients = clients or Clients.for_endpoint(endpoint_url or stack.endpoint_url, stack.region)
    with ThreadPoolExecutor(PROVISION_THREADS, thread_name_prefix="provision") as pool:
        tables = [pool.submit(ensure_table, clients.dynamodb, table) for table in stack.tables]
        for level in _dead_letters_first(stack.queues):
            _all(pool.submit(ensure_queue, clients.sqs, queue, stack) for queue in level)
        _all(pool.submit(ensure_bucket, clients.s3, bucket, stack) for bucket in stack.buckets)
        _all(tables)


PROVISION_THREADS = 8


def _all(futures: Iterable[Future[Any]]) -> None:
    """Wait for every step, then raise the first error (none is left running behind it)."""
    steps = list(futures)
    wait(steps)
    for step in steps:
        step.result()


def _dead_letters_first(queues: tuple[QueueSpec, ...]) -> list[list[QueueSpec]]:
    """The queues in two rounds: those without a dead-letter queue, then those with one."""
    return [
        [queue for queue in queues if queue.dead_letter is None],
        [queue for queue in queues if queue.dead_letter is not None],
    ]


def queue_attributes(queue: QueueSpec, stack: Stack) -> dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(queue.visibility_timeout),
        "MessageRetentionPeriod": str(queue.message_retention_s),
    }
    if queue.dead_letter is not None:
        redrive = {
            "deadLetterTargetArn": stack.queue(queue.dead_letter).arn,
            "maxReceiveCount": queue.max_receive_count or 1,
        }
        attributes["RedrivePolicy"] = json.dumps(redrive)
    return attributes


def ensure_queue(sqs: Any, queue: QueueSpec, stack: Stack) -> str:
    """The queue's URL; attributes are set on every call so that template edits take effect."""
    attributes = queue_attributes(queue, stack)
    try:
        url: str = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    except ClientError as error:
        if not _is(error, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        create = dict(attributes, FifoQueue="true") if queue.fifo else attributes
        return str(sqs.create_queue(QueueName=queue.name, Attributes=create)["QueueUrl"])
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_table(dynamodb: Any, table: TableSpec) -> None:
    request: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": list(table.key_schema),
        "AttributeDefinitions": list(table.attribute_definitions),
        "BillingMode": table.billing_mode,
    }
    if table.billing_mode == "PROVISIONED":
        request["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    if table.global_secondary_indexes:
        request["GlobalSecondaryIndexes"] = list(table.global_secondary_indexes)
    try:
        dynamodb.create_table(**request)
    except ClientError as error:
        if not _is(error, "ResourceInUseException"):
            raise
    if table.ttl_attribute:
        _ensure_ttl(dynamodb, table.name, table.ttl_attribute)


def _ensure_ttl(dynamodb: Any, table_name: str, attribute: str) -> None:
    current = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") == "ENABLED" and current.get("AttributeName") == attribute:
        return
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


def ensure_bucket(s3: Any, bucket: BucketSpec, stack: Stack) -> None:
    """Create the bucket and point its notifications at the queues' ARNs.

    The notification configuration is written only when it differs: S3 (and moto) send an
    `s3:TestEvent` to the queue each time it is written.
    """
    request: dict[str, Any] = {"Bucket": bucket.name}
    if stack.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": stack.region}
    try:
        s3.create_bucket(**request)
    except ClientError as error:
        if not _is(error, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    wanted = notification_configuration(bucket, stack)
    current = s3.get_bucket_notification_configuration(Bucket=bucket.name)
    if _queue_configurations(current) != _queue_configurations(wanted):
        s3.put_bucket_notification_configuration(
            Bucket=bucket.name, NotificationConfiguration=wanted
        )


def notification_configuration(bucket: BucketSpec, stack: Stack) -> dict[str, Any]:
    configurations = []
    for notification in bucket.notifications:
        rules = [
            {"Name": name, "Value": value}
            for name, value in (("prefix", notification.prefix), ("suffix", notification.suffix))
            if value
        ]
        configuration: dict[str, Any] = {
            "QueueArn": stack.queue(notification.queue_logical_id).arn,
            "Events": list(notification.events),
        }
        if rules:
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.append(configuration)
    return {"QueueConfigurations": configurations} if configurations else {}


def _queue_configurations(configuration: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """A comparable summary of queue notifications (S3 adds ids and may recase rule names)."""
    summary = []
    for entry in configuration.get("QueueConfigurations", []):
        rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        rule_text = ",".join(sorted(f"{r['Name'].lower()}={r['Value']}" for r in rules))
        summary.append((entry["QueueArn"], tuple(sorted(entry["Events"])), rule_text))
    return sorted(summary)


def _is(error: ClientError, *codes: str) -> bool:
    return error.response.get("Error", {}).get("Code") in codes


LAYER_ROOT = "/opt/"
"""Where Lambda mounts the layers of a function."""


def local_environment(
    stack: Stack, function: FunctionSpec | str, endpoint_url: str
) -> dict[str, str]:
    """The environment a function sees in Lambda, pointed at the local endpoint.

    The template's variables, plus what the Lambda service itself sets (region, function name,
    memory, credentials), plus `AWS_ENDPOINT_URL`, the one difference from AWS. Variables that
    point into `/opt` (where Lambda mounts the layers) are left out: locally the layers are the
    virtual environment, whose packages find their own data. Each function signs with an access
    key id of its own, as each has its own role on AWS, so the local S3 can tell its calls apart.
    """
    spec = stack.function(function) if isinstance(function, str) else function
    template = {k: v for k, v in spec.environment.items() if not v.startswith(LAYER_ROOT)}
    return {
        **template,
        **LOCAL_CREDENTIALS,
        "AWS_ACCESS_KEY_ID": function_access_key(spec.logical_id),
        "AWS_REGION": stack.region,
        "AWS_DEFAULT_REGION": stack.region,
        "AWS_ENDPOINT_URL": endpoint_url,
        # The simulator's products are coarser than the native 10 / 20 / 30 m: the local
        # runtime accepts them; the template never sets this.
        "REDUCED_RESOLUTIONS": "true",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
    }
