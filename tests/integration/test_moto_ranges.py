"""The embedded local AWS reads only the bytes a ranged GET or a part copy asks for (moto alone
reads the whole object for each), with S3's answers: the bytes, 206 and Content-Range, 416."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sansnuages.tools.local.moto_process import MotoServer, sliced_by_moto

MIB = 1024 * 1024


def _bytes_read(server: MotoServer) -> int:
    """Bytes the server process has read (files and sockets), from /proc."""
    with open(f"/proc/{server.process.pid}/io") as io:
        return int(dict(line.split(": ") for line in io.read().splitlines())["rchar"])


@pytest.fixture()
def s3(moto_server: MotoServer, unique_name: str) -> Any:
    client = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    client.create_bucket(Bucket=unique_name)
    return client


def test_ranged_gets_return_the_right_bytes(s3: Any, unique_name: str) -> None:
    data = os.urandom(6 * MIB + 123)  # above moto's 5 MB in-memory buffer: a file on disk
    s3.put_object(Bucket=unique_name, Key="k", Body=data)
    last = len(data) - 1
    cases = {
        "bytes=0-0": (data[:1], f"bytes 0-0/{len(data)}"),
        "bytes=1000-70999": (data[1000:71000], f"bytes 1000-70999/{len(data)}"),
        f"bytes={last - 9}-": (data[-10:], f"bytes {last - 9}-{last}/{len(data)}"),
        "bytes=-4096": (data[-4096:], f"bytes {last - 4095}-{last}/{len(data)}"),
        f"bytes={last - 1}-{last + 500}": (data[-2:], f"bytes {last - 1}-{last}/{len(data)}"),
    }
    for header, (expected, content_range) in cases.items():
        response = s3.get_object(Bucket=unique_name, Key="k", Range=header)
        assert response["Body"].read() == expected, header
        assert response["ContentRange"] == content_range, header
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
    whole = s3.get_object(Bucket=unique_name, Key="k", Range="bytes=0-1,5-6")  # S3: whole
    assert whole["Body"].read() == data
    assert s3.get_object(Bucket=unique_name, Key="k")["Body"].read() == data
    with pytest.raises(ClientError, match="InvalidRange"):
        s3.get_object(Bucket=unique_name, Key="k", Range=f"bytes={len(data)}-")


def test_ranged_reads_do_not_grow_with_the_object(
    s3: Any, unique_name: str, moto_server: MotoServer
) -> None:
    data = os.urandom(MIB) * 48
    s3.put_object(Bucket=unique_name, Key="big", Body=data)
    before = _bytes_read(moto_server)
    for n in range(20):
        start = n * 2 * MIB + 12345
        body = s3.get_object(Bucket=unique_name, Key="big", Range=f"bytes={start}-{start + 16383}")
        assert body["Body"].read() == data[start : start + 16384]
    assert _bytes_read(moto_server) - before < 4 * MIB  # moto alone: 20 x 48 MiB

    before = _bytes_read(moto_server)
    upload = s3.create_multipart_upload(Bucket=unique_name, Key="copy")
    parts = []
    for number, start in enumerate((0, 8 * MIB), start=1):
        part = s3.upload_part_copy(
            Bucket=unique_name,
            Key="copy",
            UploadId=upload["UploadId"],
            PartNumber=number,
            CopySource={"Bucket": unique_name, "Key": "big"},
            CopySourceRange=f"bytes={start}-{start + 8 * MIB - 1}",
        )
        parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(
        Bucket=unique_name,
        Key="copy",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    # the two 8 MiB ranges, then moto reads each 8 MiB part three times (its ETag, then twice
    # to assemble): 64 MiB; moto alone reads the whole 48 MiB source per part: 144 MiB
    assert _bytes_read(moto_server) - before < 100 * MIB
    assert s3.get_object(Bucket=unique_name, Key="copy")["Body"].read() == data[: 16 * MIB]


def test_moto_slices_only_single_ranges() -> None:
    assert sliced_by_moto("bytes=0-99", 1000) and sliced_by_moto("bytes=-5", 1000)
    assert sliced_by_moto("bytes=2000-", 1000)  # refused with 416: the body is not sent
    assert not sliced_by_moto("bytes=0-1,4-5", 1000)  # several ranges: the whole object
    assert not sliced_by_moto("bytes=9-3", 1000) and not sliced_by_moto("items=0-1", 1000)
    assert not sliced_by_moto("bytes=-", 1000) and not sliced_by_moto(None, 1000)


def test_conditional_writes_let_one_writer_win(s3: Any, unique_name: str) -> None:
    s3.put_object(Bucket=unique_name, Key="doc", Body=b"1", IfNoneMatch="*")
    etag = s3.head_object(Bucket=unique_name, Key="doc")["ETag"]
    s3.put_object(Bucket=unique_name, Key="doc", Body=b"2", IfMatch=etag)
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": etag}):
        with pytest.raises(ClientError, match="PreconditionFailed"):
            s3.put_object(Bucket=unique_name, Key="doc", Body=b"3", **condition)
    assert s3.get_object(Bucket=unique_name, Key="doc")["Body"].read() == b"2"
