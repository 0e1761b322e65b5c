"""Hostile uploads through the real notification chain of the local runtime: each one must be
quarantined with its named reason, read nothing it should not, write nothing under `l2a/`,
leak neither of two planted secrets, and leave a published product byte for byte as it was.

The secrets are an environment variable of the ingest workers (on Lambda the environment
holds the function role's credentials) and a local file; the inputs try to read them, and
other users' uploads, through GDAL's VRT driver behind a member named like a band.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rasterio
from affine import Affine
from waiting import wait_for

from sansnuages.formats import grid
from sansnuages.stores.bucket import DataBucket
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.simulate import simulate_product

ROOT = Path(__file__).resolve().parents[2]
TILE = "31TCJ"
WHEN = datetime(2018, 7, 6, 10, 50, 31, tzinfo=UTC)
CANARY_VARIABLE = "SANSNUAGES_TEST_CANARY"


@dataclass(frozen=True)
class Canaries:
    secret: str
    file: Path
    file_secret: str


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    secret = f"canary-env-{uuid.uuid4().hex}"
    file_secret = f"canary-file-{uuid.uuid4().hex}"
    folder = tmp_path_factory.mktemp("secrets")
    path = folder / "secret.txt"
    path.write_text(file_secret * 20)
    os.environ[CANARY_VARIABLE] = secret  # the workers inherit it, as Lambda's hold a role's keys
    yield Canaries(secret, path, file_secret)
    os.environ.pop(CANARY_VARIABLE, None)


@pytest.fixture(scope="module")
def runtime(canaries: Canaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", tmp_path_factory.mktemp("rt"), concurrency=2)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_product(TILE, WHEN, "SENTINEL2A", tmp_path_factory.mktemp("good"), 1830.0)


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _replaced(path: Path, suffix: str, data: bytes) -> bytes:
    """The product with the member ending in `suffix` holding `data` instead."""
    return _zip([(i, data if i.filename.endswith(suffix) else d) for i, d in _members(path)])


def _vrt(source: str, raw: bool) -> bytes:
    """A VRT that reads `source` as pixels (a raw band over a file, or a GDAL path)."""
    if raw:
        band = (
            '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
            f'<SourceFilename relativetoVRT="0">{source}</SourceFilename>'
            "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>"
            "<LineOffset>60</LineOffset></VRTRasterBand>"
        )
    else:
        band = (
            '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
            "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        )
    square = grid.tile(TILE)
    transform = f"{square.ulx}, 1830, 0, {square.uly}, 0, -1830"
    return (
        f'<VRTDataset rasterXSize="60" rasterYSize="60"><GeoTransform>{transform}</GeoTransform>'
        f"{band}</VRTDataset>"
    ).encode()


def _sparse_tiff(width: int, pixel: float) -> bytes:
    """A GeoTIFF on the tile's corner that declares `width` x `width` pixels and stores none."""
    square = grid.tile(TILE)
    profile = {
        "driver": "GTiff", "width": width, "height": width, "count": 1, "dtype": "int16",
        "crs": f"EPSG:{square.epsg}", "transform": Affine(pixel, 0, square.ulx, 0, -pixel, square.uly),
        "sparse_ok": True, "tiled": False, "blockysize": width,
    }  # fmt: skip
    with rasterio.MemoryFile() as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's, inside rasterio
        with memory.open(**profile):
            pass
        return bytes(memory.read())


