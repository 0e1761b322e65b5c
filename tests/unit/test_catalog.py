"""Pure parts of the catalog index, the STAC API parameters and the local HTTP front."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from sansnuages import errors
from sansnuages.catalog import (
    Summary,
    bbox_intersects,
    decode_token,
    encode_token,
    iso,
    item_interval,
    item_sort_key,
    months_in_range,
    sort_key_bounds,
)
from sansnuages.local.http_front import build_event, query_parameters, response_parts
from sansnuages.stac_api import (
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
