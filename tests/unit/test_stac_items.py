"""Pure STAC builders: projection fields both clients read, versions, antimeridian bboxes,
collections that validate."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
from pystac.validation import validate_dict

from sansnuages.formats import snow
from sansnuages.stac.collections import COLLECTIONS, make_collection
from sansnuages.stac.common import (
    PROJECTION_V1_2,
    PROJECTION_V2,
    ItemFacts,
    RasterAsset,
    bbox_of,
    build_item,
    item_document,
    multihash_sha256,
)
from sansnuages.stac.versions import VersionLinks, version_history, version_label


def _item() -> pystac.Item:
    facts = ItemFacts(
        id="X",
        collection="sentinel2-l2a",
        geometry={"type": "Point", "coordinates": [3.0, 50.0]},
        bbox=[3.0, 50.0, 3.0, 50.0],
        datetime=datetime(2018, 7, 14, tzinfo=UTC),
    )
    raster = RasterAsset(
        key="FRE_B2",
        href="s3://b/FRE_B2.tif",
        title="B2",
        roles=("data", "reflectance"),
        shape=(10980, 10980),
        transform=(10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0),
        epsg=32631,
        data_type="int16",
        nodata=-10000,
        scales=(1e-4,),
        band_names=("B2",),
        size_bytes=12,
        checksum=multihash_sha256(b"x"),
    )
    return build_item(facts, [raster], platform="SENTINEL2B")


def test_items_carry_proj_epsg_and_proj_code_under_a_schema_that_allows_both() -> None:
    document = item_document(_item(), "l2a/X/X.json", "collections/c.json")
    assert PROJECTION_V1_2 in document["stac_extensions"]
    assert PROJECTION_V2 not in document["stac_extensions"]
    asset = document["assets"]["FRE_B2"]
    assert (asset["proj:epsg"], asset["proj:code"]) == (32631, "EPSG:32631")
    assert document["properties"]["proj:epsg"] == 32631
    assert asset["gsd"] == 10.0 and asset["file:checksum"].startswith("1220")
    validate_dict(document)


def test_the_checksum_is_a_sha256_multihash() -> None:
    digest = multihash_sha256(b"abc")
    assert digest == "1220ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_version_history_orders_by_version_whatever_the_arrival_order() -> None:
    history = version_history({"new": (2, 0), "old": (1, 8), "older": (1, 0)})
    assert history["new"] == VersionLinks(False, "old", None, "new")
    assert history["old"] == VersionLinks(True, "older", "new", "new")
    assert history["older"].deprecated and history["older"].predecessor is None
    assert version_history({"only": (1, 0)})["only"].deprecated is False
    assert version_label((4, 0)) == "4.0" and version_label(None) == "0.0"


def test_a_footprint_split_at_the_antimeridian_gets_a_crossing_bbox() -> None:
    split = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[178.5, 65.6], [180.0, 65.6], [180.0, 66.7], [178.5, 66.7], [178.5, 65.6]]],
            [[[-180.0, 65.7], [-179.2, 65.7], [-179.2, 66.7], [-180.0, 66.7], [-180.0, 65.7]]],
        ],
    }
    assert bbox_of(split) == [178.5, 65.6, -179.2, 66.7]
    plain = {"type": "Polygon", "coordinates": [[[3, 50], [4, 50], [4, 51], [3, 50]]]}
    assert bbox_of(plain) == [3, 50, 4, 51]


@pytest.mark.parametrize("collection_id", sorted(COLLECTIONS))
def test_collections_validate_with_license_providers_and_item_assets(collection_id: str) -> None:
    collection = make_collection(collection_id)
    collection.validate()
    assert collection.license == "etalab-2.0" and collection.providers
    if collection_id in ("sentinel2-l2a", "landsat8-l2a", "snow-l2b"):
        assert collection.item_assets and collection.summaries.get_list("platform")
        assert collection.providers[0].name.startswith("CNES")
    if collection_id == "landsat8-l2a":
        assert "FRE_B7" in collection.item_assets and "ATB_XS" in collection.item_assets


def test_snow_nodata_and_preview() -> None:
    assert snow.nodata_for((1, 0), None) == 254 and snow.nodata_for((2, 0), None) == 255
    assert snow.nodata_for((2, 0), 254) == 254  # what the file declares wins
    classes = np.array([[0, 100, 205, 254, 50]], dtype=np.uint8)
    assert snow.valid(classes).tolist() == [[True, True, True, False, True]]
    rgba = snow.preview(classes)
    assert rgba[3].tolist() == [[255, 255, 255, 0, 255]]
    assert 110 < rgba[0, 0, 4] < 235  # half snow: between green and white
