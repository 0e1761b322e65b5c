"""Pure parts of publishing: STAC platform names, collection extents that only grow (across
the antimeridian too), and version links computed from the set of versions alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sansnuages import errors
from sansnuages.formats.l3a_product import l3a_platform
from sansnuages.stac.collections import make_collection, union_bbox, widened_extent
from sansnuages.stac.common import ItemFacts, build_item, item_document
from sansnuages.stac.l2a import stac_platform
from sansnuages.stac.versions import relinked, version_fields


@pytest.mark.parametrize(
    ("muscate", "stac"),
    [
        ("SENTINEL2A", "sentinel-2a"),
        ("SENTINEL2B", "sentinel-2b"),
        ("SENTINEL2C", "sentinel-2c"),
        ("LANDSAT8-OLITIRS-XS", "landsat-8"),
        ("LANDSAT8", "landsat-8"),
    ],
)
def test_platforms_are_named_as_stac_names_them(muscate: str, stac: str) -> None:
    assert stac_platform(muscate) == stac


def test_an_unknown_platform_is_a_bad_product() -> None:
    with pytest.raises(errors.NotAMuscateProduct):
        stac_platform("SPOT5")


def test_collections_summarise_the_platforms_items_carry() -> None:
    summaries = make_collection("sentinel2-l2a").summaries
    assert summaries.get_list("platform") == ["sentinel-2a", "sentinel-2b", "sentinel-2c"]
    assert make_collection("landsat8-l2a").summaries.get_list("platform") == ["landsat-8"]


def test_syntheses_are_still_named_after_the_satellites() -> None:
    assert l3a_platform(["sentinel-2b"]) == "SENTINEL2B"
    assert l3a_platform(["sentinel-2a", "sentinel-2b"]) == "SENTINEL2X"
    assert l3a_platform(["sentinel-2a", "landsat-8"]) == "SENTINEL2X"


@pytest.mark.parametrize(
    ("a", "b", "union"),
    [
        ([0, 40, 1, 41], [2, 39, 3, 40.5], [0, 39, 3, 41]),
        ([179, 60, -179, 61], [178, 60, 179.5, 60.5], [178, 60, -179, 61]),  # crosses: stays so
        ([170, 0, 175, 1], [-175, 0, -170, 1], [170, 0, -170, 1]),  # nearer over the meridian
        ([-180, 0, 180, 1], [170, -1, -170, 0.5], [-180, -1, 180, 1]),  # the whole way round
    ],
)
def test_bbox_unions_take_the_short_way_round(
    a: list[float], b: list[float], union: list[float]
) -> None:
    assert union_bbox(a, b) == pytest.approx(union)
    assert union_bbox(b, a) == pytest.approx(union)


def test_extents_only_grow() -> None:
    day = datetime(2018, 7, 14, tzinfo=UTC)
    extent = {
        "spatial": {"bbox": [[0.0, 40.0, 1.0, 41.0]]},
        "temporal": {"interval": [["2018-07-01T00:00:00Z", "2018-07-31T00:00:00Z"]]},
    }
    assert widened_extent(extent, [0.2, 40.2, 0.8, 40.8], day, day) == {
        "spatial": {"bbox": [[0.0, 40.0, 1.0, 41.0]]},
        "temporal": {"interval": [["2018-07-01T00:00:00.000000Z", "2018-07-31T00:00:00.000000Z"]]},
    }
    later = datetime(2018, 9, 2, tzinfo=UTC)
    grown = widened_extent(extent, [-1.0, 40.0, 0.5, 40.5], later, later)
    assert grown["spatial"]["bbox"] == [[-1.0, 40.0, 1.0, 41.0]]
    assert grown["temporal"]["interval"][0][1] == "2018-09-02T00:00:00.000000Z"
    open_ended = {**extent, "temporal": {"interval": [["2015-06-23T00:00:00Z", None]]}}
    assert widened_extent(open_ended, None, later, later)["temporal"]["interval"][0][1] is None


def _document(product_id: str) -> dict[str, object]:
    folder = f"l2a/sentinel2-l2a/31UFS/2018/07/{product_id}"
    item = build_item(
        ItemFacts(
            id=product_id,
            collection="sentinel2-l2a",
            geometry={"type": "Point", "coordinates": [3.0, 50.0]},
            bbox=[3.0, 50.0, 3.0, 50.0],
            datetime=datetime(2018, 7, 14, tzinfo=UTC),
        ),
        [],
    )
    return item_document(item, f"{folder}/{product_id}.json", "collections/c.json")


def test_version_links_depend_only_on_the_set_of_versions() -> None:
    ids = [f"SENTINEL2B_20180714-105626-461_L2A_T31UFS_{v}" for v in ("D_V1-8", "C_V2-0", "C_V3-0")]
    keys = [f"l2a/sentinel2-l2a/31UFS/2018/07/{i}/{i}.json" for i in ids]
    documents = {key: _document(i) for key, i in zip(keys, ids, strict=True)}
    first = relinked(documents)
    assert set(first) == set(keys)  # nothing linked yet: every one changes
    settled = {**documents, **first}
    assert relinked(settled) == {}  # a second pass changes nothing
    reordered = dict(reversed(list(documents.items())))
    assert {k: version_fields(d) for k, d in relinked(reordered).items()} == {
        k: version_fields(d) for k, d in first.items()
    }
    props = [first[k]["properties"] for k in keys]
    assert [p["deprecated"] for p in props] == [True, True, False]
    assert [p["version"] for p in props] == ["1.8", "2.0", "3.0"]
    rels = {link["rel"]: link["href"] for link in first[keys[1]]["links"]}
    assert rels["predecessor-version"] == f"../{ids[0]}/{ids[0]}.json"
    assert rels["successor-version"] == rels["latest-version"] == f"../{ids[2]}/{ids[2]}.json"
