"""A STAC API (core, collections, features, item search) over the catalog index.

The routes parse and check parameters, ask `Catalog` for a page and dress the results with links
built from the request's own base URL, so the same handler is right behind API Gateway (with or
without a stage prefix) and behind the local HTTP front. Bad input is a 400 with a STAC error
body, never a 500.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from . import errors
from .catalog import Catalog, DatetimeRange, SearchPage, parse_datetime
from .settings import Settings

log = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
GEOJSON = "application/geo+json"
JSON = "application/json"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
UNSUPPORTED = ("intersects", "filter", "query", "sortby", "fields")
"""Search parameters this API cannot honour: refused, because ignoring them returns wrong items."""

_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"


@dataclass(frozen=True)
class SearchParams:
    collections: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime_range: DatetimeRange | None = None
    ids: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    token: str | None = None


@dataclass(frozen=True)
class ApiInfo:
    id: str = "sansnuages"
    title: str = "sansnuages"
    description: str = (
        "Sentinel-2 and Landsat-8 Level-2A products, cloud-free monthly syntheses (Level-3A) "
        "and country mosaics."
    )


# --- parameter parsing (pure) -------------------------------------------------------------


def parse_bbox(value: str | Sequence[Any] | None) -> tuple[float, float, float, float] | None:
    """A 2D bbox from `"xmin,ymin,xmax,ymax"` (GET) or a list of numbers (POST); 6 numbers is 3D."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError) as exc:
        raise errors.InvalidRequest(f"bbox must be numbers, got {value!r}") from exc
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise errors.InvalidRequest("bbox must be 4 (or 6) finite numbers")
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    xmin, ymin, xmax, ymax = numbers
    if not (-90 <= ymin <= ymax <= 90):
        raise errors.InvalidRequest("bbox latitudes must satisfy -90 <= ymin <= ymax <= 90")
    if not (-180 <= xmin <= 180 and -180 <= xmax <= 180):
        raise errors.InvalidRequest("bbox longitudes must lie within [-180, 180]")
    return (xmin, ymin, xmax, ymax)


def _parse_instant(text: str) -> datetime:
    if not re.match(_RFC3339, text):
        raise errors.InvalidRequest(f"not an RFC 3339 date-time: {text!r}")
    return parse_datetime(text)


def parse_datetime_range(value: str | None) -> DatetimeRange | None:
    """An RFC 3339 instant, or `start/end` where `..` (or nothing) leaves an end open."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidRequest("datetime must be a string")
    if "/" not in value:
        instant = _parse_instant(value)
        return (instant, instant)
    pieces = value.split("/")
    if len(pieces) != 2:
        raise errors.InvalidRequest(f"datetime interval must be start/end, got {value!r}")
    start, end = (None if p in ("", "..") else _parse_instant(p) for p in pieces)
    if start is None and end is None:
        raise errors.InvalidRequest("datetime interval cannot be open at both ends")
    if start is not None and end is not None and start > end:
        raise errors.InvalidRequest("datetime interval starts after it ends")
    return (start, end)


def parse_limit(value: Any) -> int:
    """Default 10; above the maximum it is clamped (as the STAC API asks), below 1 refused."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    if isinstance(value, bool) or isinstance(value, float):
        raise errors.InvalidRequest("limit must be an integer")
    try:
        limit = int(value)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidRequest(f"limit must be an integer, got {value!r}") from exc
    if limit < 1:
        raise errors.InvalidRequest("limit must be at least 1")
    return min(limit, MAX_LIMIT)


def parse_names(value: str | Sequence[Any] | None, name: str) -> list[str] | None:
    if value is None or value == "":
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in names):
        raise errors.InvalidRequest(f"{name} must be a list of non-empty strings")
    return names


