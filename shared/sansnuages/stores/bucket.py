"""The data bucket: JSON documents, objects and quarantine, over the layout of `sansnuages.layout`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from sansnuages.layout import INCOMING_PREFIX, QUARANTINE_PREFIX
from sansnuages.settings import Settings
from sansnuages.stores import aws

DELETE_BATCH = 1000


def decode_event_key(raw_key: str) -> str:
    """S3 notifications URL-encode keys (spaces as '+'), as AWS does."""
    return unquote_plus(raw_key)


@dataclass
class DataBucket:
    """Reads and writes of documents in the data bucket (rasters go through GDAL instead)."""

    settings: Settings
    client: Any = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = aws.client("s3", self.settings)

    @property
    def name(self) -> str:
        return self.settings.data_bucket

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self.put_bytes(key, body, "application/json")

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)

    def get_json(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self.get_bytes(key)))

    def get_bytes(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.name, Key=key)
        return bytes(response["Body"].read())

    def get_json_or_none(self, key: str) -> dict[str, Any] | None:
        return self.get_json_and_etag(key)[0]

    def get_json_and_etag(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """A document and the ETag that a conditional write of it must match (None, None when
        there is no such key)."""
        try:
            response = self.client.get_object(Bucket=self.name, Key=key)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                return None, None
            raise
        return dict(json.loads(response["Body"].read())), str(response["ETag"])

    def put_json_if(self, key: str, document: dict[str, Any], etag: str | None) -> bool:
        """Write `document` only if the object is still the one read (`etag`), or still absent
        (`etag` None); False when another writer got there first."""
        body = json.dumps(document, separators=(",", ":")).encode()
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(
                Bucket=self.name,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except ClientError as error:
            if _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` (included) to `end` (excluded) of an object, in one ranged GET."""
        if end <= start:
            return b""
        response = self.client.get_object(
            Bucket=self.name, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        return bytes(response["Body"].read())

    def size(self, key: str) -> int:
        return int(self.client.head_object(Bucket=self.name, Key=key)["ContentLength"])

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def list_folders(self, prefix: str) -> list[str]:
        """The "folders" (common prefixes up to the next "/") of the keys under `prefix`."""
        paginator = self.client.get_paginator("list_objects_v2")
        folders: list[str] = []
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix, Delimiter="/"):
            folders.extend(entry["Prefix"] for entry in page.get("CommonPrefixes", []))
        return folders

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def delete_many(self, keys: list[str]) -> None:
        """Delete `keys` in batches of S3's limit; a key that is already gone is no error."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            response = self.client.delete_objects(
                Bucket=self.name, Delete={"Objects": batch, "Quiet": True}
            )
            if response.get("Errors"):
                raise RuntimeError(f"could not delete {response['Errors']}")

    def quarantine(self, key: str, reason: str, error_type: str, product: str | None) -> str:
        """Move an upload aside with a reason a person can read; the upload itself is kept."""
        target = QUARANTINE_PREFIX + key.removeprefix(INCOMING_PREFIX)
        if self.exists(key):  # managed copy: multipart above 5 GB, where copy_object fails
            self.client.copy({"Bucket": self.name, "Key": key}, self.name, target)
        self.put_json(
            target + ".reason.json",
            {
                "key": key,
                "quarantined_as": target,
                "error": error_type,
                "reason": reason,
                "product": product,
                "at": datetime.now(UTC).isoformat(),
            },
        )
        if self.exists(key):
            self.delete(key)
        return target


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
