"""Checks of an uploaded archive made from its central directory alone, before anything is
decompressed: sizes that no real product has are refused."""

from __future__ import annotations

import zipfile
import zlib

from sansnuages import errors

MAX_UNCOMPRESSED_BYTES = 40 * 1024**3
MAX_MEMBER_BYTES = 8 * 1024**3
MAX_COMPRESSION_RATIO = 1000
MAX_METADATA_BYTES = 64 * 1024**2
MAX_MEMBERS = 256
"""Entries of an archive, folders included. A Sentinel-2 L2A product holds about 60 (10 FRE
and 10 SRE bands, ATB and 5 masks per group, metadata, quicklook, folders), about 85 with
per-detector DTF masks; a Landsat-8 product fewer; a snow product a dozen."""
UNIX_SYMLINK = 0o120000
"""The file type bits (in a Unix zip entry's external attributes) of a symbolic link."""


def check_shape(archive: zipfile.ZipFile) -> None:
    """Refuse an archive no real product has the shape of: too many entries, two entries
    with one name (GDAL reads the first, Python's zipfile the last, so the entry checked would
    not be the entry read) and symbolic links."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise errors.UnsafeArchive(
            f"the archive holds {len(infos)} entries, more than the {MAX_MEMBERS} of any product"
        )
    seen: set[str] = set()
    for info in infos:
        name = "/".join(
            p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")
        )
        if name in seen:
            raise errors.UnsafeArchive(f"two entries named {name[:120]!r}")
        seen.add(name)
        if info.create_system == 3 and (info.external_attr >> 16) & 0o170000 == UNIX_SYMLINK:
            raise errors.UnsafeArchive(f"{name[:120]!r} is a symbolic link")


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
