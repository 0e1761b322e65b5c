"""Uploaded archives in the data bucket: read in place (the zip's central directory through
s3fs, never the whole object), diagnosed when unreadable, copied out member by member, and
archived beside their Item once ingested."""

from __future__ import annotations

import shutil
import zipfile

import s3fs
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sansnuages import errors
from sansnuages.formats import zipdir
from sansnuages.raster.encode import HASH_CHUNK
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket

EOCD_SEARCH_BYTES = zipdir.EOCD_SIZE + 0xFFFF + zipdir.ZIP64_TRAILER_SIZE
MAX_DIRECTORY_BYTES = 64 * 1024**2
READ_BLOCK_BYTES = 2 * 1024**2
UPLOAD_SIZE = "upload-size"
UPLOAD_ETAG = "upload-etag"

logger = Logger(child=True)


class Uploads:
    """The uploads of one data bucket."""

    def __init__(self, settings: Settings, bucket: DataBucket) -> None:
        self.settings = settings
        self.bucket = bucket

    def open_zip(self, key: str) -> zipfile.ZipFile:
        """The upload as a zip read in place. A directory that cannot be read is a bad zip
        (`NotAZip`) only if a plain ranged read of it also fails to parse; otherwise the read
        failed (the network) and the upload is retried (`TransientError`)."""
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

    def directory_problem(self, key: str) -> str | None:
        """Tell a bad zip from a failed read: fetch the end-of-central-directory record and
        the directory with plain ranged S3 reads (another client, its own retries) and parse
        them locally. None when they are sound; S3 errors here propagate (retried)."""
        size = self.bucket.size(key)
        tail_start = max(0, size - EOCD_SEARCH_BYTES)
        start = zipdir.directory_start(self.bucket.get_range(key, tail_start, size), tail_start)
        if start is None:
            return "no end-of-central-directory record at its end"
        if start > size or size - start > MAX_DIRECTORY_BYTES:
            return f"its directory would start at byte {start} of {size}"
        return zipdir.directory_problem(self.bucket.get_range(key, start, size))

    def copy_member(self, key: str, member: str, local: str) -> None:
        """Stream one member out of the upload to a local file (through another client than
        GDAL's); a member that cannot be extracted raises zipfile's or zlib's error."""
        with self.open_zip(key) as archive, archive.open(member) as stream:
            with open(local, "wb") as copy:
                shutil.copyfileobj(stream, copy, HASH_CHUNK)

    def archive(self, key: str, target: str) -> None:
        """Keep the original at `target` (beside its Item), then clear it from the drop zone.
        The copy records the upload's size and ETag, so that a later upload of the same bytes
        is known as such (`is_archived`)."""
        if not self.bucket.exists(key):
            return
        size, etag = self.fingerprint(key)
        self.bucket.client.copy(
            {"Bucket": self.bucket.name, "Key": key},
            self.bucket.name,
            target,
            ExtraArgs={
                "Metadata": {UPLOAD_SIZE: str(size), UPLOAD_ETAG: etag},
                "MetadataDirective": "REPLACE",
                "ContentType": "application/zip",
            },
        )
        self.bucket.delete(key)

    def fingerprint(self, key: str) -> tuple[int, str]:
        """Size and ETag of an object: the same upload of the same bytes gives the same."""
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=key)
        return int(head["ContentLength"]), str(head["ETag"]).strip('"')

    def is_archived(self, key: str, target: str) -> bool:
        """Whether the upload `key` is the one archived at `target`, byte for byte as far as
        size and ETag tell (an identical file uploaded in other parts is not recognised: it is
        then checked and ingested again, which is slower but never wrong)."""
        try:
            head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=target)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        recorded = head.get("Metadata") or {}
        size, etag = self.fingerprint(key)
        return recorded.get(UPLOAD_SIZE) == str(size) and recorded.get(UPLOAD_ETAG) == etag
