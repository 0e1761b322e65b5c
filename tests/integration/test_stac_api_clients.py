"""The STAC API as real clients see it: stac-api-validator, pystac-client with every parameter,
schema validation of every Item returned, and a fuzz of the OpenAPI document.

Everything runs against the local HTTP front over the real handler and a DynamoDB index on the
moto server; schemas come from the offline mirror and pystac's package data (no internet).
"""

from __future__ import annotations

import gzip
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pystac
import pytest
import requests
from pystac_client import Client
from test_stac_api import (
    L8,
    L8_TILES,
    S2,
    TILES,
    Fixture,
    http,
    make_collection,
    make_item,
    make_table,
    sample_items,
    when,
)

from sansnuages.api.assets import AssetLinker, s3_presigner
from sansnuages.api.stac import ApiConfig, make_resolver
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.local.http_front import HttpFront, LocalContext, build_event

ROOT = Path(__file__).resolve().parents[2]
PYSTAC_SCHEMAS = Path(pystac.__file__).parent / "validation" / "jsonschemas"
OFFLINE = {
    "https://stac-extensions.github.io/": ROOT.parent / "shared" / "stac-schemas",
    "https://schemas.stacspec.org/": PYSTAC_SCHEMAS / "stac-spec",
    "https://geojson.org/schema/": PYSTAC_SCHEMAS / "geojson",
}
TOULOUSE = {
    "type": "Polygon",
    "coordinates": [[[1.2, 43.5], [1.6, 43.5], [1.6, 43.7], [1.2, 43.7], [1.2, 43.5]]],
}


def offline_file(url: str) -> Path | None:
    for prefix, folder in OFFLINE.items():
        if url.startswith(prefix):
            path = url.removeprefix(prefix).split("#")[0]
            if "schemas.stacspec.org" in prefix:  # v1.1.0/item-spec/json-schema/item.json
                path = f"{path.split('/')[0]}/{path.rsplit('/', 1)[-1]}"
            return folder / path
    return None


@pytest.fixture()
def offline_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve the schema sites from local copies to everything that uses `requests`."""
    send = requests.Session.send

    def offline_send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        path = offline_file(str(request.url))
        if path is None:
            return send(self, request, **kwargs)
        response = requests.Response()
        response.url, response.request = str(request.url), request
        response.status_code = 200 if path.is_file() else 404
        response._content = path.read_bytes() if path.is_file() else b"{}"
        response.headers["content-type"] = "application/json"
        return response

    monkeypatch.setattr(requests.Session, "send", offline_send)


@pytest.fixture(scope="module")
def served(moto_server: Any) -> Iterator[Fixture]:
    """Sample items with cloud cover, served with presigned HTTPS alternates of their assets."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    name = f"t-{uuid.uuid4().hex[:12]}"
    make_table(dynamodb, name)
    catalog = Catalog(name, client=dynamodb)
    items = []
    for index, item in enumerate(sample_items()):
        item["properties"]["eo:cloud_cover"] = float(index * 7 % 100)
        item["links"] = []
        items.append(item)
        catalog.put_item(item)
    for collection_id in (S2, L8):
        catalog.put_collection(make_collection(collection_id))
    resolver = make_resolver(
        catalog, config=ApiConfig(), assets=AssetLinker(None, s3_presigner(s3))
    )
    front = HttpFront(lambda event, context: resolver.resolve(event, context)).start()
    yield Fixture(front.url, catalog, items)
    front.stop()


def ids(items: Any) -> list[str]:
    return [i["id"] if isinstance(i, dict) else i.id for i in items]


# --- stac-api-validator --------------------------------------------------------------------


def test_stac_api_validator(served: Fixture, offline_requests: None) -> None:
    from stac_api_validator.validations import QueryConfig, validate_api

    warnings, errors = validate_api(
        root_url=f"{served.url}/",
        ccs_to_validate=["core", "collections", "features", "item-search", "filter"],
        collection=S2,
        geometry=json.dumps(TOULOUSE),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(*[None] * 13),
        transaction_collection=None,
        headers=None,
        open_assets_urls=False,
    )
    assert list(errors) == [], list(errors)


# --- pystac-client --------------------------------------------------------------------------


