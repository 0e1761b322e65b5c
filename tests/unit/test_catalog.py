"""Pure parts of the catalog index, the STAC API parameters and the local HTTP front."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from sansnuages import errors
from sansnuages.api.stac import (
    MAX_LIMIT,
    Fields,
    base_url,
    fitting_features,
    parse_bbox,
    parse_datetime_range,
    parse_limit,
    parse_search,
    select_fields,
)
from sansnuages.stac.extents import Bbox, bbox_intersects, iso, item_interval
from sansnuages.stores.catalog.planning import (
    Query,
    count_plan,
    decode_token,
    encode_token,
    months_in_range,
    sort_key_bounds,
    tiles_touching,
)
from sansnuages.stores.catalog.records import (
    IndexDelta,
    Summary,
    cell_attributes,
    cells_of,
    item_sort_key,
    summary_attributes,
)
from sansnuages.tools.local.http_front import build_event, query_parameters, response_parts

# --- paging tokens ------------------------------------------------------------------------


def test_token_round_trip() -> None:
    position = {"pk": "item#sentinel2-l2a#2024-02", "sk": "2024-02-05T10:56:00.000000Z#A/B+C"}
    token = encode_token(position)
    assert decode_token(token) == position
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "%%%",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"pk": 3}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_malformed_tokens_are_invalid_requests(token: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        decode_token(token)


# --- time keys ----------------------------------------------------------------------------


def test_iso_is_utc_and_fixed_width() -> None:
    paris = timezone(timedelta(hours=2))
    assert iso(datetime(2024, 7, 1, 1, 30, tzinfo=paris)) == "2024-06-30T23:30:00.000000Z"
    assert iso(datetime(2024, 7, 1)) == "2024-07-01T00:00:00.000000Z"


def test_sort_keys_order_chronologically() -> None:
    early = item_sort_key(datetime(2024, 1, 9, 23, tzinfo=UTC), "ZZZ")
    late = item_sort_key(datetime(2024, 1, 10, 0, 0, 0, 1, tzinfo=UTC), "AAA")
    assert early < late


def test_sort_key_bounds_include_both_ends() -> None:
    start = datetime(2024, 2, 1, tzinfo=UTC)
    end = datetime(2024, 2, 29, 12, tzinfo=UTC)
    low, high = sort_key_bounds((start, end))
    assert low is not None and high is not None
    assert low <= item_sort_key(start, "A") <= high
    assert low <= item_sort_key(end, "zzz_last") <= high
    assert item_sort_key(end + timedelta(microseconds=1), "A") > high
    assert item_sort_key(start - timedelta(microseconds=1), "z") < low


def test_open_bounds() -> None:
    assert sort_key_bounds(None) == (None, None)
    low, high = sort_key_bounds((None, datetime(2024, 1, 1, tzinfo=UTC)))
    assert low is None and high is not None


def test_months_in_range() -> None:
    months = frozenset({"2023-12", "2024-01", "2024-02", "2024-03"})
    low, high = sort_key_bounds(
        (datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
    )
    assert months_in_range(months, low, high) == ["2024-01", "2024-02"]
    assert months_in_range(months, None, None) == sorted(months)


def test_item_interval_prefers_datetime_then_start() -> None:
    composite = {
        "id": "x",
        "properties": {
            "datetime": None,
            "start_datetime": "2024-01-23T00:00:00Z",
            "end_datetime": "2024-03-09T00:00:00Z",
        },
    }
    start, end = item_interval(composite)
    assert (start.month, end.month) == (1, 3)
    with pytest.raises(errors.InvalidRequest):
        item_interval({"id": "x", "properties": {"datetime": None}})
    with pytest.raises(errors.InvalidRequest):
        item_interval({"id": "x", "properties": {"datetime": "last tuesday"}})


# --- bbox ---------------------------------------------------------------------------------


def test_bbox_intersection() -> None:
    tile = (0.5, 43.3, 1.9, 44.3)
    assert bbox_intersects(tile, (1.0, 44.0, 3.0, 45.0))
    assert bbox_intersects(tile, (1.9, 44.3, 2.0, 44.4))  # touching corners
    assert not bbox_intersects(tile, (2.0, 43.0, 3.0, 45.0))
    assert not bbox_intersects(tile, (0.0, 44.4, 3.0, 45.0))


def test_bbox_across_the_antimeridian() -> None:
    fiji = (177.0, -19.0, -179.0, -16.0)
    assert bbox_intersects((179.5, -18.0, 179.9, -17.0), fiji)
    assert bbox_intersects((-179.5, -18.0, -179.2, -17.0), fiji)
    assert not bbox_intersects((0.0, -18.0, 1.0, -17.0), fiji)


def test_summary_grows_and_never_shrinks() -> None:
    first = Summary().merged("2024-02", (1, 2, 3, 4), "2024-02-01", "2024-02-01")
    second = first.merged("2024-01", (0, 3, 2, 5), "2024-01-15", "2024-01-15")
    assert second.months == {"2024-01", "2024-02"}
    assert second.bbox == (0, 2, 3, 5)
    assert (second.start, second.end) == ("2024-01-15", "2024-02-01")
    assert second.merged("2024-02", (1, 3, 2, 4), "2024-01-20", "2024-01-20") == second


def test_cells_of_a_bbox() -> None:
    assert cells_of((4.3, 50.8, 4.4, 50.9)) == ["+50+000"]
    assert cells_of((9.5, 49.5, 10.5, 50.5)) == ["+40+000", "+40+010", "+50+000", "+50+010"]
    assert cells_of((179.5, -17.0, -179.5, -16.0)) == ["-20-180", "-20+170"]
    assert cells_of((-180.0, -90.0, 180.0, 90.0))[0] == "-90-180"
    assert len(cells_of((-180.0, -90.0, 180.0, 90.0))) == 18 * 36
    assert cells_of((10.0, 84.0, 11.0, 90.0)) == ["+80+010"]


def test_tiles_touching_gives_up_on_large_boxes() -> None:
    extents = {f"T{i:02d}": (float(i), 0.0, i + 1.1, 1.0) for i in range(20)}
    assert tiles_touching(extents, (2.05, 0.2, 3.5, 0.4)) == ["T01", "T02", "T03"]
    assert tiles_touching(extents, (0.0, 0.0, 19.0, 1.0)) is None


DYNAMODB_ITEM_LIMIT = 400 * 1024
S2_L2A = "sentinel2-l2a"


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for an attribute value (its documented sizing rules)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        digits = str(data).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in data)
    if kind == "M":
        return 3 + sum(len(k) + attribute_size(v) + 1 for k, v in data.items())
    raise AssertionError(kind)


def item_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name) + attribute_size(value) for name, value in attributes.items())


def world_tiles() -> Iterator[tuple[str, Bbox]]:
    """Tiles of 110 km every 100 km over every UTM zone from 56 S to 84 N, overlapping at the
    zone edges: as many as the Sentinel-2 tiles with land (57,000), with extents like theirs."""
    for zone in range(60):
        for row in range(156):
            south = -56.0 + 0.9 * row
            width = 0.99 / max(math.cos(math.radians(south + 0.5)), 0.1)
            columns = math.ceil(6.0 / width) + 1
            for column in range(columns):
                west = -180.0 + 6 * zone - width / 2 + column * 6.0 / (columns - 1)
                east = west + width
                west, east = (west + 540) % 360 - 180, (east + 540) % 360 - 180
                yield f"MGRS-{zone + 1:02d}{row:03d}{column:02d}", (west, south, east, south + 1)


def test_index_records_stay_under_the_item_limit_at_world_scale() -> None:
    """Every tile of the world and 20 years of months in a collection: no record the index
    writes for the collection's summary and tile extents nears DynamoDB's 400 KB item limit
    (records are per collection, so the number of collections does not matter)."""
    delta = IndexDelta()
    tiles = list(world_tiles())
    assert len(tiles) > 55_000
    for code, box in tiles:
        delta.add(S2_L2A, "2024-01", box, "2024-01-01", "2024-01-31", code)
    for year in range(2015, 2035):
        for month in range(1, 13):
            delta.add(S2_L2A, f"{year}-{month:02d}", None, "2015", "2035", None)
    key = {"pk": {"S": "collection"}, "sk": {"S": S2_L2A}}
    summary = delta.summaries[S2_L2A]
    counts = {f"count#{month}": {"N": "123456"} for month in summary.months}
    largest_summary = item_size({**key, **summary_attributes(summary), **counts})
    busiest = sorted(delta.cells.values(), key=len)[-3:]
    largest_cell = max(item_size({**key, "tiles": cell_attributes(e)}) for e in busiest)
    assert largest_summary < 10_000
    assert largest_cell < DYNAMODB_ITEM_LIMIT / 10, largest_cell
    assert 100 < len(busiest[-1]) < 400


def test_item_size_follows_dynamodb_rules() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 5
    assert item_size({"n": {"N": "123.45"}}) == 1 + 3 + 1
    assert item_size({"m": {"M": {"a": {"L": [{"N": "1"}, {"BOOL": True}]}}}}) == 1 + 3 + (
        1 + (3 + (2 + 1) + (1 + 1)) + 1
    )


def test_count_plan_whole_months() -> None:
    months = frozenset({"2024-01", "2024-02", "2024-03"})
    july = parse_datetime_range("2024-02-01T00:00:00Z/2024-02-29T23:59:59Z")  # pystac-client
    plan = count_plan(Query(datetime_range=july), months)
    assert plan is not None and plan.months == ("2024-02",)
    assert plan.sliver == ("2024-02", "2024-02-29T23:59:59.000000Z$")
    exact = parse_datetime_range("2024-01-01T00:00:00Z/2024-02-29T23:59:59.999999Z")
    assert count_plan(Query(datetime_range=exact), months) == count_plan_of(("2024-01", "2024-02"))
    assert count_plan(Query(), months) == count_plan_of(("2024-01", "2024-02", "2024-03"))
    since = parse_datetime_range("2024-02-01T00:00:00Z/..")
    assert count_plan(Query(datetime_range=since), months) == count_plan_of(("2024-02", "2024-03"))


@pytest.mark.parametrize(
    "query",
    [
        Query(datetime_range=parse_datetime_range("2024-02-02T00:00:00Z/..")),
        Query(datetime_range=parse_datetime_range("../2024-02-28T23:59:59Z")),
        Query(datetime_range=parse_datetime_range("2024-02-01T00:00:00Z")),
        Query(bbox=(0.0, 0.0, 1.0, 1.0)),
        Query(filters={"grid:code": "MGRS-31TCJ"}),
        Query(match=lambda item: True),
    ],
)
def test_count_plan_refuses_what_counts_cannot_answer(query: Query) -> None:
    assert count_plan(query, frozenset({"2024-02"})) is None


def count_plan_of(months: tuple[str, ...]) -> object:
    from sansnuages.stores.catalog.planning import CountPlan

    return CountPlan(months)


# --- API parameters -----------------------------------------------------------------------


def test_parse_bbox() -> None:
    assert parse_bbox("0.5,43,1.9,44.3") == (0.5, 43.0, 1.9, 44.3)
    assert parse_bbox([0, 43, -10, 1.9, 44.3, 2000]) == (0.0, 43.0, 1.9, 44.3)
    assert parse_bbox("170,-20,-170,-10") == (170.0, -20.0, -170.0, -10.0)
    assert parse_bbox(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "1,2,3",
        "1,2,3,4,5",
        "a,b,c,d",
        "0,50,1,40",
        "0,-91,1,0",
        "0,0,200,1",
        "0,0,nan,1",
        [1, 2, "x", 4],
        [1, None, 3, 4],
    ],
)
def test_parse_bbox_errors(value: object) -> None:
    with pytest.raises(errors.InvalidRequest):
        parse_bbox(value)  # type: ignore[arg-type]


def test_parse_datetime_range() -> None:
    jan = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_datetime_range("2024-01-01T00:00:00Z") == (jan, jan)
    assert parse_datetime_range("2024-01-01T01:00:00+01:00/..") == (jan, None)
    assert parse_datetime_range("/2024-01-01T00:00:00.000Z") == (None, jan)
    assert parse_datetime_range("2024-01-01t00:00:00z/2024-01-02T00:00:00Z") == (
        jan,
        datetime(2024, 1, 2, tzinfo=UTC),
    )
    assert parse_datetime_range(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01",  # a date is not an RFC 3339 date-time
        "2024-01-01T00:00:00",  # no offset
        "2024-13-01T00:00:00Z",
        "../..",
        "/",
        "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z/2024-01-03T00:00:00Z",
        "2024-02-01T00:00:00Z/2024-01-01T00:00:00Z",
        "yesterday",
    ],
)
def test_parse_datetime_range_errors(value: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        parse_datetime_range(value)


def test_parse_limit() -> None:
    assert parse_limit(None) == 10
    assert parse_limit("25") == 25
    assert parse_limit(10**9) == MAX_LIMIT
    for bad in ("-1", 0, "ten", 2.5, True, "1.5"):
        with pytest.raises(errors.InvalidRequest):
            parse_limit(bad)


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "0,0,1,1", "intersects": {"type": "Point", "coordinates": [0, 0]}},
        {"token": 12},
        {"sortby": "eo:cloud_cover"},
        {"sortby": "-datetime,+id"},
        {"sortby": [{"field": "datetime", "direction": "up"}]},
        {"fields": ["id"]},
        {"filter": "eo:cloud_cover <"},
        {"filter": {"op": "nonsense", "args": [1]}, "filter-lang": "cql2-json"},
        {"filter": "id = 'a'", "filter-lang": "cql3"},
        {"filter": "id = 'a'", "filter-crs": "EPSG:2154"},
        {"query": {"eo:cloud_cover": {"below": 3}}},
        {"query": "not json"},
        {"intersects": {"type": "Circle", "coordinates": [0, 0]}},
        {"intersects": {"type": "Polygon", "coordinates": [[[0, 0], [1, "x"]]]}},
        {"intersects": {"type": "Point", "coordinates": [200, 0]}},
        {"bbox": "0,0,5,1,1,0"},
    ],
)
def test_parse_search_refuses_bad_input(params: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidRequest):
        parse_search(params)


def test_parse_search_reads_the_extensions() -> None:
    params = parse_search(
        {
            "sortby": [{"field": "properties.datetime", "direction": "desc"}],
            "fields": {"include": ["properties.eo:cloud_cover"], "exclude": ["assets"]},
            "filter": "eo:cloud_cover < 10 AND collection = 'a'",
            "query": {"platform": {"eq": "SENTINEL2A"}},
        }
    )
    assert params.descending
    assert params.fields == Fields(("properties.eo:cloud_cover",), ("assets",))
    assert params.predicate.collections == frozenset({"a"})
    item = {"collection": "a", "properties": {"eo:cloud_cover": 5, "platform": "SENTINEL2A"}}
    assert params.predicate.matches(item)
    assert not params.predicate.matches({**item, "collection": "b"})
    assert not params.predicate.matches({"collection": "a", "properties": {}})
    assert not parse_search({"sortby": " datetime"}).descending  # '+datetime', URL-decoded


def test_select_fields() -> None:
    item = {"type": "Feature", "id": "x", "links": [], "assets": {"a": 1}, "properties": {"d": 1}}
    assert select_fields(item, Fields(("properties.d",), ())) == {
        "type": "Feature",
        "id": "x",
        "links": [],
        "properties": {"d": 1},
    }
    assert select_fields(item, Fields((), ("assets", "id"))) == {
        "type": "Feature",
        "id": "x",
        "links": [],
        "properties": {"d": 1},
    }
    assert select_fields(item, None) is item


def test_fitting_features_keeps_at_least_one() -> None:
    assert fitting_features(["a" * 10, "b" * 10, "c" * 10], 25) == 2
    assert fitting_features(['"' * 10, "b" * 10], 25) == 1  # quotes count twice once escaped
    assert fitting_features(["a" * 100], 25) == 1
    assert fitting_features([], 25) == 0


def test_parse_search_keeps_plain_parameters() -> None:
    params = parse_search({"collections": "a,b", "ids": ["x"], "limit": "3", "token": "abc"})
    assert (params.collections, params.ids, params.limit, params.token) == (
        ["a", "b"],
        ["x"],
        3,
        "abc",
    )


# --- the local HTTP front and base URLs ---------------------------------------------------


def test_repeated_query_parameters_are_comma_joined() -> None:
    assert query_parameters("collections=a&collections=b&limit=2") == {
        "collections": "a,b",
        "limit": "2",
    }
    assert query_parameters("") is None


def test_build_event_is_payload_2() -> None:
    headers = [("Host", "127.0.0.1:8080"), ("Cookie", "a=1; b=2"), ("Content-Type", "image/png")]
    event = build_event("POST", "/v1/search?bbox=1,2,3,4", headers, b"\x89PNG", "127.0.0.1", "v1")
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/v1/search" and event["rawQueryString"] == "bbox=1,2,3,4"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["host"] == "127.0.0.1:8080"
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\x89PNG"
    parsed = APIGatewayProxyEventV2(event)
    assert parsed.path == "/search" and parsed.http_method == "POST"
    assert base_url(parsed) == "http://127.0.0.1:8080/v1"


def test_base_url_behind_api_gateway() -> None:
    event = build_event("GET", "/", [("Host", "x")], b"", "10.0.0.1")
    event["headers"]["x-forwarded-proto"] = "https"
    event["requestContext"]["domainName"] = "abc.execute-api.eu-west-3.amazonaws.com"
    assert (
        base_url(APIGatewayProxyEventV2(event)) == "https://abc.execute-api.eu-west-3.amazonaws.com"
    )


def test_response_parts() -> None:
    encoded = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/png"},
        "cookies": ["s=1"],
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
    }
    assert response_parts(encoded) == (201, {"Content-Type": "image/png"}, ["s=1"], b"\x00\x01")
    status, headers, _, body = response_parts({"hello": "world"})
    assert status == 200 and json.loads(body) == {"hello": "world"}
