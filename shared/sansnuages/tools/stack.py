"""A deployment as the operator commands see it: the outputs of a CloudFormation stack, read
with the normal AWS credential chain, and the clients to reach its resources.

`--stack NAME` (or `SANSNUAGES_STACK`) names a deployed stack. Without it, the commands use the
local runtime recorded in `.sansnuages/local.json`, which serves CloudFormation's
DescribeStacks and Lambda's Invoke on its control endpoint: the outputs are read, and the plan
function invoked, by the same calls as on AWS, with the credentials and endpoints of
`local.json` (a new shell needs no AWS variable).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sansnuages.errors import SansnuagesError
from sansnuages.settings import Settings

STACK_VARIABLE = "SANSNUAGES_STACK"
LOCAL_STATE = Path(".sansnuages") / "local.json"
_DEAD_LETTER_OUTPUT = re.compile(r"^(?P<name>[A-Za-z]+)DeadLetterQueueUrl$")
_INVOKE_CONFIG = Config(read_timeout=900, retries={"max_attempts": 1})
"""A synchronous invocation waits up to the functions' longest timeout, and is never sent
twice by the client (a plan that timed out on the client side may still be running)."""


class StackUnavailable(SansnuagesError):
    """The stack's outputs cannot be read: no local runtime, no such stack, no credentials."""


@dataclass(frozen=True)
class QueuePair:
    """A work queue and its dead-letter queue, named as the commands name them (`ingest`)."""

    name: str
    url: str
    dead_letter_url: str


@dataclass(frozen=True)
class Deployment:
    """One stack: its name, region and outputs, and how its clients are made."""

    name: str
    region: str
    outputs: Mapping[str, str]
    session: Any = field(repr=False)
    """The boto3 session its clients come from (the default chain, or local credentials)."""
    endpoint_url: str | None = None
    """Local runtime only: the moto server, for S3, SQS and DynamoDB."""
    control_url: str | None = None
    """Local runtime only: CloudFormation and Lambda as the runtime serves them."""

    @classmethod
    def open(cls, stack: str | None, workdir: Path, region: str | None = None) -> Deployment:
        """The deployed stack `stack`, or the local runtime of `workdir` when it is None."""
        if stack:
            # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda and other SDKs set
            region = region or os.environ.get("AWS_REGION") or None
            return cls.from_cloudformation(stack, cast(Any, boto3.Session)(region_name=region))
        return cls.local(workdir)

    @classmethod
    def from_cloudformation(
        cls,
        name: str,
        session: Any,
        endpoint_url: str | None = None,
        control_url: str | None = None,
    ) -> Deployment:
        client = session.client("cloudformation", endpoint_url=control_url)
        try:
            stacks = client.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", str(error))
            raise StackUnavailable(f"stack {name}: {message}") from None
        except BotoCoreError as error:
            raise StackUnavailable(f"stack {name}: {error}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        region = session.region_name or client.meta.region_name
        return cls(name, region, outputs, session, endpoint_url, control_url)

    @classmethod
    def local(cls, workdir: Path) -> Deployment:
        """The local runtime recorded in `workdir`, with its own credentials and endpoints."""
        path = workdir / LOCAL_STATE
        if not path.exists():
            raise StackUnavailable(
                f"no local runtime: {path} is missing (start one with `sansnuages local up`,"
                f" or name a deployed stack with --stack or {STACK_VARIABLE})"
            )
        facts = json.loads(path.read_text())
        credentials = facts.get("credentials", {})
        session = cast(Any, boto3.Session)(
            aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
            region_name=facts["region"],
        )
        return cls.from_cloudformation(
            str(facts.get("stack_name", "sansnuages")),
            session,
            endpoint_url=facts["endpoint_url"],
            control_url=facts["control_url"],
        )

    @classmethod
    def from_settings(cls, settings: Settings, name: str = "environment") -> Deployment:
        """A deployment known from settings (the functions' environment variables) rather
        than from a stack's outputs."""
        outputs = {
            "DataBucketName": settings.data_bucket,
            "CatalogTableName": settings.catalog_table,
            "JobsTableName": settings.jobs_table,
            "CompositeQueueUrl": settings.composite_queue_url,
            "MosaicQueueUrl": settings.mosaic_queue_url,
        }
        session = cast(Any, boto3.Session)(region_name=settings.region)
        present = {key: value for key, value in outputs.items() if value}
        return cls(name, settings.region, present, session, settings.endpoint_url)

    def output(self, key: str) -> str:
        try:
            return str(self.outputs[key])
        except KeyError:
            raise StackUnavailable(f"stack {self.name} has no output {key}") from None

    def client(self, service: str) -> Any:
        endpoint = self.control_url if service in ("lambda", "cloudformation") else None
        config = _INVOKE_CONFIG if service == "lambda" else None
        return self.session.client(
            service, endpoint_url=endpoint or self.endpoint_url, config=config
        )

    def settings(self) -> Settings:
        """What the core's stores need, from the outputs (clients are passed separately)."""
        return Settings(
            data_bucket=self.output("DataBucketName"),
            catalog_table=self.output("CatalogTableName"),
            jobs_table=self.output("JobsTableName"),
            composite_queue_url=self.outputs.get("CompositeQueueUrl", ""),
            mosaic_queue_url=self.outputs.get("MosaicQueueUrl", ""),
            region=self.region,
            endpoint_url=self.endpoint_url,
        )

    def queues(self) -> list[QueuePair]:
        """Every queue with a dead-letter queue among the outputs (`<Name>QueueUrl` and
        `<Name>DeadLetterQueueUrl`), in the order of the outputs."""
        pairs = []
        for key, value in self.outputs.items():
            match = _DEAD_LETTER_OUTPUT.match(key)
            if match and f"{match['name']}QueueUrl" in self.outputs:
                source = self.outputs[f"{match['name']}QueueUrl"]
                pairs.append(QueuePair(match["name"].lower(), source, value))
        return pairs

    def queue(self, name: str) -> QueuePair:
        found = [pair for pair in self.queues() if pair.name == name.lower()]
        if not found:
            known = ", ".join(pair.name for pair in self.queues())
            raise StackUnavailable(f"no queue {name!r} in stack {self.name} (queues: {known})")
        return found[0]

    def invoke(self, output_key: str, event: Mapping[str, Any]) -> Any:
        """Invoke the function named by an output and return its result; a function error
        is raised with its type and message."""
        response = self.client("lambda").invoke(
            FunctionName=self.output(output_key), Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error = payload if isinstance(payload, dict) else {}
            raise SansnuagesError(
                f"{self.output(output_key)} failed: {error.get('errorType', 'Error')}:"
                f" {error.get('errorMessage', '')}"
            )
        return payload