def parse_search(params: Mapping[str, Any]) -> SearchParams:
    """Search parameters from GET query parameters or a POST body (same names in both)."""
    refused = [p for p in UNSUPPORTED if params.get(p) not in (None, "", [], {})]
    if refused:
        raise errors.InvalidRequest(f"unsupported search parameters: {', '.join(refused)}")
    token = params.get("token")
    if token is not None and not isinstance(token, str):
        raise errors.InvalidRequest("token must be a string")
    return SearchParams(
        collections=parse_names(params.get("collections"), "collections"),
        bbox=parse_bbox(params.get("bbox")),
        datetime_range=parse_datetime_range(params.get("datetime")),
        ids=parse_names(params.get("ids"), "ids"),
        limit=parse_limit(params.get("limit")),
        token=token or None,
    )


# --- documents (pure) ---------------------------------------------------------------------


def base_url(event: APIGatewayProxyEventV2) -> str:
    """Scheme, host and stage prefix of the request, so links work wherever the API is served."""
    context = event.request_context
    host = context.domain_name or event.headers.get("host", "localhost")
    scheme = (event.headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    stage = context.stage
    prefix = "" if stage in (None, "", "$default") else f"/{stage}"
    return f"{scheme}://{host}{prefix}"


def _link(rel: str, href: str, media_type: str = JSON, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media_type, **extra}


_API_RELS = {"self", "root", "parent", "collection", "items"}


def item_document(item: Mapping[str, Any], base: str) -> dict[str, Any]:
    collection = item.get("collection")
    href = f"{base}/collections/{collection}"
    kept = [link for link in item.get("links", []) if link.get("rel") not in _API_RELS]
    links = [
        _link("self", f"{href}/items/{item['id']}", GEOJSON),
        _link("parent", href),
        _link("collection", href),
        _link("root", f"{base}/"),
        *kept,
    ]
    return {**item, "links": links}


def collection_document(collection: Mapping[str, Any], base: str) -> dict[str, Any]:
    href = f"{base}/collections/{collection['id']}"
    kept = [link for link in collection.get("links", []) if link.get("rel") not in _API_RELS]
    links = [
        _link("self", href),
        _link("parent", f"{base}/"),
        _link("root", f"{base}/"),
        _link("items", f"{href}/items", GEOJSON),
        *kept,
    ]
    return {**collection, "links": links}


def landing_page(info: ApiInfo, base: str) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "id": info.id,
        "title": info.title,
        "description": info.description,
        "stac_version": STAC_VERSION,
        "conformsTo": CONFORMANCE,
        "links": [
            _link("self", f"{base}/"),
            _link("root", f"{base}/"),
            _link("conformance", f"{base}/conformance"),
            _link("data", f"{base}/collections"),
            _link("search", f"{base}/search", GEOJSON, method="GET"),
            _link("search", f"{base}/search", GEOJSON, method="POST"),
        ],
    }


def feature_collection(
    page: SearchPage, base: str, self_href: str, next_link: dict[str, Any] | None
) -> dict[str, Any]:
    links = [_link("self", self_href, GEOJSON), _link("root", f"{base}/")]
    if next_link is not None:
        links.append(next_link)
    return {
        "type": "FeatureCollection",
        "features": [item_document(item, base) for item in page.items],
        "links": links,
        "numberReturned": len(page.items),
    }