def test_pystac_client_every_parameter(served: Fixture) -> None:
    client = Client.open(served.url)
    assert {c.id for c in client.get_collections()} == {S2, L8}
    items = served.items
    feb = [i for i in items if i["collection"] == S2 and when(i).month == 2]
    cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        ({"collections": [L8]}, [i for i in items if i["collection"] == L8]),
        ({"collections": [S2], "datetime": "2024-02"}, feb),
        ({"ids": [items[3]["id"], items[7]["id"]]}, [items[3], items[7]]),
        ({"bbox": [1.0, 43.5, 1.5, 44.0]}, _on_tile(items, "MGRS-31TCJ")),
        ({"intersects": TOULOUSE}, _on_tile(items, "MGRS-31TCJ")),
        ({"filter": "eo:cloud_cover < 30", "filter_lang": "cql2-text"}, _clear(items, 30)),
        (
            {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]}},
            _clear(items, 30),
        ),
        ({"query": {"eo:cloud_cover": {"lt": 30}}}, _clear(items, 30)),
        ({"query": ["eo:cloud_cover<30"]}, _clear(items, 30)),
    ]
    for method in ("GET", "POST"):
        for params, expected in cases:
            search = client.search(method=method, limit=4, **params)
            found = list(search.items_as_dicts())
            assert sorted(ids(found)) == sorted(ids(expected)), (method, params)


def test_pystac_client_sortby_and_fields(served: Fixture) -> None:
    client = Client.open(served.url)
    for method in ("GET", "POST"):
        newest = list(client.search(method=method, sortby="-properties.datetime", limit=5).items())
        times = [item.datetime for item in newest]
        assert times == sorted(times, reverse=True) and len(times) == len(served.items)
        oldest = client.search(method=method, sortby=["+datetime", "+id"], max_items=3)
        times = [item.datetime for item in oldest.items()]
        assert times == sorted(times) and times[0] == min(map(when, served.items))
        slim = client.search(
            method=method, fields=["id", "properties.eo:cloud_cover", "-assets"], max_items=2
        )
        for item in slim.items_as_dicts():
            assert set(item) <= {"type", "stac_version", "id", "links", "properties"}
            assert set(item["properties"]) == {"eo:cloud_cover"}


def test_matched_where_the_index_counts(served: Fixture) -> None:
    """Collections and whole months are counted by the index; other searches say nothing."""
    client = Client.open(served.url)
    feb = [i for i in served.items if i["collection"] == S2 and when(i).month == 2]
    for method in ("GET", "POST"):
        search = client.search(method=method, collections=[S2], datetime="2024-02", limit=2)
        assert search.matched() == len(feb) and len(feb) > 2
        everything = client.search(method=method, limit=3)
        assert everything.matched() == len(served.items)
        near = client.search(method=method, bbox=[1.0, 43.5, 1.5, 44.0], limit=3)
        with pytest.warns(UserWarning, match="numberMatched"):
            assert near.matched() is None


IN_TCJ = [[1.0, 43.6], [1.5, 44.0]]
GEOMETRIES = [
    {"type": "Point", "coordinates": [1.2, 43.8]},
    {"type": "MultiPoint", "coordinates": [[1.2, 43.8], [1.3, 43.9]]},
    {"type": "LineString", "coordinates": IN_TCJ},
    {"type": "MultiLineString", "coordinates": [IN_TCJ, [[1.1, 43.5], [1.2, 43.6]]]},
    TOULOUSE,
    {"type": "MultiPolygon", "coordinates": [TOULOUSE["coordinates"]]},
    # A bbox member is not trusted: this one lies, the index must read by the coordinates.
    {"type": "Point", "coordinates": [1.2, 43.8], "bbox": [100.0, 0.0, 101.0, 1.0]},
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: g["type"])
def test_intersects_every_geometry_type(served: Fixture, geometry: dict[str, Any]) -> None:
    client = Client.open(served.url)
    expected = sorted(ids(_on_tile(served.items, "MGRS-31TCJ")))
    for method in ("GET", "POST"):
        found = client.search(method=method, intersects=geometry, limit=5).items_as_dicts()
        assert sorted(ids(found)) == expected, method


def test_intersects_a_geometry_collection(served: Fixture) -> None:
    collection = {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Point", "coordinates": [1.2, 43.8]},
            {"type": "LineString", "coordinates": [[6.5, 43.5], [6.6, 43.6]]},
        ],
    }
    tiles = ("MGRS-31TCJ", "MGRS-32TLP")
    expected = sorted(i["id"] for i in served.items if i["properties"]["grid:code"] in tiles)
    for method in ("GET", "POST"):
        found = Client.open(served.url).search(method=method, intersects=collection, limit=50)
        assert sorted(ids(found.items_as_dicts())) == expected


def _on_tile(items: list[dict[str, Any]], tile: str) -> list[dict[str, Any]]:
    return [i for i in items if i["properties"]["grid:code"] == tile]


