"""Ingest against a real S3 endpoint (moto server process): COGs, a valid STAC Item, the index,
and quarantine for every kind of bad upload."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from product_variants import SMALL, variant_products
from pystac.validation import validate_dict
from shapely.geometry import box, shape

from sansnuages.errors import NotFound, TransientError
from sansnuages.formats import grid
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stac.common import COG
from sansnuages.stages.ingest import Ingestor, Outcome
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.cli import main as cli
from sansnuages.tools.simulate import simulate_product

WHEN = datetime(2018, 7, 14, 10, 56, 26, tzinfo=UTC)


@pytest.fixture()
def ingestor(function_settings: Settings) -> Ingestor:
    return Ingestor.from_settings(function_settings)


@pytest.fixture()
def streaming(function_settings: Settings) -> Ingestor:
    """An ingestor that downloads nothing: the route of uploads above the download bound."""
    made = Ingestor.from_settings(function_settings)
    made.download_limit = 0
    return made


@pytest.fixture(params=["downloaded", "streamed"])
def either(request: pytest.FixtureRequest, function_settings: Settings) -> Ingestor:
    """An ingestor of each route: a small upload downloaded whole, or streamed."""
    made = Ingestor.from_settings(function_settings)
    if request.param == "streamed":
        made.download_limit = 0
    return made


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
    with gdal_env(ingestor.settings):
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


def truncate_fre_b4(member: str, data: bytes) -> tuple[str, bytes]:
    """A band cut short inside a sound zip: its header opens, its pixels cannot be read."""
    return member, data[: len(data) * 2 // 3] if member.endswith("_FRE_B4.tif") else data


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

    def wrong_crs(member: str, data: bytes):  # type: ignore[no-untyped-def]
        if member.endswith("_MTD_ALL.xml"):
            return member, data.replace(
                b">32631</HORIZONTAL_CS_CODE>", b">32632</HORIZONTAL_CS_CODE>"
            )
        return member, data

    def vrt_band(member: str, data: bytes):  # type: ignore[no-untyped-def]
        """A band that is a VRT reading the process's environment: GDAL would open it by its
        content, were the GeoTIFF driver not the only one allowed."""
        if not member.endswith("_FRE_B2.tif"):
            return member, data
        return member, (
            b'<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Int16"'
            b' band="1" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">'
            b"/proc/self/environ</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>2"
            b"</PixelOffset><LineOffset>200</LineOffset></VRTRasterBand></VRTDataset>"
        )

    return {
        "not-a-zip.zip": (b"GIF89a not a zip", "NotAZip"),
        "vrt-band.zip": (_rewrite(product, vrt_band), "UnexpectedFormat"),
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
        "contradicting-crs.zip": (_rewrite(product, wrong_crs), "InconsistentMetadata"),
        "truncated-band.zip": (_rewrite(product, truncate_fre_b4), "CorruptRaster"),
        f"{name} renamed.zip": (whole, ""),
    }


def test_bad_uploads_are_quarantined_with_a_reason_and_kept(
    either: Ingestor, product: Path
) -> None:
    ingestor = either
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
        assert not [k for k in ingestor.bucket.list_keys("l2a/") if k.endswith(".json")]


def test_a_band_that_fails_only_when_read_is_quarantined_not_retried(
    either: Ingestor, product: Path
) -> None:
    ingestor = either
    body = _rewrite(product, truncate_fre_b4)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        (member,) = [m for m in archive.namelist() if m.endswith("_FRE_B4.tif")]
        with rasterio.open(io.BytesIO(archive.read(member))) as dataset:
            assert dataset.width == 100  # it opens: only reading its pixels fails
    result = ingestor.ingest(upload(ingestor, body, "late-failure.zip"))
    assert result.outcome == Outcome.QUARANTINED and result.error == "CorruptRaster"
    assert result.product_id == product.stem and "FRE_B4" in str(result.reason)
    reason = ingestor.bucket.get_json("quarantine/late-failure.zip.reason.json")
    assert reason["error"] == "CorruptRaster" and "decoded" in reason["reason"]


def test_a_quarantined_attempt_removes_the_files_it_wrote_and_only_those(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """A band that fails part-way through conversion: the COGs already written for that
    version go, those of the indexed older version stay."""
    make = partial(simulate_product, "31UFS", WHEN, "SENTINEL2B", resolution=SMALL, seed=3)
    older = _ingested(ingestor, make(out_dir=tmp_path, version="1-8"))
    before = set(ingestor.bucket.list_keys("l2a/"))
    newer = make(out_dir=tmp_path, version="2-0")
    written: list[str] = []
    convert = Ingestor._convert_one

    def recorded(self: Ingestor, *args):  # type: ignore[no-untyped-def]
        asset = convert(self, *args)
        written.append(asset.href)
        return asset

    ingestor._convert_one = partial(recorded, ingestor)  # type: ignore[method-assign]
    result = ingestor.ingest(upload(ingestor, _rewrite(newer, truncate_fre_b4), newer.name))
    assert result.outcome == Outcome.QUARANTINED and result.error == "CorruptRaster"
    assert len(written) >= 10  # the bands before it were converted before the failure surfaced
    assert set(ingestor.bucket.list_keys("l2a/")) == before  # theirs gone, the older's kept
    for asset in older["assets"].values():  # type: ignore[attr-defined]
        assert ingestor.bucket.exists(asset["href"].split("/", 3)[3])


def test_a_quarantined_attempt_keeps_the_files_of_an_item_published_meanwhile(
    ingestor: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken and a sound upload of one product at once: the sound one publishes while the
    broken one converts; the same keys now belong to its Item and stay."""
    other = Ingestor.from_settings(ingestor.settings)
    check = Ingestor._raise_if_corrupt

    def sound_upload_first(self: Ingestor, *args):  # type: ignore[no-untyped-def]
        sound = other.ingest(upload(other, product.read_bytes(), "sound/" + product.name))
        assert sound.outcome == Outcome.INGESTED
        return check(self, *args)

    monkeypatch.setattr(Ingestor, "_raise_if_corrupt", sound_upload_first)
    broken = upload(ingestor, _rewrite(product, truncate_fre_b4), "broken/" + product.name)
    assert ingestor.ingest(broken).outcome == Outcome.QUARANTINED
    document = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings).get_item(
        "sentinel2-l2a", product.stem
    )
    for asset in document["assets"].values():
        assert ingestor.bucket.exists(asset["href"].split("/", 3)[3]), asset["href"]


