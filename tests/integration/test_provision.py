"""Provisioning the template's resources in the local AWS (moto server process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from sansnuages.settings import Settings
from sansnuages.tools.local import template
from sansnuages.tools.local.moto_process import MotoServer
from sansnuages.tools.local.provision import local_environment, provision
from sansnuages.tools.local.template import Stack, load_stack, parse_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture()
def stack(moto_server: MotoServer, unique_name: str) -> Stack:
    stack = load_stack(TEMPLATE, unique_name, endpoint_url=moto_server.url)
    provision(stack)
    return stack


def client(service: str, moto_server: MotoServer) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=moto_server.url)


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message body on the queue now (moto delivers S3 notifications synchronously)."""
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def uploaded_keys(bodies: list[dict[str, Any]]) -> list[str]:
    return [record["s3"]["object"]["key"] for body in bodies for record in body.get("Records", [])]


def test_provision_creates_every_resource(stack: Stack, moto_server: MotoServer) -> None:
    sqs, s3, dynamodb = (client(s, moto_server) for s in ("sqs", "s3", "dynamodb"))
    assert stack.bucket("DataBucket").name in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for queue in stack.queues:
        assert sqs.get_queue_url(QueueName=queue.name)["QueueUrl"] == queue.url
        attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert int(attributes["VisibilityTimeout"]) == queue.visibility_timeout
    catalog = dynamodb.describe_table(TableName=stack.table("CatalogTable").name)["Table"]
    assert [i["IndexName"] for i in catalog["GlobalSecondaryIndexes"]] == ["by_id"]
    ttl = dynamodb.describe_time_to_live(TableName=stack.table("JobsTable").name)
    assert ttl["TimeToLiveDescription"].get("TimeToLiveStatus", "DISABLED") == "DISABLED"