def _clear(items: list[dict[str, Any]], below: float) -> list[dict[str, Any]]:
    return [i for i in items if i["properties"]["eo:cloud_cover"] < below]


# --- filters, pushdown and paging ---------------------------------------------------------------


def test_filter_pushdown_reads_only_what_it_needs(served: Fixture) -> None:
    body = {
        "filter-lang": "cql2-json",
        "filter": {
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "collection"}, L8]},
                {"op": "=", "args": [{"property": "grid:code"}, L8_TILES[0]]},
            ],
        },
        "limit": 100,
    }
    status, _, page = http(f"{served.url}/search", json.dumps(body).encode())
    expected = [i for i in served.items if i["collection"] == L8]
    expected = _on_tile(expected, L8_TILES[0])
    assert status == 200 and sorted(ids(page["features"])) == sorted(ids(expected))
    direct = served.catalog.search([L8], None, None, None, 100, None, {"grid:code": L8_TILES[0]})
    assert direct.records_read <= len(expected) + 2


def test_paging_neither_skips_nor_repeats_while_items_arrive(
    dynamodb_client: Any, unique_name: str
) -> None:
    make_table(dynamodb_client, unique_name)
    catalog = Catalog(unique_name, client=dynamodb_client)
    catalog.put_collection(make_collection(S2))
    days = [3, 6, 9, 12, 15, 18]
    for day in days:
        catalog.put_item(make_item(S2, "MGRS-31TCJ", datetime(2024, 4, day, tzinfo=UTC)))
    for descending in (False, True):
        first = catalog.search([S2], None, None, None, 3, None, descending=descending)
        # Newcomers before and after the page boundary, then the rest of the pages.
        for day in (1, 4, 20):
            catalog.put_item(make_item(S2, "MGRS-32TLP", datetime(2024, 4, day, tzinfo=UTC)))
        rest, token = [], first.next_token
        while token:
            page = catalog.search([S2], None, None, None, 3, token, descending=descending)
            rest.extend(page.items)
            token = page.next_token
        seen = ids(first.items) + ids(rest)
        assert len(seen) == len(set(seen))
        order = [when(i) for i in first.items + rest]
        assert order == sorted(order, reverse=descending)
        boundary = when(first.items[-1])
        assert {i["id"] for i in rest} >= {
            i["id"]
            for i in catalog.search([S2], None, None, None, 100, None).items
            if (when(i) < boundary if descending else when(i) > boundary)
        }


def test_pystac_client_pages_while_items_arrive_behind_a_stage(
    dynamodb_client: Any, unique_name: str
) -> None:
    """Paging through pystac-client (GET next links, POST next bodies) behind a stage prefix:
    Items written between pages are neither skipped (after the boundary) nor repeated."""
    make_table(dynamodb_client, unique_name)
    catalog = Catalog(unique_name, client=dynamodb_client)
    catalog.put_collection(make_collection(S2))
    for day in (3, 6, 9, 12, 15, 18, 21):
        catalog.put_item(make_item(S2, "MGRS-31TCJ", datetime(2024, 4, day, 10, tzinfo=UTC)))
    resolver = make_resolver(catalog, config=ApiConfig())
    with HttpFront(lambda event, context: resolver.resolve(event, context), stage="v1") as front:
        for method, newcomers in (("GET", (1, 4, 25)), ("POST", (2, 5, 26))):
            search = Client.open(front.url).search(method=method, collections=[S2], limit=3)
            pages = search.pages_as_dicts()
            first = next(pages)
            boundary = when(first["features"][-1])
            for day in newcomers:
                new = make_item(S2, "MGRS-32TLP", datetime(2024, 4, day, 10, tzinfo=UTC))
                catalog.put_item(new)
            later = list(pages)
            seen = [f["id"] for page in [first, *later] for f in page["features"]]
            assert len(seen) == len(set(seen)), method
            order = [when(f) for page in [first, *later] for f in page["features"]]
            assert order == sorted(order)
            after = {
                i["id"]
                for i in catalog.search([S2], None, None, None, 100, None).items
                if when(i) > boundary
            }
            assert after <= set(seen) and len(later) >= 2
            for page in [first, *later[:-1]]:
                (following,) = [lnk for lnk in page["links"] if lnk["rel"] == "next"]
                assert following["href"].startswith(f"{front.url}/search"), following


