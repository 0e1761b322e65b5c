"""Reading a zip's central directory from raw bytes: sound, commented, truncated, damaged."""

from __future__ import annotations

import io
import zipfile

import pytest

from sansnuages.formats import zipdir


def _zip(comment: bytes = b"", prefix: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    buffer.write(prefix)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("P/P_FRE_B2.tif", b"\x00" * 5000)
        archive.writestr("P/MASKS/P_EDG_R1.tif", b"\x01" * 300)
        archive.comment = comment
    return buffer.getvalue()


def _directory(data: bytes) -> bytes | None:
    start = zipdir.directory_start(data[-1000:], max(0, len(data) - 1000))
    return None if start is None else data[start:]


@pytest.mark.parametrize("comment", [b"", b"a comment"])
def test_a_sound_zip_has_a_directory_that_parses(comment: bytes) -> None:
    data = _zip(comment)
    directory = _directory(data)
    assert directory is not None and directory.startswith(b"PK\x01\x02")
    assert zipdir.directory_problem(directory) is None


def test_a_comment_that_holds_the_signature_does_not_mislead() -> None:
    directory = _directory(_zip(b"a comment that mentions PK\x05\x06 itself"))
    assert directory is not None and directory.startswith(b"PK\x01\x02")


def test_a_truncated_zip_or_another_file_has_no_directory() -> None:
    data = _zip()
    assert _directory(data[: len(data) // 2]) is None
    assert _directory(b"GIF89a" + bytes(2000)) is None
    assert _directory(data[:-5]) is None  # the record itself cut short


def test_a_damaged_directory_is_told() -> None:
    data = bytearray(_zip())
    start = data.find(b"PK\x01\x02")
    data[start : start + 4] = b"XXXX"
    directory = _directory(bytes(data))
    assert directory is not None
    assert "damaged" in str(zipdir.directory_problem(directory))


def test_the_zip64_record_gives_the_directory_start() -> None:
    data = bytearray(_zip())
    eocd = data.rfind(zipdir.EOCD_SIGNATURE)
    start = int.from_bytes(data[eocd + 16 : eocd + 20], "little")
    record = len(data[:eocd])  # a zip64 record and locator inserted before the EOCD
    zip64 = bytearray(zipdir.ZIP64_RECORD_SIGNATURE + bytes(52))
    zip64[48:56] = start.to_bytes(8, "little")
    locator = zipdir.ZIP64_LOCATOR_SIGNATURE + bytes(4) + record.to_bytes(8, "little") + bytes(4)
    trailer = bytearray(data[eocd:])
    trailer[16:20] = b"\xff\xff\xff\xff"
    rebuilt = bytes(data[:eocd]) + bytes(zip64) + locator + bytes(trailer)
    assert zipdir.directory_start(rebuilt[100:], 100) == start
    broken_locator = rebuilt.replace(zipdir.ZIP64_LOCATOR_SIGNATURE, b"XXXX")
    assert zipdir.directory_start(broken_locator[100:], 100) is None
