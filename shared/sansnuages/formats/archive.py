"""Checks of an uploaded archive made from its central directory alone, before anything is\ndecompressed: sizes that no real product has are refused."""

from __future__ import annotations

import zipfile
import zlib

from sansnuages import errors

MAX_UNCOMPRESSED_BYTES = 40 * 1024**3


MAX_MEMBER_BYTES = 8 * 1024**3


MAX_COMPRESSION_RATIO = 1000


MAX_METADATA_BYTES = 64 * 1024**2


def read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    info = archive.getinfo(member)
    if info.file_size > MAX_METADATA_BYTES:
        raise errors.UnsafeArchive(
            f"{member} declares {info.file_size} bytes, more than any metadata file"
        )
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise errors.NotAZip(f"{member} cannot be read from the archive: {error}") from error
    except OSError as error:  # the transport (a reset connection, an S3 error): redelivered
        raise errors.TransientError(f"{member}: reading it failed ({error})") from error


def check_sizes(archive: zipfile.ZipFile) -> None:
    """Refuse zip bombs from the central directory, before anything is decompressed: a
    member larger than any real band, a ratio no image compresses to, or an absurd total."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER_BYTES:
            raise errors.UnsafeArchive(
                f"{info.filename} declares {info.file_size} bytes uncompressed: refused as a zip bomb"
            )
        if info.file_size > 64 * 1024**2 and ratio > MAX_COMPRESSION_RATIO:
            raise errors.UnsafeArchive(
                f"{info.filename} expands {ratio:.0f} times: refused as a zip bomb"
            )
    if total > MAX_UNCOMPRESSED_BYTES:
        raise errors.UnsafeArchive(f"archive declares {total} bytes uncompressed, over the limit")