def test_redrive_policies_point_at_the_real_dead_letter_queues(
    stack: Stack, moto_server: MotoServer
) -> None:
    sqs = client("sqs", moto_server)
    for name in ("IngestQueue", "CompositeQueue", "MosaicQueue"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.queue(name).url, AttributeNames=["RedrivePolicy"]
        )["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        dead_letter_name = name.replace("Queue", "DeadLetterQueue")
        dead_letter_url = sqs.get_queue_url(QueueName=stack.queue(dead_letter_name).name)[
            "QueueUrl"
        ]
        dead_letter_arn = sqs.get_queue_attributes(
            QueueUrl=dead_letter_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        assert redrive["deadLetterTargetArn"] == dead_letter_arn
        assert int(redrive["maxReceiveCount"]) == 3


def test_an_upload_under_incoming_notifies_the_ingest_queue(
    stack: Stack, moto_server: MotoServer
) -> None:
    s3, sqs = client("s3", moto_server), client("sqs", moto_server)
    bucket, queue_url = stack.bucket("DataBucket").name, stack.queue("IngestQueue").url
    first = drain(sqs, queue_url)
    assert [body.get("Event") for body in first] == ["s3:TestEvent"]

    s3.put_object(Bucket=bucket, Key="elsewhere/product.zip", Body=b"x")
    s3.put_object(Bucket=bucket, Key="incoming/SENTINEL2A 1.zip", Body=b"x")

    # Keys arrive URL-encoded (moto also encodes the slashes, AWS does not).
    keys = uploaded_keys(drain(sqs, queue_url))
    assert [unquote_plus(key) for key in keys] == ["incoming/SENTINEL2A 1.zip"]


def test_provisioning_twice_changes_nothing(stack: Stack, moto_server: MotoServer) -> None:
    sqs = client("sqs", moto_server)
    queue_url = stack.queue("IngestQueue").url
    drain(sqs, queue_url)
    provision(stack)
    # Rewriting the notification would send a second test event.
    assert drain(sqs, queue_url) == []
    assert len(sqs.list_queues(QueueNamePrefix=stack.name)["QueueUrls"]) == 6


def test_functions_see_the_provisioned_resources(stack: Stack, moto_server: MotoServer) -> None:
    env = local_environment(stack, "CompositeFunction", moto_server.url)
    settings = Settings.from_env(env)
    sqs, dynamodb = client("sqs", moto_server), client("dynamodb", moto_server)
    sqs.send_message(QueueUrl=settings.mosaic_queue_url, MessageBody="{}")
    assert sqs.receive_message(QueueUrl=stack.queue("MosaicQueue").url)["Messages"]
    assert dynamodb.describe_table(TableName=settings.jobs_table)["Table"]["TableStatus"]
    assert settings.endpoint_url == moto_server.url
    assert env["POWERTOOLS_SERVICE_NAME"] == "composite"


def test_template_edits_reach_the_local_deployment(
    tmp_path: Path, moto_server: MotoServer, unique_name: str
) -> None:
    """Local resources come from the template: edit it, and the local stack follows."""
    template = parse_template(TEMPLATE.read_text())
    resources = template["Resources"]
    resources["CompositeQueue"]["Properties"]["VisibilityTimeout"] = 7777
    resources["ThumbnailQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "VisibilityTimeout": 600,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": ["MosaicDeadLetterQueue", "Arn"]},
                "maxReceiveCount": 5,
            },
        },
    }
    edited = tmp_path / "template.json"
    edited.write_text(json.dumps(template))

    stack = load_stack(edited, unique_name, endpoint_url=moto_server.url)
    provision(stack)

    sqs = client("sqs", moto_server)
    composite = sqs.get_queue_attributes(
        QueueUrl=stack.queue("CompositeQueue").url, AttributeNames=["VisibilityTimeout"]
    )
    assert composite["Attributes"]["VisibilityTimeout"] == "7777"
    url = sqs.get_queue_url(QueueName=f"{unique_name}-thumbnailqueue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "600"
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith(
        f"{unique_name}-mosaicdeadletterqueue"
    )


def test_an_edit_to_an_existing_queue_is_applied_on_reprovision(
    tmp_path: Path, stack: Stack, moto_server: MotoServer
) -> None:
    template = parse_template(TEMPLATE.read_text())
    template["Resources"]["IngestQueue"]["Properties"]["VisibilityTimeout"] = 6000
    edited = tmp_path / "template.json"
    edited.write_text(json.dumps(template))

    provision(load_stack(edited, stack.name, endpoint_url=moto_server.url))

    attributes = client("sqs", moto_server).get_queue_attributes(
        QueueUrl=stack.queue("IngestQueue").url, AttributeNames=["VisibilityTimeout"]
    )
    assert attributes["Attributes"]["VisibilityTimeout"] == "6000"


def test_an_expansion_is_kept_beside_the_template_and_made_again_for_an_edit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.read_text())
    template._EXPANDED.clear()  # as in a process that has not expanded it yet
    original = load_stack(path).queue("IngestQueue").visibility_timeout
    kept = list((tmp_path / template.EXPANSIONS_DIR).glob("*.json"))
    assert len(kept) == 1

    # a new process reads the kept expansion instead of running the translator
    cfn = json.loads(kept[0].read_text())
    cfn["Resources"]["IngestQueue"]["Properties"]["VisibilityTimeout"] = original + 1
    kept[0].write_text(json.dumps(cfn))
    template._EXPANDED.clear()
    assert load_stack(path).queue("IngestQueue").visibility_timeout == original + 1

    # an edited template is expanded again, into a file of its own
    path.write_text(TEMPLATE.read_text() + "\n# edited\n")
    assert load_stack(path).queue("IngestQueue").visibility_timeout == original
    assert len(list((tmp_path / template.EXPANSIONS_DIR).glob("*.json"))) == 2

    # an unreadable expansion is made again
    kept[0].write_text("{not json")
    template._EXPANDED.clear()
    path.write_text(TEMPLATE.read_text())
    assert load_stack(path).queue("IngestQueue").visibility_timeout == original
