"""Uploaded archives in the data bucket: read in place (the zip's central directory through
s3fs, never the whole object), diagnosed when unreadable, copied out member by member, and
archived beside their Item once ingested."""

from __future__ import annotations

import shutil
import zipfile

import s3fs
from aws_lambda_powertools import Logger

from sansnuages import errors
from sansnuages.formats import zipdir
from sansnuages.raster.encode import HASH_CHUNK
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket

EOCD_SEARCH_BYTES = zipdir.EOCD_SIZE + 0xFFFF + zipdir.ZIP64_TRAILER_SIZE
MAX_DIRECTORY_BYTES = 64 * 1024**2
READ_BLOCK_BYTES = 2 * 1024**2

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
        """Keep the original at `target` (beside its Item), then clear it from the drop zone."""
        if not self.bucket.exists(key):
            return
        self.bucket.client.copy({"Bucket": self.bucket.name, "Key": key}, self.bucket.name, target)
        self.bucket.delete(key)
