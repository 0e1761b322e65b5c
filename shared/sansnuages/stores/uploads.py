"""Uploaded archives in the data bucket: read in place (the zip's central directory through
s3fs, never the whole object) or, below a size bound, downloaded whole to scratch space and
read there; diagnosed when unreadable, copied out member by member, and archived beside their
Item once ingested."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from sansnuages import errors
from sansnuages.formats import zipdir
from sansnuages.raster.encode import HASH_CHUNK
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket

EOCD_SEARCH_BYTES = zipdir.EOCD_SIZE + 0xFFFF + zipdir.ZIP64_TRAILER_SIZE
MAX_DIRECTORY_BYTES = 64 * 1024**2
READ_BLOCK_BYTES = 2 * 1024**2
SINGLE_COPY_BYTES = 5 * 1024**3
"""S3 copies an object of up to 5 GB in one request; a larger one is copied in parts."""
UPLOAD_SIZE = "upload-size"
UPLOAD_ETAG = "upload-etag"
MISSING = ("404", "NoSuchKey", "NotFound")

logger = Logger(child=True)


@dataclass(frozen=True)
class UploadHead:
    """What one HEAD of an upload tells: its size (whether to download it) and its ETag (the
    bytes a later read or copy must still be)."""

    size: int
    etag: str


class Uploads:
    """The uploads of one data bucket."""

    def __init__(self, settings: Settings, bucket: DataBucket) -> None:
        self.settings = settings
        self.bucket = bucket

    def head(self, key: str) -> UploadHead | None:
        """Size and ETag of an upload; None when it is gone (moved by an earlier delivery)."""
        try:
            return UploadHead(*self.fingerprint(key))
        except ClientError as error:
            if error.response["Error"]["Code"] in MISSING:
                return None
            raise

    def download(self, key: str, head: UploadHead, path: str, limit: int) -> None:
        """Copy the upload whole to the local file `path`, in one GET of the bytes `head`
        described (`IfMatch`), and never more than `limit` bytes whatever the server sends:
        scratch space is bounded. A short, refused or replaced read is the transport's
        (`TransientError`, retried)."""
        if head.size > limit:
            raise ValueError(f"{key}: {head.size} bytes, over the download bound of {limit}")
        try:
            response = self.bucket.client.get_object(
                Bucket=self.bucket.name, Key=key, IfMatch=f'"{head.etag}"'
            )
        except ClientError as error:
            raise errors.TransientError(f"{key}: downloading it failed ({error})") from error
        written = 0
        body = response["Body"]
        try:
            with open(path, "wb") as copy:
                while chunk := body.read(min(HASH_CHUNK, limit + 1 - written)):
                    written += len(chunk)
                    if written > head.size:
                        break
                    copy.write(chunk)
        except (OSError, BotoCoreError) as error:  # a cut read; a full disk is retried too
            raise errors.TransientError(f"{key}: downloading it failed ({error})") from error
        finally:
            body.close()
        if written != head.size:
            raise errors.TransientError(f"{key}: {written} bytes read of {head.size}")

    def open_zip(self, key: str, local: str | None = None) -> zipfile.ZipFile:
        """The upload as a zip: read in place, or from its downloaded copy `local`. A directory
        that cannot be read in place is a bad zip (`NotAZip`) only if a plain ranged read of it
        also fails to parse; otherwise the read failed (the network) and the upload is retried
        (`TransientError`). A local copy has no network to blame: it is a bad zip."""
        if local is not None:
            return self._open_local(key, local)
        import s3fs  # here: aiobotocore and aiohttp cost a cold start 0.3 s that small uploads skip

        fs = s3fs.S3FileSystem(
            endpoint_url=self.settings.endpoint_url,
            client_kwargs={"region_name": self.settings.region},
        )
        handle = fs.open(f"{self.bucket.name}/{key}", "rb", block_size=READ_BLOCK_BYTES)
        try:
            return zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            handle.close()
            problem = self.directory_problem(key)
            if problem is None:
                logger.warning(
                    "zip directory read failed, the directory is sound: retrying",
                    extra={"key": key, "error": str(error)},
                )
                raise errors.TransientError(f"{key}: reading its directory failed") from error
            raise errors.NotAZip(f"{key} is not a readable zip archive: {problem}") from error

    def _open_local(self, key: str, local: str) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(local)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            with open(local, "rb") as handle:

                def read(start: int, end: int) -> bytes:
                    handle.seek(start)
                    return handle.read(end - start)

                problem = _directory_problem(os.path.getsize(local), read) or str(error)
            raise errors.NotAZip(f"{key} is not a readable zip archive: {problem}") from error

    def directory_problem(self, key: str) -> str | None:
        """Tell a bad zip from a failed read: fetch the end-of-central-directory record and
        the directory with plain ranged S3 reads (another client, its own retries) and parse
        them locally. None when they are sound; S3 errors here propagate (retried)."""
        return _directory_problem(
            self.bucket.size(key), lambda start, end: self.bucket.get_range(key, start, end)
        )

    def copy_member(self, key: str, member: str, local: str, archive: str | None = None) -> None:
        """Stream one member out of the upload (or out of its downloaded copy `archive`) to a
        local file, through another reader than GDAL's; a member that cannot be extracted
        raises zipfile's or zlib's error."""
        with self.open_zip(key, archive) as zip_file, zip_file.open(member) as stream:
            with open(local, "wb") as copy:
                shutil.copyfileobj(stream, copy, HASH_CHUNK)

    def archive(self, key: str, target: str, head: UploadHead | None = None) -> None:
        """Keep the original at `target` (beside its Item), then clear it from the drop zone.
        The copy records the upload's size and ETag, so that a later upload of the same bytes
        is known as such (`is_archived`). With the `head` read at the start, an upload that is
        still those bytes is copied in one request (up to S3's 5 GB), without a HEAD."""
        if (
            head is not None
            and head.size <= SINGLE_COPY_BYTES
            and self._copy_as_read(key, target, head)
        ):
            self.bucket.delete(key)
            return
        if not self.bucket.exists(key):
            return
        size, etag = self.fingerprint(key)
        self.bucket.client.copy(
            {"Bucket": self.bucket.name, "Key": key},
            self.bucket.name,
            target,
            ExtraArgs=_archive_args(size, etag),
        )
        self.bucket.delete(key)

    def _copy_as_read(self, key: str, target: str, head: UploadHead) -> bool:
        """One server-side copy, if the upload is still the object `head` described; False
        when it is gone or was replaced (the caller then looks again)."""
        try:
            self.bucket.client.copy_object(
                CopySource={"Bucket": self.bucket.name, "Key": key},
                CopySourceIfMatch=f'"{head.etag}"',
                Bucket=self.bucket.name,
                Key=target,
                **_archive_args(head.size, head.etag),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in (*MISSING, "PreconditionFailed", "412"):
                return False
            raise
        return True

    def fingerprint(self, key: str) -> tuple[int, str]:
        """Size and ETag of an object: the same upload of the same bytes gives the same."""
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=key)
        return int(head["ContentLength"]), str(head["ETag"]).strip('"')

    def is_archived(self, key: str, target: str, head: UploadHead | None = None) -> bool:
        """Whether the upload `key` (of `head`, when read already) is the one archived at
        `target`, byte for byte as far as size and ETag tell (an identical file uploaded in
        other parts is not recognised: it is then checked and ingested again, which is slower
        but never wrong)."""
        try:
            archived = self.bucket.client.head_object(Bucket=self.bucket.name, Key=target)
        except ClientError as error:
            if error.response["Error"]["Code"] in MISSING:
                return False
            raise
        recorded = archived.get("Metadata") or {}
        size, etag = (head.size, head.etag) if head else self.fingerprint(key)
        return recorded.get(UPLOAD_SIZE) == str(size) and recorded.get(UPLOAD_ETAG) == etag


def _archive_args(size: int, etag: str) -> dict[str, object]:
    return {
        "Metadata": {UPLOAD_SIZE: str(size), UPLOAD_ETAG: etag},
        "MetadataDirective": "REPLACE",
        "ContentType": "application/zip",
    }


def _directory_problem(size: int, read: Callable[[int, int], bytes]) -> str | None:
    """What is wrong with the central directory of a zip of `size` bytes, read through
    `read(start, end)`: the end-of-central-directory record first, then the directory."""
    tail_start = max(0, size - EOCD_SEARCH_BYTES)
    start = zipdir.directory_start(read(tail_start, size), tail_start)
    if start is None:
        return "no end-of-central-directory record at its end"
    if start > size or size - start > MAX_DIRECTORY_BYTES:
        return f"its directory would start at byte {start} of {size}"
    return zipdir.directory_problem(read(start, size))
