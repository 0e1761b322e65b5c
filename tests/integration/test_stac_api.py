"""The STAC API end to end: DynamoDB index on the moto server, handler behind the HTTP front,
pystac-client (and plain HTTP) as the user."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pystac
import pytest
from pystac.extensions.grid import GridExtension
from pystac_client import Client

from sansnuages import errors
from sansnuages.api.stac import make_resolver, parse_datetime_range
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.local.http_front import HttpFront

S2, L8 = "sentinel2-l2a", "landsat8-l2a"
# Three tiles far enough apart that a bbox around one touches no other.
TILES = {
    "MGRS-31TCJ": (0.5, 43.3, 1.9, 44.3),
    "MGRS-31UDQ": (1.6, 48.6, 3.1, 49.6),
    "MGRS-32TLP": (6.0, 43.2, 7.4, 44.2),
}
S2_DAYS = {1: (5, 20, 28), 2: (5, 20), 3: (5, 20)}
L8_TILES = ("MGRS-31TCJ", "MGRS-32TLP")
L8_DAY = 12


@dataclass(frozen=True)
class Fixture:
    url: str
    catalog: Catalog
    items: list[dict[str, Any]]


def make_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "item_key", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_id",
                "KeySchema": [{"AttributeName": "item_key", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def make_item(collection: str, tile: str, when: datetime) -> dict[str, Any]:
    xmin, ymin, xmax, ymax = TILES[tile]
    geometry = {
        "type": "Polygon",
        "coordinates": [[[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]],
    }
    platform = "SENTINEL2A" if collection == S2 else "LANDSAT8-OLITIRS-XS"
    item_id = f"{platform}_{when:%Y%m%d}-105626-461_L2A_T{tile[-5:]}_C_V4-0"
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[xmin, ymin, xmax, ymax],
        datetime=when,
        properties={},
        collection=collection,
    )
    GridExtension.ext(item, add_if_missing=True).apply(code=tile)
    item.add_asset(
        "B4",
        pystac.Asset(
            href=f"s3://data/l2a/{collection}/{tile}/{item_id}_FRE_B4.tif",
            media_type=pystac.MediaType.COG,
            roles=["data", "reflectance"],
        ),
    )
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = [{"rel": "license", "href": "https://example.org/licence"}]
    return document


def make_collection(collection_id: str) -> dict[str, Any]:
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[datetime(2015, 6, 23, tzinfo=UTC), None]]),
    )
    collection = pystac.Collection(collection_id, f"{collection_id} products", extent)
    return collection.to_dict(include_self_link=False, transform_hrefs=False)


def sample_items() -> list[dict[str, Any]]:
    items = []
    for month, days in S2_DAYS.items():
        for day in days:
            for tile in TILES:
                items.append(make_item(S2, tile, datetime(2024, month, day, 10, 56, tzinfo=UTC)))
        for tile in L8_TILES:
            items.append(make_item(L8, tile, datetime(2024, month, L8_DAY, 10, 30, tzinfo=UTC)))
    return items


def when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"])


def ids(items: Any) -> list[str]:
    return [i["id"] if isinstance(i, dict) else i.id for i in items]


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str = ""
) -> tuple[int, dict[str, str], Any]:
    method = method or ("POST" if body is not None else "GET")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
            return response.status, dict(response.headers), json.loads(payload or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture(scope="module")
def dynamodb(moto_server: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")


@pytest.fixture()
def fresh_catalog(dynamodb: Any, unique_name: str) -> Catalog:
    make_table(dynamodb, unique_name)
    return Catalog(unique_name, client=dynamodb)


@pytest.fixture(scope="module")
def api(dynamodb: Any) -> Iterator[Fixture]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    make_table(dynamodb, name)
    catalog = Catalog(name, client=dynamodb)
    catalog.put_collection(make_collection(S2))
    items = sample_items()
    for item in items:
        catalog.put_item(item)
    # The Landsat collection is declared after its items: indexing must not depend on order.
    catalog.put_collection(make_collection(L8))
    resolver = make_resolver(catalog)
    front = HttpFront(lambda event, context: resolver.resolve(event, context)).start()
    yield Fixture(front.url, catalog, items)
    front.stop()


def test_sample_is_large_enough() -> None:
    items = sample_items()
    assert len(items) >= 25
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        assert GridExtension.has_extension(pystac.Item.from_dict(item))


def test_landing_page_and_collections(api: Fixture) -> None:
    client = Client.open(api.url)
    assert client.id == "sansnuages"
    assert client.conforms_to("ITEM_SEARCH") and client.conforms_to("COLLECTIONS")
    assert sorted(c.id for c in client.get_collections()) == [L8, S2]
    status, headers, body = http(f"{api.url}/", headers={"Origin": "https://viewer.example"})
    assert body["stac_version"] == "1.1.0"
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    search_methods = sorted(lnk["method"] for lnk in body["links"] if lnk["rel"] == "search")
    assert search_methods == ["GET", "POST"]
    assert all(lnk["href"].startswith(api.url) for lnk in body["links"])


def test_cors_preflight(api: Fixture) -> None:
    origin = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = http(f"{api.url}/search", headers=origin, method="OPTIONS")
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_collection_extent_follows_its_items(api: Fixture) -> None:
    collection = Client.open(api.url).get_collection(L8)
    l8 = [i for i in api.items if i["collection"] == L8]
    bbox = collection.extent.spatial.bboxes[0]
    assert bbox == [
        min(i["bbox"][0] for i in l8),
        min(i["bbox"][1] for i in l8),
        max(i["bbox"][2] for i in l8),
        max(i["bbox"][3] for i in l8),
    ]
    start, end = collection.extent.temporal.intervals[0]
    assert (start, end) == (min(map(when, l8)), max(map(when, l8)))


def test_search_bbox(api: Fixture) -> None:
    box = (1.0, 43.5, 1.5, 44.0)  # inside 31TCJ only
    found = Client.open(api.url).search(bbox=box, max_items=None).item_collection()
    expected = [i["id"] for i in api.items if i["properties"]["grid:code"] == "MGRS-31TCJ"]
    assert sorted(ids(found)) == sorted(expected)


@pytest.mark.parametrize(
    ("interval", "low", "high"),
    [
        ("2024-02-01T00:00:00Z/2024-02-29T23:59:59Z", datetime(2024, 2, 1), datetime(2024, 3, 1)),
        ("2024-03-01T00:00:00Z/..", datetime(2024, 3, 1), datetime(2100, 1, 1)),
        ("../2024-01-12T10:30:00Z", datetime(2000, 1, 1), datetime(2024, 1, 12, 10, 30, 1)),
        ("2024-01-20T10:56:00Z", datetime(2024, 1, 20, 10, 56), datetime(2024, 1, 20, 10, 56, 1)),
    ],
)
def test_search_datetime(api: Fixture, interval: str, low: datetime, high: datetime) -> None:
    lo, hi = low.replace(tzinfo=UTC), high.replace(tzinfo=UTC)
    expected = [i["id"] for i in api.items if lo <= when(i) < hi]
    assert expected  # the interval is meant to select something
    found = Client.open(api.url).search(datetime=interval, limit=7).item_collection()
    assert sorted(ids(found)) == sorted(expected)


def test_search_collections_and_ids(api: Fixture) -> None:
    client = Client.open(api.url)
    landsat = client.search(collections=[L8]).item_collection()
    assert sorted(ids(landsat)) == sorted(i["id"] for i in api.items if i["collection"] == L8)
    wanted = [api.items[0]["id"], api.items[-1]["id"], "NO_SUCH_ITEM"]
    by_id = client.search(ids=wanted).item_collection()
    assert sorted(ids(by_id)) == sorted(wanted[:2])
    assert {i.collection_id for i in by_id} == {
        api.items[0]["collection"],
        api.items[-1]["collection"],
    }


def test_search_unknown_collection_is_empty(api: Fixture) -> None:
    status, _, body = http(f"{api.url}/search?collections=nothing-here")
    assert (status, body["features"], body["numberReturned"]) == (200, [], 0)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_visits_every_item_once(api: Fixture, method: str) -> None:
    search = Client.open(api.url).search(method=method, limit=4)
    pages = list(search.pages_as_dicts())
    seen = [f["id"] for page in pages for f in page["features"]]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(i["id"] for i in api.items)
    assert len(pages) == math.ceil(len(api.items) / 4)
    assert all(page["numberReturned"] == len(page["features"]) for page in pages)


def test_post_next_link_carries_the_token(api: Fixture) -> None:
    query = json.dumps({"limit": 2, "collections": [S2]}).encode()
    status, headers, body = http(f"{api.url}/search", query)
    assert status == 200 and headers["Content-Type"] == "application/geo+json"
    (link,) = [lnk for lnk in body["links"] if lnk["rel"] == "next"]
    assert (link["method"], link["merge"], link["href"]) == ("POST", True, f"{api.url}/search")
    following = json.dumps({"limit": 2, "collections": [S2], **link["body"]}).encode()
    _, _, second = http(link["href"], following)
    assert not set(ids(body["features"])) & set(ids(second["features"]))


def test_collection_items_paging_by_get(api: Fixture) -> None:
    url = f"{api.url}/collections/{L8}/items?limit=4&datetime=2024-01-01T00:00:00Z/.."
    status, headers, first = http(url)
    assert status == 200 and headers["Content-Type"] == "application/geo+json"
    (link,) = [lnk for lnk in first["links"] if lnk["rel"] == "next"]
    assert "token=" in link["href"] and "limit=4" in link["href"]
    _, _, second = http(link["href"])
    assert not [lnk for lnk in second["links"] if lnk["rel"] == "next"]
    got = ids(first["features"]) + ids(second["features"])
    assert sorted(got) == sorted(i["id"] for i in api.items if i["collection"] == L8)


def test_get_one_item(api: Fixture) -> None:
    source = api.items[5]
    item = Client.open(api.url).get_collection(source["collection"]).get_item(source["id"])
    assert item is not None
    assert item.properties == source["properties"]
    assert item.bbox == source["bbox"]
    assert (
        item.get_self_href() == f"{api.url}/collections/{source['collection']}/items/{source['id']}"
    )
    assert [lnk.href for lnk in item.links if lnk.rel == "license"] == [
        "https://example.org/licence"
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/collections/nothing-here",
        "/collections/nothing-here/items",
        f"/collections/{S2}/items/NO_SUCH_ITEM",
        "/no/such/route",
    ],
)
def test_not_found(api: Fixture, path: str) -> None:
    status, _, body = http(f"{api.url}{path}")
    assert status == 404
    assert body["code"] == "NotFound" and body["description"]


@pytest.mark.parametrize(
    "query",
    [
        "bbox=1,2,3",
        "bbox=a,b,c,d",
        "bbox=0,50,1,40",
        "datetime=yesterday",
        "datetime=2024-01-01",
        "datetime=../..",
        "datetime=2024-03-01T00:00:00Z/2024-01-01T00:00:00Z",
        "limit=-1",
        "limit=0",
        "limit=ten",
        "token=not-a-token!",
        "token=eyJwayI6Im5vd2hlcmUiLCJzayI6IngifQ",  # a well-formed token for no partition here
        "bbox=0,0,1,1&intersects=%7B%22type%22%3A%22Point%22%2C%22coordinates%22%3A%5B0%2C0%5D%7D",
        "intersects=%7Bnot-json",
        "filter=eo%3Acloud_cover%20%3C",
        "filter=collection%3D%27nothing-here%27",
        "sortby=-eo:cloud_cover",
    ],
)
def test_bad_get_parameters(api: Fixture, query: str) -> None:
    status, _, body = http(f"{api.url}/search?{query}")
    assert status == 400, body
    assert body["code"] == "InvalidParameterValue" and body["description"]


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[1, 2]",
        b'{"bbox": "0,1,2,3,4"}',
        b'{"limit": -5}',
        b'{"collections": "x", "ids": [1]}',
        b'{"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [1, 44]}}',
        b'{"bbox": [0, 50, 1, 40]}',
        b'{"datetime": "2024-13-01T00:00:00Z"}',
        b'{"filter": {"op": "=", "args": [{"property": "collection"}, "nothing-here"]}}',
        b'{"filter": "collection = ", "filter-lang": "cql2-text"}',
        b'{"filter": {"op": "=", "args": [1]}}',
        b'{"sortby": [{"field": "properties.eo:cloud_cover"}]}',
        b'{"intersects": {"type": "Polygon", "coordinates": [1, 2]}}',
        b'{"query": {"eo:cloud_cover": {"lt": [1]}}}',
        b'{"fields": {"include": "id"}}',
    ],
)
def test_bad_post_bodies(api: Fixture, payload: bytes) -> None:
    status, _, body = http(f"{api.url}/search", payload)
    assert status == 400, body
    assert body["code"] == "InvalidParameterValue"


def test_limit_is_clamped(api: Fixture) -> None:
    status, _, body = http(f"{api.url}/search?limit=100000")
    assert status == 200 and body["numberReturned"] == len(api.items)


def test_links_carry_the_stage_prefix(api: Fixture) -> None:
    resolver = make_resolver(api.catalog)
    with HttpFront(lambda event, context: resolver.resolve(event, context), stage="v1") as front:
        assert front.url.endswith("/v1")
        client = Client.open(front.url)
        found = list(client.search(collections=[L8], max_items=2).items())
    assert len(found) == 2
    assert found[0].get_self_href().startswith(f"{front.url}/collections/{L8}/items/")


def test_index_reads_about_what_it_returns(api: Fixture) -> None:
    feb = (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, tzinfo=UTC))
    page = api.catalog.search([S2], None, feb, None, limit=100, token=None)
    expected = [i for i in api.items if i["collection"] == S2 and feb[0] <= when(i) <= feb[1]]
    assert sorted(ids(page.items)) == sorted(ids(expected))
    assert page.records_read <= len(expected) + 2  # + the collection records


def test_tile_filter_reads_only_that_tile(api: Fixture) -> None:
    tile = "MGRS-31UDQ"
    page = api.catalog.search(
        [S2], None, (datetime(2024, 1, 10, tzinfo=UTC), None), None, 100, None, {"grid:code": tile}
    )
    expected = [
        i
        for i in api.items
        if i["collection"] == S2
        and i["properties"]["grid:code"] == tile
        and when(i) >= datetime(2024, 1, 10, tzinfo=UTC)
    ]
    assert sorted(ids(page.items)) == sorted(ids(expected))
    assert page.records_read <= len(expected) + 2


def test_put_item_is_idempotent(fresh_catalog: Catalog) -> None:
    item = make_item(S2, "MGRS-31TCJ", datetime(2024, 5, 3, 10, 56, tzinfo=UTC))
    fresh_catalog.put_item(item)
    fresh_catalog.put_item(item)
    everything = fresh_catalog.search(None, None, None, None, 100, None)
    assert ids(everything.items) == [item["id"]]
    by_tile = fresh_catalog.search(None, None, None, None, 100, None, {"grid:code": "MGRS-31TCJ"})
    assert ids(by_tile.items) == [item["id"]]


def test_reindexing_with_a_new_datetime_moves_the_item(fresh_catalog: Catalog) -> None:
    item = make_item(S2, "MGRS-31TCJ", datetime(2024, 5, 31, 23, 0, tzinfo=UTC))
    fresh_catalog.put_item(item)
    moved = {**item, "properties": {**item["properties"], "datetime": "2024-06-01T01:00:00Z"}}
    fresh_catalog.put_item(moved)
    everything = fresh_catalog.search([S2], None, None, None, 100, None)
    assert [i["properties"]["datetime"] for i in everything.items] == ["2024-06-01T01:00:00Z"]
    may = fresh_catalog.search([S2], None, (datetime(2024, 5, 1, tzinfo=UTC), None), None, 1, None)
    assert len(may.items) == 1 and may.next_token is None


def test_delete_item(fresh_catalog: Catalog) -> None:
    item = make_item(L8, "MGRS-32TLP", datetime(2024, 4, 2, tzinfo=UTC))
    fresh_catalog.put_item(item)
    assert fresh_catalog.get_item(L8, item["id"])["id"] == item["id"]
    fresh_catalog.delete_item(L8, item["id"])
    with pytest.raises(errors.NotFound):
        fresh_catalog.get_item(L8, item["id"])
    assert fresh_catalog.search([L8], None, None, None, 10, None).items == []
    assert fresh_catalog.search(None, None, None, [item["id"]], 10, None).items == []


def test_collection_must_exist_to_be_served(fresh_catalog: Catalog) -> None:
    fresh_catalog.put_item(make_item(L8, "MGRS-32TLP", datetime(2024, 4, 2, tzinfo=UTC)))
    with pytest.raises(errors.NotFound):
        fresh_catalog.get_collection(L8)
    assert fresh_catalog.collections() == []
    assert len(fresh_catalog.search([L8], None, None, None, 10, None).items) == 1


def test_item_without_datetime_is_refused(fresh_catalog: Catalog) -> None:
    item = make_item(L8, "MGRS-32TLP", datetime(2024, 4, 2, tzinfo=UTC))
    item["properties"]["datetime"] = None
    with pytest.raises(errors.InvalidRequest):
        fresh_catalog.put_item(item)


def placed(collection: str, code: str, box: tuple[float, float, float, float], day: int) -> Any:
    """An Item on any tile and extent (the antimeridian included)."""
    item = make_item(collection, "MGRS-31TCJ", datetime(2024, 6, day, 10, tzinfo=UTC))
    item["id"] = f"{item['id']}-{code}-{day}"
    item["bbox"] = list(box)
    item["properties"]["grid:code"] = code
    return item


def test_bbox_reads_the_tile_cells_it_meets(fresh_catalog: Catalog) -> None:
    fiji_east = placed(S2, "MGRS-01KAA", (179.2, -17.5, -179.9, -16.5), 1)
    fiji_west = placed(S2, "MGRS-60KZF", (178.0, -17.5, 179.1, -16.5), 2)
    liege = placed(S2, "MGRS-31UFS", (4.0, 50.4, 5.5, 51.4), 3)
    # A second Item on the Liège tile that reaches further east: the tile's extent grows.
    liege_east = placed(S2, "MGRS-31UFS", (4.2, 50.4, 5.9, 51.4), 4)
    for item in (fiji_east, fiji_west, liege, liege_east):
        fresh_catalog.put_item(item)
    fresh_catalog.put_items([placed(L8, "MGRS-31UFS", (4.1, 50.5, 5.6, 51.3), 5)])

    def search(box: tuple[float, float, float, float]) -> Any:
        return fresh_catalog.search([S2], box, None, None, 100, None)

    across = search((178.5, -17.2, -179.95, -17.0))
    assert sorted(ids(across.items)) == sorted(ids([fiji_east, fiji_west]))
    assert across.records_read <= 2 + 1 + 2  # items, the summary, the two cells
    east = search((5.7, 50.5, 5.8, 50.6))
    assert ids(east.items) == ids([liege_east]) and east.records_read <= 2 + 1 + 1
    ocean = search((-30.0, 30.0, -29.0, 31.0))
    assert ocean.items == [] and ocean.records_read == 1  # the summary lists no cell there
    both = fresh_catalog.search(None, (5.0, 51.0, 5.1, 51.1), None, None, 100, None)
    assert len(both.items) == 3 and both.records_read <= 3 + 2 + 2


def test_month_counts_follow_every_write(fresh_catalog: Catalog) -> None:
    """numberMatched of a collection and whole months, through re-writes, moves and deletes."""
    may = [make_item(S2, tile, datetime(2024, 5, 3, 10, tzinfo=UTC)) for tile in TILES]
    late = make_item(L8, "MGRS-32TLP", datetime(2024, 5, 31, 23, 59, 59, 500000, tzinfo=UTC))
    for item in [*may, late]:
        fresh_catalog.put_item(item)
    fresh_catalog.put_item(may[0])  # the same Item again: not counted twice
    moved = {**may[1], "properties": {**may[1]["properties"], "datetime": "2024-06-02T10:00:00Z"}}
    fresh_catalog.put_item(moved)  # from May to June
    fresh_catalog.delete_item(S2, may[2]["id"])
    fresh_catalog.delete_item(S2, may[2]["id"])  # already gone: not uncounted twice
    june = [make_item(S2, "MGRS-31TCJ", datetime(2024, 6, day, tzinfo=UTC)) for day in (5, 9)]
    fresh_catalog.put_items([*june, june[0]])
    fresh_catalog.put_items([june[1], may[0]])  # already indexed: not counted again

    def matched(collections: list[str] | None, interval: str | None) -> int | None:
        when = parse_datetime_range(interval)
        page = fresh_catalog.search(collections, None, when, None, 1, None)
        everything = fresh_catalog.search(collections, None, when, None, 100, None)
        assert page.matched is None or page.matched == len(everything.items)
        return page.matched

    assert matched([S2], None) == 4
    assert matched([S2], "2024-05-01T00:00:00Z/2024-05-31T23:59:59Z") == 1
    assert matched([S2], "2024-06-01T00:00:00Z/..") == 3
    assert matched(None, None) == 5
    # The Landsat item lies in the last second of May, after 23:59:59 exactly.
    assert matched([L8], "2024-05-01T00:00:00Z/2024-05-31T23:59:59Z") == 0
    assert matched([L8], "2024-05-01T00:00:00Z/2024-05-31T23:59:59.999999Z") == 1
    assert matched([S2], "2024-05-02T00:00:00Z/..") is None
    filtered = fresh_catalog.search([S2], (0.0, 40.0, 9.0, 50.0), None, None, 1, None)
    assert filtered.matched is None