def get_next_link(href: str, query: Mapping[str, str], token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    params = {**{k: v for k, v in query.items() if k != "token"}, "token": token}
    return _link("next", f"{href}?{urlencode(params)}", GEOJSON, method="GET")


def post_next_link(href: str, token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return _link("next", href, GEOJSON, method="POST", body={"token": token}, merge=True)


def error_response(status: int, code: str, description: str) -> Response:
    body = json.dumps({"code": code, "description": description})
    return Response(status_code=status, content_type=JSON, body=body)


def _json(document: Any, content_type: str = JSON) -> Response:
    body = json.dumps(document, separators=(",", ":"))
    return Response(status_code=200, content_type=content_type, body=body)


# --- the resolver -------------------------------------------------------------------------


def make_resolver(
    catalog: Catalog, settings: Settings | None = None, info: ApiInfo | None = None
) -> APIGatewayHttpResolver:
    """A Powertools HTTP API resolver with the STAC routes; more routes can be added to it."""
    del settings  # accepted for symmetry with the other core entry points; nothing to read yet
    info = info or ApiInfo()
    app = APIGatewayHttpResolver(cors=CORSConfig(allow_origin="*", max_age=600))

    def event() -> APIGatewayProxyEventV2:
        return app.current_event

    def search(params: SearchParams) -> SearchPage:
        return catalog.search(
            collections=params.collections,
            bbox=params.bbox,
            datetime_range=params.datetime_range,
            ids=params.ids,
            limit=params.limit,
            token=params.token,
        )

    @app.get("")  # the stage root without its slash ("/v1"), as API Gateway passes it on
    @app.get("/")
    def landing() -> Response:
        return _json(landing_page(info, base_url(event())))

    @app.get("/conformance")
    def conformance() -> Response:
        return _json({"conformsTo": CONFORMANCE})

    @app.get("/collections")
    def collections() -> Response:
        base = base_url(event())
        documents = [collection_document(c, base) for c in catalog.collections()]
        links = [_link("self", f"{base}/collections"), _link("root", f"{base}/")]
        return _json({"collections": documents, "links": links})

    @app.get("/collections/<collection_id>")
    def collection(collection_id: str) -> Response:
        document = catalog.get_collection(unquote(collection_id))
        return _json(collection_document(document, base_url(event())))

    @app.get("/collections/<collection_id>/items")
    def items(collection_id: str) -> Response:
        collection_id = unquote(collection_id)
        catalog.get_collection(collection_id)
        query = event().query_string_parameters
        params = parse_search({**query, "collections": None, "ids": None})
        page = search(SearchParams(**{**params.__dict__, "collections": [collection_id]}))
        base = base_url(event())
        href = f"{base}/collections/{collection_id}/items"
        body = feature_collection(page, base, href, get_next_link(href, query, page.next_token))
        return _json(body, GEOJSON)

    @app.get("/collections/<collection_id>/items/<item_id>")
    def item(collection_id: str, item_id: str) -> Response:
        found = catalog.get_item(unquote(collection_id), unquote(item_id))
        return _json(item_document(found, base_url(event())), GEOJSON)

    @app.get("/search")
    def search_get() -> Response:
        query = event().query_string_parameters
        page = search(parse_search(query))
        base = base_url(event())
        href = f"{base}/search"
        body = feature_collection(page, base, href, get_next_link(href, query, page.next_token))
        return _json(body, GEOJSON)

    @app.post("/search")
    def search_post() -> Response:
        page = search(parse_search(_json_body(event())))
        base = base_url(event())
        href = f"{base}/search"
        body = feature_collection(page, base, href, post_next_link(href, page.next_token))
        return _json(body, GEOJSON)

    _register_errors(app)
    return app


def _json_body(event: APIGatewayProxyEventV2) -> dict[str, Any]:
    text = event.decoded_body
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise errors.InvalidRequest("the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise errors.InvalidRequest("the request body must be a JSON object")
    return body


def _register_errors(app: APIGatewayHttpResolver) -> None:
    """The one place where errors become HTTP statuses."""

    @app.exception_handler(errors.InvalidRequest)
    def invalid(exc: errors.InvalidRequest) -> Response:
        return error_response(400, "InvalidParameterValue", str(exc))

    @app.exception_handler(errors.NotFound)
    def not_found(exc: errors.NotFound) -> Response:
        return error_response(404, "NotFound", str(exc))

    @app.not_found
    def no_route(exc: NotFoundError) -> Response:
        path = app.current_event.path
        return error_response(404, "NotFound", f"no such resource: {path}")

    @app.exception_handler(errors.TransientError)
    def transient(exc: errors.TransientError) -> Response:
        log.warning("transient failure: %s", exc)
        return error_response(503, "ServiceUnavailable", "try again shortly")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "InternalServerError", "unexpected error")
