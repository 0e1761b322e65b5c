"""HTTPS alternates of `s3://` asset hrefs, so that a client outside the region can read them.

The stored Items keep `s3://` hrefs (what in-region tools such as GDAL's /vsis3/ want); the API adds
an `alternate.https` href to each asset, in the shape of the alternate-assets extension: through
a public endpoint when one is configured (a CloudFront distribution, a public bucket), otherwise
a presigned GET URL that expires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError

from sansnuages.layout import split_s3_href

Presign = Callable[[str, str], str]
PRESIGN_SECONDS = 900
"""A presigned alternate works for 15 minutes: long enough to start reading a COG, short enough
that a link passed around stops serving the bucket's egress (which throttling does not cap)."""


@dataclass(frozen=True)
class AssetLinker:
    """Adds the HTTPS alternate of every `s3://` asset href of an Item."""

    public_base_url: str | None = None
    """`{public_base_url}/{key}` serves `s3://<bucket>/{key}`; the bucket is not in the URL."""
    presign: Presign | None = None

    def https_href(self, href: str) -> str | None:
        bucket, key = split_s3_href(href)
        if not bucket or not key:
            return None
        if self.public_base_url:
            return f"{self.public_base_url.rstrip('/')}/{quote(key)}"
        if self.presign is None:
            return None
        try:
            return self.presign(bucket, key)
        except BotoCoreError:  # no credentials to sign with: the s3:// href still stands
            return None

    def item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        assets = item.get("assets")
        if not isinstance(assets, dict):
            return dict(item)
        return {**item, "assets": {name: self.asset(a) for name, a in assets.items()}}

    def asset(self, asset: Any) -> Any:
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or not href.startswith("s3://"):
            return asset
        https = self.https_href(href)
        if https is None:
            return asset
        alternate = {**(asset.get("alternate") or {}), "https": {"href": https}}
        return {**asset, "alternate": alternate}


def s3_presigner(s3_client: Any, expires: int = PRESIGN_SECONDS) -> Presign:
    """Presigned GET URLs from a boto3 S3 client (signing is local: no request is made)."""

    def presign(bucket: str, key: str) -> str:
        return str(
            s3_client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
        )

    return presign