def test_pages_fit_in_a_lambda_response(dynamodb_client: Any, unique_name: str) -> None:
    """Items too many for 6 MB at the largest limit: each page is cut below Lambda's response
    limit, counted on the whole response as Lambda serialises it, and paging goes on."""
    make_table(dynamodb_client, unique_name)
    catalog = Catalog(unique_name, client=dynamodb_client)
    catalog.put_collection(make_collection(S2))
    inputs = [f"SENTINEL2A_2024{n:04d}-105626-461_L2A_T31TCJ_C_V4-0" for n in range(3000)]
    big = []
    for day in range(1, 46):
        item = make_item(S2, "MGRS-31TCJ", datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=day))
        item["properties"]["sansnuages:inputs"] = inputs
        big.append(item)
    catalog.put_items(big)
    resolver = make_resolver(catalog, config=ApiConfig())
    seen: list[str] = []
    target: str | None = "/search?limit=1000"
    while target:
        event = build_event("GET", target, [("Host", "api.example")], b"", "127.0.0.1")
        response = resolver.resolve(event, LocalContext())
        assert len(json.dumps(response)) < 6 * 1024 * 1024
        page = json.loads(response["body"])
        assert 0 < page["numberReturned"] < len(big)
        seen += ids(page["features"])
        following = [lnk["href"] for lnk in page["links"] if lnk["rel"] == "next"]
        target = following[0].removeprefix("https://api.example") if following else None
    assert sorted(seen) == sorted(ids(big))


@pytest.fixture(scope="module")
def dynamodb_client(moto_server: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")


# --- responses: items valid, alternates, gzip, size limit, base URL ------------------------------


def test_every_returned_item_validates(served: Fixture) -> None:
    _, _, page = http(f"{served.url}/search?limit=1000")
    assert page["numberReturned"] == len(served.items)
    for feature in page["features"]:
        pystac.Item.from_dict(feature).validate()
        for asset in feature["assets"].values():
            assert asset["href"].startswith("s3://")
            https = asset["alternate"]["https"]["href"]
            assert https.startswith("http://127.0.0.1") and "Signature=" in https


def test_gzip_when_accepted(served: Fixture) -> None:
    request = urllib.request.Request(
        f"{served.url}/search?limit=50", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        body = json.loads(gzip.decompress(response.read()))
    assert body["numberReturned"] == len(served.items)


def test_large_pages_are_cut_not_failed(served: Fixture) -> None:
    resolver = make_resolver(served.catalog, config=ApiConfig(max_body_bytes=6_000))
    with HttpFront(lambda event, context: resolver.resolve(event, context)) as front:
        seen: list[str] = []
        url: str | None = f"{front.url}/search?limit=1000"
        while url:
            status, _, page = http(url)
            assert status == 200 and 0 < page["numberReturned"] < len(served.items)
            seen += ids(page["features"])
            url = next((lnk["href"] for lnk in page["links"] if lnk["rel"] == "next"), None)
    assert sorted(seen) == sorted(ids(served.items))


def test_configured_public_url_is_used_in_links_and_next(served: Fixture) -> None:
    public = "https://stac.example.org/catalog"
    resolver = make_resolver(served.catalog, config=ApiConfig(public_url=public))
    with HttpFront(lambda event, context: resolver.resolve(event, context)) as front:
        _, _, landing = http(f"{front.url}/")
        _, _, page = http(f"{front.url}/search?limit=2")
    assert all(lnk["href"].startswith(public) for lnk in landing["links"])
    (following,) = [lnk for lnk in page["links"] if lnk["rel"] == "next"]
    assert following["href"].startswith(f"{public}/search?") and "token=" in following["href"]


def test_service_desc_and_doc(served: Fixture) -> None:
    with urllib.request.urlopen(f"{served.url}/api", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/vnd.oai.openapi+json")
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.0")
    assert {"/search", "/collections/{collectionId}/items", "/queryables"} <= set(document["paths"])
    with urllib.request.urlopen(f"{served.url}/api.html", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b"<table>" in response.read()


# --- fuzzing the OpenAPI document ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_fuzz_finds_no_server_error(served: Fixture, mode: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{served.url}/api")
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    failures: list[str] = []

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=served.url)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body}")

    check()
    assert failures == []


@pytest.mark.parametrize("tile", sorted(TILES))
def test_tiles_are_known_for_bbox_planning(served: Fixture, tile: str) -> None:
    box = TILES[tile]
    page = served.catalog.search(
        [S2], (box[0] + 0.1, box[1] + 0.1, box[0] + 0.2, box[1] + 0.2), None, None, 100, None
    )
    expected = _on_tile([i for i in served.items if i["collection"] == S2], tile)
    assert sorted(ids(page.items)) == sorted(ids(expected))
    assert page.records_read <= len(expected) + 2