def test_the_handler_counts_and_logs_a_quarantined_upload(
    ingestor: Ingestor, product: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the function's handler: no retry, a `ProductsQuarantined` metric and a log
    line naming the product, for an upload whose (URL-encoded) key has a space."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("ingest_app", root / "functions/ingest/app.py")
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # the handler module reads the fixture's environment
    upload(ingestor, _rewrite(product, truncate_fre_b4), "late failure.zip")
    event = json.loads((root / "events/ingest-upload.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"]["key"] = "incoming/late+failure.zip"
    body["Records"][0]["s3"]["bucket"]["name"] = ingestor.bucket.name
    event["Records"][0]["body"] = json.dumps(body)

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "ingest", 3008, "r-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"

    capsys.readouterr()
    # The logger of a service is made once per process, on the stdout of the moment: point it
    # at this test's, whichever test loaded the handler first.
    for handler in logging.getLogger(app.logger.name).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stdout)
    assert app.handler(event, Context()) == {"batchItemFailures": []}  # not retried
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    metrics = [line for line in lines if "_aws" in line]
    assert metrics and metrics[0]["ProductsQuarantined"] == [1.0]
    (logged,) = [line for line in lines if line.get("outcome") == "quarantined"]
    assert logged["product"] == product.stem and logged["level"] == "INFO"
    assert logged["error"] == "CorruptRaster" and logged["key"] == "incoming/late failure.zip"
    assert ingestor.bucket.exists("quarantine/late failure.zip.reason.json")


def test_a_failed_read_of_a_sound_band_is_retried_not_quarantined(
    either: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = either
    """A read that fails on the way (the network) raises, so the queue delivers it again."""
    from rasterio._err import CPLE_AppDefinedError

    convert = Ingestor._convert_one
    failed: list[str] = []

    def flaky(self: Ingestor, layout, meta, asset_key, *args):  # type: ignore[no-untyped-def]
        if asset_key == "FRE_B4" and not failed:
            failed.append(asset_key)
            raise CPLE_AppDefinedError(1, 1, "IReadBlock failed: TIFFReadEncodedTile() failed")
        return convert(self, layout, meta, asset_key, *args)

    monkeypatch.setattr(Ingestor, "_convert_one", flaky)
    key = upload(ingestor, product.read_bytes(), "flaky/" + product.name)
    with pytest.raises(CPLE_AppDefinedError):
        ingestor.ingest(key)
    assert ingestor.bucket.exists(key) and not ingestor.bucket.list_keys("quarantine/")
    assert ingestor.ingest(key).outcome == Outcome.INGESTED  # the next delivery


def _reads_that_fail(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The first `times` reads of a zip through s3fs fail as a reset connection does."""
    import s3fs.core

    fetch, failed = s3fs.core.S3File._fetch_range, []

    def reset(self, start, end):  # type: ignore[no-untyped-def]
        if len(failed) < times:
            failed.append(start)
            raise ConnectionResetError(104, "Connection reset by peer")
        return fetch(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", reset)
    return failed


def test_a_failed_read_of_the_zip_directory_is_retried_not_quarantined(
    streaming: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = streaming
    failed = _reads_that_fail(monkeypatch, times=1)
    key = upload(ingestor, product.read_bytes(), "reset/" + product.name)
    with pytest.raises(TransientError):
        ingestor.ingest(key)  # raised, so the queue delivers it again
    assert failed and ingestor.bucket.exists(key)
    assert not ingestor.bucket.list_keys("quarantine/")
    assert ingestor.ingest(key).outcome == Outcome.INGESTED  # the next delivery


def test_a_failed_read_of_the_metadata_is_retried_not_quarantined(
    streaming: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = streaming
    import s3fs.core

    with zipfile.ZipFile(product) as archive:
        (metadata,) = [i for i in archive.infolist() if i.filename.endswith("_MTD_ALL.xml")]
    fetch, failed = s3fs.core.S3File._fetch_range, []

    def reset_on_metadata(self, start, end):  # type: ignore[no-untyped-def]
        if start <= metadata.header_offset < end and not failed:
            failed.append(start)
            raise ConnectionResetError(104, "Connection reset by peer")
        return fetch(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", reset_on_metadata)
    key = upload(ingestor, product.read_bytes(), "reset-metadata/" + product.name)
    with pytest.raises(TransientError):
        ingestor.ingest(key)
    assert failed and ingestor.bucket.exists(key)
    assert not ingestor.bucket.list_keys("quarantine/")
    assert ingestor.ingest(key).outcome == Outcome.INGESTED


def _damaged_directory(source: bytes) -> bytes:
    """The same zip whose last central directory entry lost its signature: an EOCD record
    is there, the directory it points to is not sound."""
    data = bytearray(source)
    entry = data.rfind(b"PK\x01\x02")
    data[entry : entry + 4] = b"XXXX"
    return bytes(data)


@pytest.mark.parametrize("failures", [0, 1])
def test_a_bad_zip_directory_is_quarantined_even_when_reads_fail(
    streaming: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    ingestor = streaming
    _reads_that_fail(monkeypatch, failures)
    whole = product.read_bytes()
    bad = {"cut.zip": whole[: len(whole) - 100], "damaged.zip": _damaged_directory(whole)}
    for name, body in bad.items():
        result = ingestor.ingest(upload(ingestor, body, name))
        assert result.outcome == Outcome.QUARANTINED and result.error == "NotAZip", name
        assert ingestor.bucket.get_bytes(f"quarantine/{name}") == body
    reason = ingestor.bucket.get_json("quarantine/damaged.zip.reason.json")
    assert "directory is damaged" in reason["reason"]


# --- every variant of real products ---------------------------------------------------------


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return variant_products(tmp_path_factory.mktemp("variants"))


def test_every_variant_ingests_as_a_valid_item(
    ingestor: Ingestor, variants: dict[str, Path]
) -> None:
    for variant, path in variants.items():
        result = ingestor.ingest(upload(ingestor, path.read_bytes(), path.name))
        assert result.outcome == Outcome.INGESTED, (variant, result.reason)
        assert result.item_key
        document = ingestor.bucket.get_json(result.item_key)
        validate_dict(document)  # the stored JSON as it is, every extension schema offline
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
        assert document["id"] in members[0], variant  # the folder's id, whatever the zip name
        rasters = [k for k, a in document["assets"].items() if a["type"] == COG]
        assert len(rasters) == sum(m.endswith(".tif") for m in members), variant


def test_items_carry_what_clients_need(ingestor: Ingestor, variants: dict[str, Path]) -> None:
    s2, landsat = variants["uint16 ATB"], variants["Landsat-8"]
    s2_doc = _ingested(ingestor, s2)
    props = s2_doc["properties"]
    assert props["platform"] == "sentinel-2c" and props["constellation"] == "sentinel-2"
    assert props["proj:code"] == "EPSG:32631" and props["proj:epsg"] == 32631
    assert 0 <= props["eo:cloud_cover"] <= 100 and props["sansnuages:cloudy"] is False
    assert props["sat:absolute_orbit"] > 0 and props["processing:level"] == "L2A"
    assert 0 < props["view:sun_elevation"] < 90 and props["grid:code"] == "MGRS-31TCJ"
    atb = s2_doc["assets"]["ATB_R1"]
    assert [b["data_type"] for b in atb["raster:bands"]] == ["uint16", "uint16"]
    assert [b["scale"] for b in atb["raster:bands"]] == [0.05, 0.005]
    for asset in s2_doc["assets"].values():
        assert asset["file:size"] > 0 and asset["roles"]
    assert s2_doc["assets"]["thumbnail"]["roles"] == ["thumbnail", "overview"]
    with gdal_env(ingestor.settings):
        with rasterio.open(cog_path(s2_doc, "FRE_B2")) as fre:
            assert fre.block_shapes[0] == (512, 512) and fre.nodata == -10000
            assert fre.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert fre.compression.name == "deflate"
            assert fre.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
    l8_doc = _ingested(ingestor, landsat)
    b4 = l8_doc["assets"]["FRE_B4"]
    assert b4["raster:bands"][0]["scale"] == pytest.approx(1e-3)  # from its own metadata
    assert l8_doc["collection"] == "landsat8-l2a" and "ATB_XS" in l8_doc["assets"]
    assert l8_doc["properties"]["platform"] == "landsat-8"


def test_snow_products_form_their_own_collection(
    ingestor: Ingestor, variants: dict[str, Path]
) -> None:
    for variant, nodata in (("snow Sentinel-2", 254), ("snow Landsat-8", 255)):
        document = _ingested(ingestor, variants[variant])
        validate_dict(document)
        assert document["collection"] == "snow-l2b"
        assert document["properties"]["processing:level"] == "L2B"
        assert 0 <= document["properties"]["eo:snow_cover"] <= 100
        (snw,) = [k for k in document["assets"] if k.startswith("SNW_")]
        assert document["assets"][snw]["raster:bands"][0]["nodata"] == nodata
        assert document["assets"]["thumbnail"]["type"] == "image/png"
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    collection = catalog.get_collection("snow-l2b")
    pystac.Collection.from_dict(collection, migrate=False).validate()
    assert collection["item_assets"]["SNW_R2"]["roles"] == ["data", "snow-ice"]


def _ingested(ingestor: Ingestor, path: Path) -> dict[str, object]:
    result = ingestor.ingest(upload(ingestor, path.read_bytes(), path.name))
    assert result.outcome == Outcome.INGESTED and result.item_key, result
    return ingestor.bucket.get_json(result.item_key)


def cog_path(document: dict[str, object], key: str) -> str:
    return str(document["assets"][key]["href"]).replace("s3://", "/vsis3/", 1)  # type: ignore[index]


@pytest.mark.filterwarnings(  # stackstac 0.5.1 multiplies affine matrices the old way
    "ignore:Use `@` matmul:PendingDeprecationWarning"
)
def test_odc_stac_and_stackstac_load_an_item_without_opening_files_for_metadata(
    ingestor: Ingestor, product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import odc.stac
    import stackstac

    document = _ingested(ingestor, product)
    item = pystac.Item.from_dict(document, migrate=False)
    gdal = ingestor.settings.gdal_options()
    odc.stac.configure_rio(**gdal)  # odc-stac keeps its GDAL settings apart from rasterio.Env

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a file was opened to plan the load: {args}")

    with monkeypatch.context() as patched:  # planning the arrays must not touch a file
        patched.setattr(rasterio, "open", no_open)
        stacked = stackstac.stack(
            [document],
            assets=["FRE_B4"],
            chunksize=512,
            snap_bounds=False,  # keep the tile grid, whose origin is not a multiple of 1098 m
            gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(always=gdal),
            rescale=False,
        )
        loaded = odc.stac.load([item], bands=["FRE_B4"], chunks={})
    with rasterio.Env(**gdal), rasterio.open(cog_path(document, "FRE_B4")) as cog:
        expected = cog.read(1)
    assert stacked.shape[-2:] == loaded["FRE_B4"].shape[-2:] == expected.shape
    assert stacked.attrs["crs"] == "epsg:32631" and loaded.odc.crs.epsg == 32631
    assert (loaded["FRE_B4"].values[0] == expected).all()
    masked = np.where(expected == -10000, np.nan, expected)  # stackstac turns nodata to NaN
    np.testing.assert_array_equal(stacked.values[0, 0], masked)


def _with_declared_size(source: bytes, suffix: str, size: int) -> bytes:
    """The same zip, whose central directory claims `size` uncompressed bytes for one member."""
    data = bytearray(source)
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        name_length = int.from_bytes(data[start + 28 : start + 30], "little")
        name = bytes(data[start + 46 : start + 46 + name_length]).decode()
        if name.endswith(suffix):
            data[start + 24 : start + 28] = size.to_bytes(4, "little")
        start += 46
    return bytes(data)


def test_a_zip_bomb_is_refused_before_anything_is_decompressed(
    ingestor: Ingestor, product: Path
) -> None:
    bomb = _with_declared_size(product.read_bytes(), "_FRE_B2.tif", 0xFFFFFFF0)
    result = ingestor.ingest(upload(ingestor, bomb, "bomb.zip"))
    assert result.outcome == Outcome.QUARANTINED and result.error == "UnsafeArchive"
    assert "zip bomb" in str(result.reason) and result.product_id == product.stem
    reason = ingestor.bucket.get_json("quarantine/bomb.zip.reason.json")
    assert reason["product"] == product.stem and reason["error"] == "UnsafeArchive"
    assert not ingestor.bucket.list_keys("l2a/")  # nothing converted


def test_two_uploads_of_one_product_at_once_give_one_complete_item(
    ingestor: Ingestor, product: Path
) -> None:
    body = product.read_bytes()
    keys = [upload(ingestor, body, f"{n}/{product.name}") for n in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(ingestor.ingest, keys))
    assert {r.outcome for r in results} <= {Outcome.INGESTED, Outcome.DUPLICATE}
    assert {r.item_key for r in results} == {results[0].item_key}
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    page = catalog.search(["sentinel2-l2a"], None, None, None, 10, None)
    assert [i["id"] for i in page.items] == [product.stem]
    validate_dict(page.items[0])
    assert not [k for k in ingestor.bucket.list_keys("incoming/")]  # none lost, none left


def test_versions_of_one_acquisition_are_kept_and_linked(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    when = datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=UTC)
    make = partial(simulate_product, "31UFS", platform="SENTINEL2B", resolution=SMALL, seed=3)
    newer = make(when, out_dir=tmp_path, version="2-0", flag="C")
    older = make(when, out_dir=tmp_path, version="1-8")
    piece = make(when + timedelta(seconds=20), out_dir=tmp_path, version="1-8")
    for path in (newer, older, piece):  # the newest first: links must not depend on order
        _ingested(ingestor, path)
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    items = {i["id"]: i for i in catalog.search(["sentinel2-l2a"], None, None, None, 9, None).items}
    assert set(items) == {newer.stem, older.stem, piece.stem}  # all kept

    def links(item_id: str) -> dict[str, str]:
        doc = ingestor.bucket.get_json(_item_key(ingestor, items[item_id]))
        assert doc == items[item_id]  # the index caches the file
        return {link["rel"]: link["href"].rsplit("/", 1)[-1] for link in doc["links"]}

    assert items[older.stem]["properties"]["deprecated"] is True
    assert links(older.stem)["successor-version"] == f"{newer.stem}.json"
    assert items[newer.stem]["properties"]["deprecated"] is False
    assert links(newer.stem)["predecessor-version"] == f"{older.stem}.json"
    assert items[piece.stem]["properties"]["deprecated"] is False  # another datatake piece
    assert "predecessor-version" not in links(piece.stem)
    for item in items.values():
        validate_dict(item)


def _version_links(ingestor: Ingestor, item_id: str) -> dict[str, str]:
    """The version links of an Item, in its file and (the same) in the index."""
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    indexed = catalog.get_item("sentinel2-l2a", item_id)
    document = ingestor.bucket.get_json(_item_key(ingestor, indexed))
    assert document["properties"]["deprecated"] == indexed["properties"]["deprecated"]
    assert document["links"] == indexed["links"]
    links = {link["rel"]: link["href"].rsplit("/", 1)[-1] for link in document["links"]}
    links["deprecated"] = str(document["properties"]["deprecated"])
    return {rel: href for rel, href in links.items() if "version" in rel or rel == "deprecated"}


def test_versions_ingested_at_the_same_instant_are_linked(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ingests look for other versions before either has published: each must still
    end up linked to the other, in the files and in the index."""
    import sansnuages.stages.ingest as ingest_module

    make = partial(simulate_product, "31UFS", WHEN, "SENTINEL2B", resolution=SMALL, seed=3)
    older, newer = make(out_dir=tmp_path, version="1-8"), make(out_dir=tmp_path, version="2-0")
    both_looked = threading.Barrier(2, timeout=60)
    publish = ingest_module.publish_item

    def publish_together(*args):  # type: ignore[no-untyped-def]
        both_looked.wait()  # neither saw the other when it built its links
        return publish(*args)

    monkeypatch.setattr(ingest_module, "publish_item", publish_together)
    keys = [upload(ingestor, path.read_bytes(), path.name) for path in (older, newer)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(ingestor.ingest, keys))
    assert [r.outcome for r in results] == [Outcome.INGESTED] * 2
    assert _version_links(ingestor, older.stem) == {
        "successor-version": f"{newer.stem}.json",
        "latest-version": f"{newer.stem}.json",
        "deprecated": "True",
    }
    assert _version_links(ingestor, newer.stem) == {
        "predecessor-version": f"{older.stem}.json",
        "deprecated": "False",
    }


def test_reindex_recomputes_version_links_from_the_files(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    make = partial(simulate_product, "31UFS", WHEN, "SENTINEL2B", resolution=SMALL, seed=3)
    paths = [make(out_dir=tmp_path, version=v) for v in ("1-8", "2-0", "3-0")]
    for path in paths:
        _ingested(ingestor, path)
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    v1, v2, v3 = (catalog.get_item("sentinel2-l2a", path.stem) for path in paths)
    unlinked = {  # a file restored from before the newer versions came
        **v1,
        "properties": {**v1["properties"], "deprecated": False},
        "links": [link for link in v1["links"] if "version" not in link["rel"]],
    }
    ingestor.bucket.put_json(_item_key(ingestor, v1), unlinked)
    for key in ingestor.bucket.list_keys(_item_key(ingestor, v3).rsplit("/", 1)[0] + "/"):
        ingestor.bucket.delete(key)  # the newest version purged
    assert cli(["reindex", "--from-env"]) == 0
    assert _version_links(ingestor, paths[0].stem) == {
        "successor-version": f"{paths[1].stem}.json",
        "latest-version": f"{paths[1].stem}.json",
        "deprecated": "True",
    }
    assert _version_links(ingestor, paths[1].stem) == {  # the newest again, not deprecated
        "predecessor-version": f"{paths[0].stem}.json",
        "deprecated": "False",
    }
    with pytest.raises(NotFound):
        catalog.get_item("sentinel2-l2a", paths[2].stem)


def test_collection_files_keep_the_extent_of_their_items(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    first = simulate_product("31UFS", WHEN, "SENTINEL2B", tmp_path, resolution=SMALL)
    later = WHEN + timedelta(days=40)
    second = simulate_product("31TCJ", later, "SENTINEL2A", tmp_path, resolution=SMALL)
    documents = [_ingested(ingestor, path) for path in (first, second)]
    again = ingestor.ingest(upload(ingestor, first.read_bytes(), "again/" + first.name))
    assert again.outcome == Outcome.DUPLICATE  # and changes nothing
    collection = ingestor.bucket.get_json("collections/sentinel2-l2a.json")
    pystac.Collection.from_dict(collection, migrate=False).validate()
    (overall,) = collection["extent"]["spatial"]["bbox"]
    for document in documents:
        assert box(*overall).contains(box(*document["bbox"]))  # type: ignore[misc]
    west = min(d["bbox"][0] for d in documents)  # type: ignore[index]
    assert overall[0] == pytest.approx(west)
    (interval,) = collection["extent"]["temporal"]["interval"]
    assert interval[0].startswith("2018-07-14T10:56:26") and interval[1].startswith("2018-08-23")
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    indexed = catalog.get_collection("sentinel2-l2a")["extent"]["spatial"]["bbox"][0]
    assert indexed == pytest.approx(overall)  # the file and the index agree
    ingestor.bucket.delete("collections/sentinel2-l2a.json")  # a write lost after the Item's
    retried = ingestor.ingest(upload(ingestor, first.read_bytes(), "retry/" + first.name))
    assert retried.outcome == Outcome.DUPLICATE  # the redelivery finishes the job
    restored = ingestor.bucket.get_json("collections/sentinel2-l2a.json")
    assert box(*restored["extent"]["spatial"]["bbox"][0]).contains(box(*documents[0]["bbox"]))


def test_concurrent_items_never_lose_an_extent(ingestor: Ingestor) -> None:
    from sansnuages.stages.publish import widen_collection

    items = [
        {
            "id": f"x{n}",
            "bbox": [n, 40.0, n + 0.5, 41.0],
            "properties": {"datetime": f"2020-0{n + 1}-01T00:00:00Z"},
        }
        for n in range(6)
    ]
    everyone_read = threading.Barrier(len(items), timeout=60)
    read = ingestor.bucket.get_json_and_etag
    first_read = threading.local()

    def read_together(key: str):  # type: ignore[no-untyped-def]
        result = read(key)
        if not getattr(first_read, "done", False):
            first_read.done = True
            everyone_read.wait()  # all read the same state, then all write
        return result

    ingestor.bucket.get_json_and_etag = read_together  # type: ignore[method-assign]
    with ThreadPoolExecutor(len(items)) as pool:
        written = list(
            pool.map(lambda item: widen_collection(ingestor.bucket, "mosaics", item), items)
        )
    ingestor.bucket.get_json_and_etag = read  # type: ignore[method-assign]
    assert any(written)  # some found their extent already covered by the others' on retry
    collection = ingestor.bucket.get_json("collections/mosaics.json")
    assert collection["extent"]["spatial"]["bbox"] == [[0.0, 40.0, 5.5, 41.0]]
    assert collection["extent"]["temporal"]["interval"] == [
        ["2020-01-01T00:00:00.000000Z", "2020-06-01T00:00:00.000000Z"]
    ]
    assert not widen_collection(ingestor.bucket, "mosaics", items[3])  # already covered


def _item_key(ingestor: Ingestor, item: dict[str, object]) -> str:
    href = item["assets"]["metadata"]["href"]  # type: ignore[index]
    folder = str(href).split("/", 3)[3].rsplit("/", 1)[0]
    return f"{folder}/{item['id']}.json"


def test_antimeridian_footprints_and_cloudy_products(ingestor: Ingestor, tmp_path: Path) -> None:
    when = datetime(2018, 7, 10, 23, 0, tzinfo=UTC)
    path = simulate_product(
        "01WCP", when, "SENTINEL2A", tmp_path, resolution=SMALL, seed=1, cloud_cover=1.0
    )
    document = _ingested(ingestor, path)
    validate_dict(document)
    west, south, east, north = document["bbox"]  # type: ignore[misc]
    assert 178 < west < 180 and -180 < east < -178 and 65 < south < north < 67  # not the globe
    assert document["geometry"]["type"] == "MultiPolygon"  # type: ignore[index]
    assert shape(document["geometry"]).is_valid
    props = document["properties"]
    assert props["eo:cloud_cover"] > 90 and props["sansnuages:cloudy"] is True  # type: ignore[index]
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    clear = catalog.search(None, None, None, None, 9, None, filters={"sansnuages:cloudy": False})
    cloudy = catalog.search(None, None, None, None, 9, None, filters={"sansnuages:cloudy": True})
    assert [i["id"] for i in cloudy.items] == [path.stem] and not clear.items
    across = catalog.search(None, (179.9, 65.9, -179.9, 66.1), None, None, 9, None)
    assert [i["id"] for i in across.items] == [path.stem]


def test_reindex_rebuilds_the_index_from_the_files(
    ingestor: Ingestor, product: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _ingested(ingestor, product)
    catalog = Catalog(ingestor.settings.catalog_table, settings=ingestor.settings)
    ghost = {**document, "id": "GHOST", "links": []}  # indexed, but its file never existed
    catalog.put_item(ghost)
    catalog.delete_item("sentinel2-l2a", product.stem)  # a lost record
    ingestor.bucket.put_json("mosaics/BEL/2018/07/parts/plan.json", {"tiles": []})
    assert cli(["reindex", "--from-env"]) == 0  # the settings of the fixture's environment
    assert "1 items indexed, 1 stale records removed, 1 other" in capsys.readouterr().out
    page = catalog.search(None, None, None, None, 10, None)
    assert [i["id"] for i in page.items] == [product.stem]
    assert page.items[0] == document
    assert catalog.get_collection("sentinel2-l2a")["license"] == "etalab-2.0"


def test_the_ingest_benchmark_runs_at_a_small_size() -> None:
    """bench/ingest.py at 1098 m pixels, so that the script cannot rot; figures are not judged."""
    script = Path(__file__).resolve().parents[2] / "bench" / "ingest.py"
    command = [sys.executable, str(script), "--resolution", "1098", "--json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    figures = json.loads(output.stdout.strip().splitlines()[-1])
    for mode in ("gdal", "sansnuages"):
        assert figures[mode]["wall_s"] > 0 and figures[mode]["peak_rss_mb"] > 50
    assert figures["time_ratio"] > 0 and figures["memory_ratio"] > 0
