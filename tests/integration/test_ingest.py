"""Ingest against a real S3 endpoint (moto server process): COGs, a valid STAC Item, the index,
and quarantine for every kind of bad upload."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict
from shapely.geometry import box, shape

from sansnuages import grid
from sansnuages.catalog import Catalog
from sansnuages.cli import main as cli
from sansnuages.ingest import Ingestor, Outcome
from sansnuages.settings import Settings
from sansnuages.simulate import Packaging, simulate_product, simulate_snow_product
from sansnuages.stac_items import COG

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


# --- every variant of real products ---------------------------------------------------------

SMALL = 1098.0  # 100 x 100 px R1: real sizes are measured by bench/ingest.py


def _variants(out: Path) -> dict[str, Path]:
    """One product per packaging variant that real MUSCATE and Let-It-Snow products show."""
    when = datetime(2025, 7, 20, 10, 50, 1, tzinfo=UTC)  # Sentinel-2C flies from 2024
    s2 = {
        "flag C, V4-0": dict(flag="C", version="4-0"),
        "flag H, V1-0": dict(flag="H", version="1-0"),
        "zip named without version": dict(packaging=Packaging(zip_version=False)),
        "members with ./": dict(packaging=Packaging(dot_paths=True)),
        "uint16 ATB": dict(packaging=Packaging(atb_dtype="uint16")),
        "with DFP masks": dict(packaging=Packaging(with_dfp=True)),
    }
    products = {
        name: simulate_product(
            "31TCJ", when + timedelta(minutes=n), "SENTINEL2C", out, resolution=SMALL, **options
        )
        for n, (name, options) in enumerate(s2.items())
    }
    products["Landsat-8"] = simulate_product(
        "31TCJ", when, "LANDSAT8-OLITIRS-XS", out, resolution=SMALL * 2 / 3, version="1-9"
    )
    products["snow Sentinel-2"] = simulate_snow_product(
        "31TCH", when, "SENTINEL2A", out, resolution=SMALL
    )
    products["snow Landsat-8"] = simulate_snow_product(
        "31TCH", when, "LANDSAT8-OLITIRS-XS", out, resolution=SMALL * 2 / 3, version="2-0"
    )
    return products


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _variants(tmp_path_factory.mktemp("variants"))


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
    assert props["platform"] == "sentinel2c" and props["constellation"] == "sentinel-2"
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
    with rasterio.Env(**ingestor.settings.gdal_options()):
        with rasterio.open(cog_path(s2_doc, "FRE_B2")) as fre:
            assert fre.block_shapes[0] == (512, 512) and fre.nodata == -10000
            assert fre.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert fre.compression.name == "deflate"
            assert fre.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
    l8_doc = _ingested(ingestor, landsat)
    b4 = l8_doc["assets"]["FRE_B4"]
    assert b4["raster:bands"][0]["scale"] == pytest.approx(1e-3)  # from its own metadata
    assert l8_doc["collection"] == "landsat8-l2a" and "ATB_XS" in l8_doc["assets"]


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
