"""Ingest against a real S3 endpoint (moto server process): COGs, a valid STAC Item, the index,
and quarantine for every kind of bad upload."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
import rasterio
from shapely.geometry import box, shape

from sansnuages import grid
from sansnuages.catalog import Catalog
from sansnuages.ingest import Ingestor, Outcome
from sansnuages.settings import Settings
from sansnuages.simulate import simulate_product

WHEN = datetime(2018, 7, 14, 10, 56, 26, tzinfo=UTC)


@pytest.fixture()
def ingestor(function_settings: Settings) -> Ingestor:
    return Ingestor.from_settings(function_settings)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_product(
        "31UFS", WHEN, "SENTINEL2B", tmp_path_factory.mktemp("p"), resolution=1098, seed=3
    )


def upload(ingestor: Ingestor, body: bytes, name: str) -> str:
    key = f"incoming/{name}"
    ingestor.bucket.put_bytes(key, body, "application/zip")
    return key


def test_a_product_becomes_cogs_an_item_and_an_index_record(
    ingestor: Ingestor, product: Path
) -> None:
    key = upload(ingestor, product.read_bytes(), product.name)
    result = ingestor.ingest(key)
    assert result.outcome == Outcome.INGESTED and result.item_key
    document = ingestor.bucket.get_json(result.item_key)
    item = pystac.Item.from_dict(document)
    item.validate()
    assert item.id == product.stem
    assert item.collection_id == "sentinel2-l2a"
    assert item.properties["grid:code"] == "MGRS-31UFS"
    assert item.properties["view:sun_elevation"] > 0
    tile_square = box(*grid.tile("31UFS").footprint_lonlat().bounds)
    assert shape(item.geometry).within(tile_square.buffer(0.01))
    fre = item.assets["FRE_B4"]
    assert fre.extra_fields["raster:bands"][0]["scale"] == pytest.approx(1e-4)
    assert fre.extra_fields["proj:shape"] == [100, 100]  # read from the product: 1098 m pixels
    with rasterio.Env(**ingestor.settings.gdal_options()):
        with rasterio.open(fre.href.replace("s3://", "/vsis3/", 1)) as cog:
            assert cog.profile["tiled"] and cog.crs.to_epsg() == 32631
            assert cog.nodata == -10000
    indexed = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings).get_item(
        "sentinel2-l2a", item.id
    )
    assert indexed["id"] == item.id
    assert not ingestor.bucket.exists(key)  # moved beside its Item, not lost
    assert ingestor.bucket.exists(item.assets["product"].href.split("/", 3)[3])


def test_the_same_upload_twice_gives_one_item(ingestor: Ingestor, product: Path) -> None:
    first = ingestor.ingest(upload(ingestor, product.read_bytes(), product.name))
    second = ingestor.ingest(upload(ingestor, product.read_bytes(), "copy/" + product.name))
    replayed = ingestor.ingest(f"incoming/{product.name}")  # a notification delivered again
    assert (first.outcome, second.outcome, replayed.outcome) == (
        Outcome.INGESTED,
        Outcome.DUPLICATE,
        Outcome.IGNORED,
    )
    page = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings).search(
        ["sentinel2-l2a"], None, None, None, 100, None
    )
    assert [i["id"] for i in page.items] == [product.stem]


def _rewrite(source: Path, change) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(buffer, "w") as copy:
        for info in original.infolist():
            result = change(info.filename, original.read(info))
            if result is not None:
                copy.writestr(result[0], result[1])
    return buffer.getvalue()


def _bad_uploads(product: Path) -> dict[str, tuple[bytes, str]]:
    whole = product.read_bytes()
    name = product.stem

    def bad_xml(member: str, data: bytes):  # type: ignore[no-untyped-def]
        return (
            (member, b"<Muscate_Metadata_Document><broken")
            if member.endswith("_MTD_ALL.xml")
            else (member, data)
        )

    def escape(member: str, data: bytes):  # type: ignore[no-untyped-def]
        return ("../" + member, data) if member.endswith("_FRE_B2.tif") else (member, data)

    def wrong_size(member: str, data: bytes):  # type: ignore[no-untyped-def]
        if member.endswith("_MTD_ALL.xml"):
            return member, data.replace(b"<NROWS>100</NROWS>", b"<NROWS>200</NROWS>")
        return member, data

    return {
        "not-a-zip.zip": (b"GIF89a not a zip", "NotAZip"),
        "truncated.zip": (whole[: len(whole) // 2], "NotAZip"),
        "unknown.zip": (
            _rewrite(product, lambda m, d: ("photos/" + m.replace("/", "_") + ".jpg", d)),
            "NotAMuscateProduct",
        ),
        "missing-band.zip": (
            _rewrite(product, lambda m, d: None if m.endswith("_FRE_B8.tif") else (m, d)),
            "MissingBand",
        ),
        "malformed-metadata.zip": (_rewrite(product, bad_xml), "InconsistentMetadata"),
        "escaping-paths.zip": (_rewrite(product, escape), "UnsafeArchive"),
        "contradicting-metadata.zip": (_rewrite(product, wrong_size), "InconsistentMetadata"),
        f"{name} renamed.zip": (whole, ""),
    }


def test_bad_uploads_are_quarantined_with_a_reason_and_kept(
    ingestor: Ingestor, product: Path
) -> None:
    for file_name, (body, error) in _bad_uploads(product).items():
        key = upload(ingestor, body, file_name)
        result = ingestor.ingest(key)
        if not error:
            assert result.outcome == Outcome.INGESTED  # the zip's own name does not matter
            continue
        assert result.outcome == Outcome.QUARANTINED, file_name
        reason = ingestor.bucket.get_json(f"quarantine/{file_name}.reason.json")
        assert reason["error"] == error, (file_name, reason)
        assert reason["key"] == key and reason["reason"]
        assert ingestor.bucket.get_bytes(f"quarantine/{file_name}") == body
        assert not ingestor.bucket.exists(key)
