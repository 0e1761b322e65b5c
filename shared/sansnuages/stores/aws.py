"""Clients for the AWS services, pointed at the local endpoint when one is configured."""

from __future__ import annotations

from typing import Any, cast

import boto3

from sansnuages.settings import Settings


def client(service: str, settings: Settings) -> Any:
    return cast(Any, boto3.client)(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url
    )


def resource(service: str, settings: Settings) -> Any:
    return cast(Any, boto3.resource)(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url
    )
