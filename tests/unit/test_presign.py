"""Presigned asset links are signed with Signature Version 4 in every region: buckets made
since June 2020 refuse version 2, which botocore still uses by default in older regions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from sansnuages.api.assets import PRESIGN_SECONDS, s3_presigner
from sansnuages.settings import Settings
from sansnuages.stores import aws


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "eu-west-3"])
def test_presigned_links_use_signature_version_4(region: str) -> None:
    settings = Settings(data_bucket="b", region=region)
    url = s3_presigner(aws.presigning_s3_client(settings))("b", "l2a/x/y.tif")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(PRESIGN_SECONDS)]
    assert PRESIGN_SECONDS <= 15 * 60


def test_a_default_client_would_sign_with_version_2_where_it_may() -> None:
    """What the dedicated client is for: the default one signs version 2 in us-east-1."""
    url = s3_presigner(aws.client("s3", Settings(data_bucket="b", region="us-east-1")))("b", "k")
    assert "Signature=" in url and "X-Amz-Algorithm" not in url
