"""Clients for the AWS services, pointed at the local endpoint when one is configured."""

from __future__ import annotations

from typing import Any, cast

import boto3
from botocore.config import Config

from sansnuages.settings import Settings
from sansnuages.stores import faults
from sansnuages.stores.usage import COUNTER


def client(service: str, settings: Settings) -> Any:
    """A client whose calls the process's request counter sees (a job's usage), and whose
    requests fault tests may fail (`faults.attach`: nothing unless one installed a fault)."""
    made = cast(Any, boto3.client)(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url
    )
    return faults.attach(COUNTER.attach(made))


def resource(service: str, settings: Settings) -> Any:
    return cast(Any, boto3.resource)(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url
    )


def presigning_s3_client(settings: Settings) -> Any:
    """An S3 client whose presigned URLs use Signature Version 4: botocore would sign with the
    older version 2 in the regions that still accept it, which buckets made since June 2020
    refuse."""
    return cast(Any, boto3.client)(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=Config(signature_version="s3v4"),
    )
