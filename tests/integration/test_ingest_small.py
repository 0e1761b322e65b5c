"""The route of small uploads: downloaded whole (never more than the bound), read locally, the
same Item as the streamed route, the scratch space cleaned whatever the outcome."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sansnuages.errors import TransientError
from sansnuages.settings import Settings
from sansnuages.stages.ingest import DOWNLOAD_LIMIT_BYTES, Ingestor, Outcome
from sansnuages.stores.catalog.stats import INGESTED_PROPERTY
from sansnuages.stores.uploads import Uploads
from sansnuages.tools.local.template import load_stack
from sansnuages.tools.simulate import simulate_product

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2018, 7, 14, 10, 56, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_product(
        "31UFS", WHEN, "SENTINEL2B", tmp_path_factory.mktemp("p"), resolution=1098, seed=3
    )


@pytest.fixture()
def ingestor(function_settings: Settings) -> Ingestor:
    return Ingestor.from_settings(function_settings)


@pytest.fixture()
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys downloaded whole, as `Uploads.download` is asked for them."""
    called: list[str] = []
    download = Uploads.download

    def recorded(self: Uploads, key: str, *args: Any) -> None:
        called.append(key)
        download(self, key, *args)

    monkeypatch.setattr(Uploads, "download", recorded)
    return called


@pytest.fixture()
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder every scratch space of the test is made in."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _upload(ingestor: Ingestor, product: Path, folder: str) -> str:
    key = f"incoming/{folder}/{product.name}"
    ingestor.bucket.client.upload_file(str(product), ingestor.bucket.name, key)
    return key


def _without_time(document: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in document["properties"].items() if k != INGESTED_PROPERTY}
    return {**document, "properties": properties}


def test_both_routes_make_the_same_item(
    ingestor: Ingestor, product: Path, downloads: list[str]
) -> None:
    """Downloaded or streamed, the same upload gives the same Item: footprint, checksums and
    sizes of every COG, facts of every asset."""
    downloaded = ingestor.ingest(_upload(ingestor, product, "small"))
    assert downloaded.outcome == Outcome.INGESTED and downloaded.item_key
    assert downloads == [f"incoming/small/{product.name}"]
    first = ingestor.bucket.get_json(downloaded.item_key)
    for key in ingestor.bucket.list_keys("l2a/"):  # published again from scratch, streamed
        ingestor.bucket.delete(key)
    ingestor.download_limit = 0
    streamed = ingestor.ingest(_upload(ingestor, product, "large"))
    assert streamed.outcome == Outcome.INGESTED and streamed.item_key == downloaded.item_key
    assert downloads == [f"incoming/small/{product.name}"]  # the second was not downloaded
    second = ingestor.bucket.get_json(streamed.item_key)
    assert _without_time(second) == _without_time(first)
    assert first["assets"]["FRE_B4"]["file:checksum"].startswith("1220")


def test_only_uploads_within_the_bound_are_downloaded(
    ingestor: Ingestor, product: Path, downloads: list[str]
) -> None:
    size = product.stat().st_size
    ingestor.download_limit = size - 1
    over = _upload(ingestor, product, "over")
    assert ingestor.ingest(over).outcome == Outcome.INGESTED
    assert downloads == []
    ingestor.download_limit = size
    within = _upload(ingestor, product, "within")
    assert ingestor.ingest(within).outcome == Outcome.DUPLICATE  # the same bytes, archived
    assert downloads == [within]


def test_the_bound_stays_well_inside_the_ephemeral_storage() -> None:
    """A downloaded upload and the COGs made from it (about as large again) share the ingest
    function's ephemeral storage with nothing else: the bound keeps a margin of 4 times."""
    stack = load_stack(ROOT / "template.yaml", stack_name="bound")
    (function,) = [f for f in stack.functions if f.logical_id == "IngestFunction"]
    assert 4 * DOWNLOAD_LIMIT_BYTES <= function.ephemeral_storage_mb * 1024**2


def test_scratch_space_is_removed_whatever_the_outcome(
    ingestor: Ingestor, product: Path, scratch: Path
) -> None:
    assert ingestor.ingest(_upload(ingestor, product, "ok")).outcome == Outcome.INGESTED
    assert list(scratch.iterdir()) == []
    bad = "incoming/bad/not-a-product.zip"
    ingestor.bucket.put_bytes(bad, product.read_bytes()[:-100], "application/zip")
    assert ingestor.ingest(bad).outcome == Outcome.QUARANTINED
    assert list(scratch.iterdir()) == []


def test_an_upload_replaced_while_it_is_read_is_retried_not_quarantined(
    ingestor: Ingestor, product: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another upload of the key between the HEAD and the GET: the bytes read would not be
    those the size was judged on, so the GET asks for the ETag read and the ingest is retried."""
    key = _upload(ingestor, product, "replaced")
    head = Uploads.head

    def replaced_after_head(self: Uploads, key: str) -> Any:
        read = head(self, key)
        self.bucket.put_bytes(key, b"PK\x05\x06" + b"\0" * 18, "application/zip")
        return read

    monkeypatch.setattr(Uploads, "head", replaced_after_head)
    with pytest.raises(TransientError):
        ingestor.ingest(key)
    assert list(scratch.iterdir()) == []
    assert ingestor.bucket.exists(key) and not ingestor.bucket.list_keys("quarantine/")


def test_a_download_cut_short_is_retried_not_quarantined(
    ingestor: Ingestor, product: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.response import StreamingBody

    key = _upload(ingestor, product, "cut")
    read = StreamingBody.read
    cuts: list[int | None] = []

    def reset(self: StreamingBody, amt: int | None = None) -> bytes:
        if not cuts:
            cuts.append(amt)
            raise ConnectionResetError(104, "Connection reset by peer")
        return bytes(read(self, amt))

    monkeypatch.setattr(StreamingBody, "read", reset)
    with pytest.raises(TransientError):
        ingestor.ingest(key)
    assert cuts and list(scratch.iterdir()) == []
    assert ingestor.bucket.exists(key) and not ingestor.bucket.list_keys("quarantine/")
    assert ingestor.ingest(key).outcome == Outcome.INGESTED  # the next delivery


def test_a_download_is_never_larger_than_the_bound(ingestor: Ingestor, product: Path) -> None:
    key = _upload(ingestor, product, "bounded")
    head = ingestor.uploads.head(key)
    assert head is not None and head.size == product.stat().st_size
    with tempfile.TemporaryDirectory() as folder, pytest.raises(ValueError, match="bound"):
        ingestor.uploads.download(key, head, f"{folder}/upload.zip", head.size - 1)
