"""A zip's central directory read from raw bytes, to tell a bad archive from a failed read.

A zip ends with its end-of-central-directory record (EOCD, after at most a 64 KB comment),
which says where the directory starts; zip64 archives put that offset in a zip64 record that a
locator just before the EOCD points to. Everything here is pure: the caller fetches the bytes.
"""

from __future__ import annotations

import io
import struct
import zipfile

EOCD_SIGNATURE = b"PK\x05\x06"
EOCD_SIZE = 22
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_LOCATOR_SIZE = 20
ZIP64_RECORD_SIGNATURE = b"PK\x06\x06"
ZIP64_RECORD_SIZE = 56
ZIP64_TRAILER_SIZE = ZIP64_LOCATOR_SIZE + ZIP64_RECORD_SIZE
_NEEDS_ZIP64 = 0xFFFFFFFF


def directory_start(tail: bytes, tail_offset: int) -> int | None:
    """Where the central directory starts in the file, from the file's last bytes `tail`
    (which begin at byte `tail_offset`); None when they hold no EOCD record.

    Needs the zip64 record in `tail` when the EOCD defers to it: the last
    EOCD_SIZE + 64 KB + ZIP64_TRAILER_SIZE bytes always hold everything needed."""
    at = _eocd_position(tail)
    if at is None:
        return None
    (offset,) = struct.unpack_from("<L", tail, at + 16)
    if offset != _NEEDS_ZIP64:
        return int(offset)
    locator = at - ZIP64_LOCATOR_SIZE
    if locator < 0 or tail[locator : locator + 4] != ZIP64_LOCATOR_SIGNATURE:
        return None
    (record_offset,) = struct.unpack_from("<Q", tail, locator + 8)
    record = record_offset - tail_offset
    if record < 0 or tail[record : record + 4] != ZIP64_RECORD_SIGNATURE:
        return None
    (offset64,) = struct.unpack_from("<Q", tail, record + 48)
    return int(offset64)


def _eocd_position(tail: bytes) -> int | None:
    """The EOCD record whose comment runs exactly to the end: a comment may hold the
    signature too."""
    at = tail.rfind(EOCD_SIGNATURE)
    while at >= 0:
        if at + EOCD_SIZE <= len(tail):
            (comment_length,) = struct.unpack_from("<H", tail, at + 20)
            if at + EOCD_SIZE + comment_length == len(tail):
                return at
        at = tail.rfind(EOCD_SIGNATURE, 0, at)
    return None


def directory_problem(directory_to_end: bytes) -> str | None:
    """What is wrong with a central directory (the bytes from its start to the end of the
    file), or None when every entry parses. zipfile takes the missing bytes before it for
    data prepended to the archive, so it reads the directory alone without the members."""
    try:
        with zipfile.ZipFile(io.BytesIO(directory_to_end)) as archive:
            if not archive.infolist():
                return "its central directory lists no member"
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as error:
        return f"its central directory is damaged ({error})"
    return None