def _shifted_tiff(path: Path) -> bytes:
    """The product's own B2, moved one tile east: a product must not set another tile's grid."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("_FRE_B2.tif"))
        with rasterio.MemoryFile(archive.read(name)) as memory, memory.open() as src:
            profile = src.profile | {"transform": src.transform @ src.transform.translation(60, 0)}
            data = src.read()
    with rasterio.MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data)
        return bytes(memory.read())


def _metadata_changed(path: Path, old: str, new: str) -> bytes:
    entries = []
    for info, data in _members(path):
        if info.filename.endswith("_MTD_ALL.xml"):
            assert old.encode() in data, old
            data = data.replace(old.encode(), new.encode())
        entries.append((info, data))
    return _zip(entries)


def _entity_bomb(path: Path) -> bytes:
    """The metadata as UTF-16 with a billion-laughs DTD, which a byte search for "<!DOCTYPE"
    does not find."""
    laughs = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    entries = []
    for info, data in _members(path):
        if info.filename.endswith("_MTD_ALL.xml"):
            text = data.decode("utf-8").split("?>", 1)[1]
            bomb = (
                f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY l0 "lol">{laughs}]>'
            )
            data = (bomb + text.replace("<PRODUCT_ID>", "<PRODUCT_ID>&l9;", 1)).encode("utf-16")
        entries.append((info, data))
    return _zip(entries)


def _with_extra(path: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    return _zip([*_members(path), *extra])


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16) | 0
    return info, target.encode()


def _hostile(good: Path, canaries: Canaries, bucket: str) -> dict[str, tuple[bytes, str]]:
    """Each hostile upload, with the error it must be quarantined with."""
    root = _members(good)[0][0].filename.split("/")[0]
    b2 = "_FRE_B2.tif"
    environ = "/proc/self/environ"
    with pytest.warns(UserWarning, match="Duplicate name"):
        duplicate = _with_extra(good, [(f"{root}/{root}{b2}", _vrt(environ, raw=True))])
    return {
        "vrt-environ": (_replaced(good, b2, _vrt(environ, raw=True)), "UnexpectedFormat"),
        "vrt-file": (_replaced(good, b2, _vrt(str(canaries.file), raw=True)), "UnexpectedFormat"),
        "vrt-vsis3": (
            _replaced(good, b2, _vrt(f"/vsis3/{bucket}/incoming/other/secret.tif", raw=False)),
            "UnexpectedFormat",
        ),
        "vrt-vsicurl": (
            _replaced(good, b2, _vrt("/vsicurl/http://127.0.0.1:9/secret.tif", raw=False)),
            "UnexpectedFormat",
        ),
        "pixel-bomb": (_replaced(good, b2, _sparse_tiff(200_000, 0.549)), "OffGrid"),
        "native-pixels-claimed": (
            _replaced(good, b2, _sparse_tiff(10_980, 10.0)),
            "InconsistentMetadata",
        ),
        "other-tile-grid": (_replaced(good, b2, _shifted_tiff(good)), "OffGrid"),
        "too-many-members": (
            _with_extra(good, [(f"{root}/DATA/x{i}.txt", b"") for i in range(300)]),
            "UnsafeArchive",
        ),
        "duplicate-names": (duplicate, "UnsafeArchive"),
        "symlink": (
            _with_extra(good, [_symlink(f"{root}/DATA/link", str(canaries.file))]),
            "UnsafeArchive",
        ),
        "zone": (_metadata_changed(good, f"T{TILE}<", "T32ULU<"), "InconsistentMetadata"),
        "zone-path": (_metadata_changed(good, f"T{TILE}<", "T../../x<"), "InconsistentMetadata"),
        "date": (_metadata_changed(good, "2018-07-06T", "2018-08-06T"), "InconsistentMetadata"),
        "platform": (
            _metadata_changed(good, ">SENTINEL2A<", ">SENTINEL2B<"),
            "InconsistentMetadata",
        ),
        "utf16-entity-bomb": (_entity_bomb(good), "InconsistentMetadata"),
    }


def _outputs(bucket: DataBucket) -> bytes:
    """Every object the pipeline wrote or kept: where a leaked secret would end up."""
    return b"".join(
        bucket.get_bytes(key) for key in bucket.list_keys("") if not key.startswith("incoming/")
    )


def test_hostile_uploads_are_quarantined_with_their_reasons(
    runtime: LocalRuntime, good: Path, canaries: Canaries, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    good_key = f"incoming/good/{good.name}"
    bucket.client.upload_file(str(good), bucket.name, good_key)
    product_id = good.stem
    wait_for(lambda: any(k.endswith(f"{product_id}.zip") for k in bucket.list_keys("l2a/")), "good")
    published = {k: bucket.get_bytes(k) for k in bucket.list_keys("l2a/")}
    archived = next(k for k in published if k.endswith(".zip"))
    assert published[archived] == good.read_bytes()

    hostile = _hostile(good, canaries, bucket.name)
    started = time.monotonic()
    for name, (data, _) in hostile.items():
        bucket.put_bytes(f"incoming/hostile/{name}.zip", data, "application/zip")
    reasons = {}

    def judged() -> bool:
        for name in hostile:
            key = f"quarantine/hostile/{name}.zip.reason.json"
            if name not in reasons and bucket.exists(key):
                reasons[name] = bucket.get_json(key)
        return len(reasons) == len(hostile)

    wait_for(judged, "every hostile upload quarantined")
    elapsed = time.monotonic() - started
    wrong = {
        n: (r["error"], r["reason"]) for n, r in reasons.items() if r["error"] != hostile[n][1]
    }
    assert wrong == {}
    # nothing new under l2a/, and the published product byte for byte as it was
    assert {k: bucket.get_bytes(k) for k in bucket.list_keys("l2a/")} == published
    outputs = _outputs(bucket)
    assert canaries.secret.encode() not in outputs
    assert canaries.file_secret.encode() not in outputs
    with capsys.disabled():
        print(
            f"\nhostile upload corpus: {len(hostile)} uploads tried, {len(reasons)} quarantined "
            f"with the expected reason, 0 outputs leaked, {elapsed:.1f} s for all of them"
        )


def test_a_corrupt_reupload_leaves_the_published_product_as_it_was(
    runtime: LocalRuntime, good: Path, tmp_path: Path
) -> None:
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    product_id = good.stem
    archived_key = next(
        (k for k in bucket.list_keys("l2a/") if k.endswith(f"{product_id}.zip")), None
    )
    if archived_key is None:
        bucket.client.upload_file(str(good), bucket.name, f"incoming/first/{good.name}")
        wait_for(
            lambda: any(k.endswith(f"{product_id}.zip") for k in bucket.list_keys("l2a/")), "good"
        )
    before = {k: bucket.get_bytes(k) for k in bucket.list_keys("l2a/")}
    # the same id, a B4 cut short: a valid zip whose raster's last blocks are missing
    with zipfile.ZipFile(good) as archive:
        name = next(n for n in archive.namelist() if n.endswith("_FRE_B4.tif"))
        tiff = archive.read(name)
    tiff = tiff[: len(tiff) * 2 // 3]
    corrupt = _replaced(good, "_FRE_B4.tif", tiff)
    bucket.put_bytes(f"incoming/again/{good.name}", corrupt, "application/zip")
    reason_key = f"quarantine/again/{good.name}.reason.json"
    wait_for(lambda: bucket.exists(reason_key), "the corrupt re-upload quarantined")
    assert bucket.get_json(reason_key)["error"] == "CorruptRaster"
    assert {k: bucket.get_bytes(k) for k in bucket.list_keys("l2a/")} == before
    # and the identical bytes again are a duplicate, which changes nothing either
    bucket.client.upload_file(str(good), bucket.name, f"incoming/same/{good.name}")
    wait_for(lambda: not bucket.list_keys("incoming/same/"), "the identical upload handled")
    assert not bucket.exists(f"quarantine/same/{good.name}.reason.json")
    assert {k: bucket.get_bytes(k) for k in bucket.list_keys("l2a/")} == before


def test_a_valid_reupload_with_other_bytes_replaces_the_product(
    runtime: LocalRuntime, good: Path, tmp_path: Path
) -> None:
    """Other bytes under a published id, all sound: checked, then ingested in its place."""
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    other = simulate_product(TILE, WHEN, "SENTINEL2A", tmp_path, 1830.0, seed=99)
    assert other.name == good.name and other.read_bytes() != good.read_bytes()
    bucket.client.upload_file(str(other), bucket.name, f"incoming/replace/{other.name}")
    wait_for(lambda: not bucket.list_keys("incoming/replace/"), "the re-upload handled")
    assert not bucket.exists(f"quarantine/replace/{other.name}.reason.json")
    archived = next(k for k in bucket.list_keys("l2a/") if k.endswith(f"/{other.name}"))
    assert bucket.get_bytes(archived) == other.read_bytes()
    item = json.loads(bucket.get_bytes(archived.removesuffix(".zip") + ".json"))
    assert item["assets"]["product"]["file:size"] == other.stat().st_size
