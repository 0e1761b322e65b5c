"""A STAC API over the catalog index: core, collections, features, item search with the filter
(CQL2 text and JSON), sort, fields and query extensions.

The routes parse and check parameters, ask `Catalog` for a page and dress the results with links
built from the public base URL (configured, or the request's own host and stage), so the same
handler is right behind API Gateway with or without a stage prefix, behind a custom domain and
behind the local HTTP front. Bad input is a 400 with a STAC error body, never a 500; a page is
cut short (with a `next` link) rather than exceed Lambda's response size limit.

Every request is held to `RequestLimits` (sizes, counts, nesting) before any work, and a search
reads at most the limits' budget of the index: when it is spent, the page holds what was found
so far and a `next` link resumes after the last record read. Error bodies carry the error's code
and a reason with nothing of the server in it (`redact`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from sansnuages import errors
from sansnuages.api import filter as api_filter
from sansnuages.api import openapi as api_openapi
from sansnuages.api.assets import AssetLinker, s3_presigner
from sansnuages.api.filter import Predicate
from sansnuages.api.limits import (
    LIMITS,
    RequestLimits,
    check_count,
    check_id,
    check_ids,
    loads,
    refuse,
)
from sansnuages.api.redact import public_reason
from sansnuages.settings import Settings
from sansnuages.stac.extents import DatetimeRange, parse_datetime
from sansnuages.stores import aws
from sansnuages.stores.catalog import Catalog, SearchPage
from sansnuages.stores.catalog.planning import ReadBudget

log = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_BODY_BYTES = 5_500_000
"""Most bytes the features of a page may take once JSON-escaped into Lambda's response (the
body is a string inside it, its quotes doubled): Lambda refuses responses over 6 MB (6,291,456
bytes); the rest of the body and the envelope fit in what is left."""
GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf"
FILTER = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#query",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "https://api.stacspec.org/v1.0.0-rc.2/ogcapi-features#filter",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    f"{FILTER}/filter",
    f"{FILTER}/features-filter",
    f"{CQL2}/cql2-text",
    f"{CQL2}/cql2-json",
    f"{CQL2}/basic-cql2",
    f"{CQL2}/advanced-comparison-operators",
    f"{CQL2}/basic-spatial-functions",
    f"{CQL2}/basic-spatial-functions-plus",
    f"{CQL2}/spatial-functions",
    f"{CQL2}/temporal-functions",
]
ALWAYS_FIELDS = ("type", "stac_version", "id", "links")
"""Kept whatever `fields` says: without them a client cannot tell what it received."""

_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"


@dataclass(frozen=True)
class Fields:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchParams:
    collections: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime_range: DatetimeRange | None = None
    ids: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    token: str | None = None
    predicate: Predicate = field(default_factory=Predicate)
    descending: bool = False
    fields: Fields | None = None


@dataclass(frozen=True)
class ApiInfo:
    id: str = "sansnuages"
    title: str = "sansnuages"
    description: str = (
        "Sentinel-2 and Landsat-8 Level-2A products, cloud-free monthly syntheses (Level-3A) "
        "and country mosaics."
    )


@dataclass(frozen=True)
class ApiConfig:
    """Deployment choices of the API, read once from the environment."""

    public_url: str | None = None
    """The API's public root (custom domain, base path): links use it instead of the request."""
    asset_base_url: str | None = None
    """Public HTTPS endpoint of the data bucket; without one, asset alternates are presigned."""
    max_body_bytes: int = MAX_BODY_BYTES
    limits: RequestLimits = LIMITS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiConfig:
        env = os.environ if environ is None else environ
        return cls(
            public_url=(env.get("STAC_API_URL") or "").rstrip("/") or None,
            asset_base_url=(env.get("ASSET_BASE_URL") or "").rstrip("/") or None,
        )


# --- parameter parsing (pure) -------------------------------------------------------------


def parse_bbox(value: str | Sequence[Any] | None) -> tuple[float, float, float, float] | None:
    """A 2D bbox from `"xmin,ymin,xmax,ymax"` (GET) or a list of numbers (POST); 6 numbers is 3D."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or any(isinstance(p, bool) for p in parts):
        raise errors.InvalidRequest(f"bbox must be numbers, got {value!r}")
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError) as exc:
        raise errors.InvalidRequest(f"bbox must be numbers, got {value!r}") from exc
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise errors.InvalidRequest("bbox must be 4 (or 6) finite numbers")
    if len(numbers) == 6:
        if numbers[2] > numbers[5]:
            raise errors.InvalidRequest("bbox minimum elevation is above its maximum")
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


def parse_datetime_range(value: Any) -> DatetimeRange | None:
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
    if isinstance(value, bool | float):
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
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise errors.InvalidRequest(f"{name} must be a list of non-empty strings")
    return list(names)


_SORTABLE = {"datetime": "datetime", "properties.datetime": "datetime", "id": "id"}


def parse_sortby(value: Any, limits: RequestLimits = LIMITS) -> bool:
    """Whether the search sorts newest first. Only datetime sorts (the index order), id breaks
    ties in the same direction; anything else would need a scan and is refused."""
    if value is None or value == "" or value == []:
        return False
    given = value.split(",") if isinstance(value, str) else value
    if not isinstance(given, list):
        raise errors.InvalidRequest("sortby must be a list of fields")
    check_count(given, "sortby", limits.sortby, "terms")
    if isinstance(value, str):
        terms = [_sort_term_text(t) for t in given]
    else:
        terms = [_sort_term_json(t) for t in given]
    names = [name for name, _ in terms]
    directions = {descending for _, descending in terms}
    if names not in (["datetime"], ["datetime", "id"]) or len(directions) != 1:
        raise errors.InvalidRequest(
            "sortby supports datetime, optionally followed by id in the same direction"
        )
    return directions.pop()


def _sort_term_text(term: str) -> tuple[str, bool]:
    term = term.strip()  # a '+' arrives as a space once the query string is decoded
    descending = term.startswith("-")
    return _sortable(term.lstrip("+-")), descending


def _sort_term_json(term: Any) -> tuple[str, bool]:
    if not isinstance(term, dict) or not isinstance(term.get("field"), str):
        raise errors.InvalidRequest("each sortby entry needs a field")
    direction = term.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise errors.InvalidRequest("sortby direction must be asc or desc")
    return _sortable(term["field"]), direction == "desc"


def _sortable(name: str) -> str:
    if name not in _SORTABLE:
        raise errors.InvalidRequest(f"cannot sort by {name!r}: sortable fields are datetime, id")
    return _SORTABLE[name]


def parse_fields(value: Any, limits: RequestLimits = LIMITS) -> Fields | None:
    """`fields=id,-assets,+properties.datetime` (GET) or `{"include": [], "exclude": []}`."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        terms = [t.strip() for t in value.split(",") if t.strip()]
        include = tuple(t.lstrip("+") for t in terms if not t.startswith("-"))
        exclude = tuple(t[1:] for t in terms if t.startswith("-"))
    elif isinstance(value, dict):
        include = tuple(_field_names(value.get("include"), "include"))
        exclude = tuple(_field_names(value.get("exclude"), "exclude"))
    else:
        raise errors.InvalidRequest("fields must be an object with include and exclude lists")
    if any(not name for name in include + exclude):
        raise errors.InvalidRequest("fields names must not be empty")
    check_count(include + exclude, "fields", limits.fields, "names")
    return Fields(include, exclude)


def _field_names(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidRequest(f"fields {name} must be a list of strings")
    return value


_POST_LISTS = ("bbox", "collections", "ids", "sortby")


def parse_search(
    params: Mapping[str, Any], post: bool = False, limits: RequestLimits = LIMITS
) -> SearchParams:
    """Search parameters from GET query parameters or a POST body (same names in both; a POST
    body carries lists and objects where GET has comma-separated text), within `limits`."""
    if post:
        for name in _POST_LISTS:
            if _given(params.get(name)) and not isinstance(params[name], list):
                raise errors.InvalidRequest(f"{name} must be a JSON array in a POST body")
        if _given(params.get("fields")) and not isinstance(params["fields"], dict):
            raise errors.InvalidRequest("fields must be a JSON object in a POST body")
    if _given(params.get("bbox")) and _given(params.get("intersects")):
        raise errors.InvalidRequest("bbox and intersects cannot be used together")
    token = params.get("token")
    if token is not None and not isinstance(token, str):
        raise errors.InvalidRequest("token must be a string")
    if token and len(token) > limits.token_chars:
        raise refuse("the paging token", limits.token_chars, "characters", len(token))
    lang = params.get("filter-lang")
    if lang is not None and not isinstance(lang, str):
        raise errors.InvalidRequest("filter-lang must be a string")
    collections = parse_names(params.get("collections"), "collections")
    ids = parse_names(params.get("ids"), "ids")
    check_ids(collections, "collections", limits)
    check_ids(ids, "ids", limits)
    filter_crs = params.get("filter-crs")
    predicate = api_filter.predicate(
        api_filter.parse_filter(params.get("filter"), lang, filter_crs, limits),
        api_filter.parse_query(params.get("query"), limits),
        intersects=api_filter.parse_intersects(params.get("intersects"), limits),
    )
    return SearchParams(
        collections=collections,
        bbox=parse_bbox(params.get("bbox")),
        datetime_range=parse_datetime_range(params.get("datetime")),
        ids=ids,
        limit=parse_limit(params.get("limit")),
        token=token or None,
        predicate=predicate,
        descending=parse_sortby(params.get("sortby"), limits),
        fields=parse_fields(params.get("fields"), limits),
    )


def _given(value: Any) -> bool:
    return value not in (None, "", [], {})


# --- combining request and filter (pure) ---------------------------------------------------


def _narrowed(names: list[str] | None, allowed: frozenset[str] | None) -> list[str] | None:
    if allowed is None:
        return names
    if names is None:
        return sorted(allowed)
    return [n for n in names if n in allowed]


def _time_intersection(
    a: DatetimeRange | None, b: DatetimeRange | None
) -> tuple[DatetimeRange | None, bool]:
    """The intersection of two time ranges, and whether it is empty."""
    if a is None or b is None:
        return a or b, False
    lows = [t for t in (a[0], b[0]) if t is not None]
    highs = [t for t in (a[1], b[1]) if t is not None]
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    return (low, high), low is not None and high is not None and low > high


# --- documents (pure) ---------------------------------------------------------------------


def base_url(event: APIGatewayProxyEventV2, public_url: str | None = None) -> str:
    """The API's root: configured, or the request's scheme, host and stage prefix."""
    if public_url:
        return public_url.rstrip("/")
    context = event.request_context
    host = context.domain_name or event.headers.get("host", "localhost")
    scheme = (event.headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    stage = context.stage
    prefix = "" if stage in (None, "", "$default") else f"/{stage}"
    return f"{scheme}://{host}{prefix}"


def _link(rel: str, href: str, media_type: str = JSON, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media_type, **extra}


_API_RELS = {"self", "root", "parent", "collection", "items", api_openapi.QUERYABLES_REL}


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
        _link(api_openapi.QUERYABLES_REL, f"{href}/queryables", api_openapi.SCHEMA_JSON),
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
            _link("service-desc", f"{base}/api", api_openapi.OPENAPI),
            _link("service-doc", f"{base}/api.html", HTML),
            _link(api_openapi.QUERYABLES_REL, f"{base}/queryables", api_openapi.SCHEMA_JSON),
            _link(
                "http://www.opengis.net/def/rel/ogc/1.0/sortables",
                f"{base}/sortables",
                api_openapi.SCHEMA_JSON,
            ),
            _link("jobs", f"{base}/jobs"),  # not STAC: the state of synthesis jobs
        ],
    }


def select_fields(document: dict[str, Any], fields: Fields | None) -> dict[str, Any]:
    """The fields extension: keep the included paths (dotted), then drop the excluded ones."""
    if fields is None:
        return document
    if fields.include:
        kept: dict[str, Any] = {k: document[k] for k in ALWAYS_FIELDS if k in document}
        for path in fields.include:
            _copy_path(document, kept, path.split("."))
    else:
        kept = json.loads(json.dumps(document))
    for path in fields.exclude:
        if path not in ALWAYS_FIELDS and path not in fields.include:
            _drop_path(kept, path.split("."))
    return kept


def _copy_path(source: Any, target: dict[str, Any], parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if not isinstance(source, dict) or head not in source:
        return
    if not rest:
        target[head] = source[head]
        return
    branch = target.setdefault(head, {})
    if isinstance(branch, dict):
        _copy_path(source[head], branch, rest)


def _drop_path(target: Any, parts: list[str]) -> None:
    if not isinstance(target, dict):
        return
    if len(parts) == 1:
        target.pop(parts[0], None)
    else:
        _drop_path(target.get(parts[0]), parts[1:])


def get_next_link(href: str, query: Mapping[str, str], token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    params = {**{k: v for k, v in query.items() if k != "token"}, "token": token}
    return _link("next", f"{href}?{urlencode(params)}", GEOJSON, method="GET")


def post_next_link(href: str, token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return _link("next", href, GEOJSON, method="POST", body={"token": token}, merge=True)


def fitting_features(features: list[str], budget: int) -> int:
    """How many serialised features fit in `budget` bytes once escaped into the response
    envelope (at least one, so paging advances)."""
    used = 0
    for count, feature in enumerate(features):
        used += len(json.dumps(feature)) - 1  # escaped, less its two quotes, plus a comma
        if used > budget and count > 0:
            return count
    return len(features)


def error_response(status: int, code: str, description: str) -> Response:
    body = json.dumps({"code": code, "description": description})
    return Response(status_code=status, content_type=JSON, body=body)


def _json(document: Any, content_type: str = JSON) -> Response:
    body = json.dumps(document, separators=(",", ":"))
    return Response(status_code=200, content_type=content_type, body=body, compress=True)


# --- the resolver -------------------------------------------------------------------------


@dataclass
class StacApi:
    """The routes' behaviour, apart from the resolver that dispatches to them."""

    catalog: Catalog
    info: ApiInfo
    config: ApiConfig
    assets: AssetLinker

    def search(self, params: SearchParams) -> SearchPage | None:
        """A page of Items, or None when the request and its filter exclude everything."""
        predicate = params.predicate
        limits = self.config.limits
        check_count(predicate.collections, "the filter's collections", limits.collections, "ids")
        check_count(predicate.ids, "the filter's ids", limits.ids, "ids")
        self._check_filter_collections(predicate)
        collections = _narrowed(params.collections, predicate.collections)
        ids = _narrowed(params.ids, predicate.ids)
        when, empty = _time_intersection(params.datetime_range, predicate.datetime_range)
        if empty or collections == [] or ids == []:
            return None
        return self.catalog.search(
            collections=collections,
            bbox=params.bbox or predicate.bbox,
            datetime_range=when,
            ids=ids,
            limit=params.limit,
            token=params.token,
            filters={"grid:code": predicate.tile} if predicate.tile else None,
            match=predicate.matches if predicate.expression is not None else None,
            descending=params.descending,
            budget=ReadBudget(limits.read_records, limits.read_queries),
        )

    def _check_filter_collections(self, predicate: Predicate) -> None:
        for collection_id in sorted(predicate.collections or ()):
            try:
                self.catalog.get_collection(collection_id)
            except errors.NotFound as exc:
                raise errors.InvalidRequest(
                    f"the filter names an unknown collection {collection_id!r}"
                ) from exc

    def item_collection(
        self, params: SearchParams, base: str, self_href: str, next_link: Any
    ) -> dict[str, Any]:
        """The FeatureCollection of a search, cut short if its body would be too large."""
        page = self.search(params)
        if page is None:
            page = SearchPage([], None, 0, matched=0)
        if page.budget_spent and not page.items:
            raise errors.SearchBudgetSpent(
                f"the search read its budget of {self.config.limits.read_records:,} index records "
                "without a match: narrow it (collections, datetime, bbox, grid:code), or follow "
                "this error's next link to read on",
                next_link(page.next_token),
            )
        documents = [
            select_fields(item_document(self.assets.item(i), base), params.fields)
            for i in page.items
        ]
        serialised = [json.dumps(d, separators=(",", ":")) for d in documents]
        count = fitting_features(serialised, self.config.max_body_bytes)
        token = page.tokens[count - 1] if count < len(documents) else page.next_token
        links = [_link("self", self_href, GEOJSON), _link("root", f"{base}/")]
        following = next_link(token)
        if following is not None:
            links.append(following)
        body = {
            "type": "FeatureCollection",
            "features": documents[:count],
            "links": links,
            "numberReturned": count,
        }
        if page.matched is not None:  # known from month counts, never by reading every match
            body["numberMatched"] = page.matched
        return body


def make_resolver(
    catalog: Catalog,
    settings: Settings | None = None,
    info: ApiInfo | None = None,
    config: ApiConfig | None = None,
    assets: AssetLinker | None = None,
) -> APIGatewayHttpResolver:
    """A Powertools HTTP API resolver with the STAC routes; more routes can be added to it."""
    config = config or ApiConfig()
    if assets is None:
        presign = s3_presigner(aws.presigning_s3_client(settings)) if settings else None
        assets = AssetLinker(config.asset_base_url, presign)
    api = StacApi(catalog, info or ApiInfo(), config, assets)
    app = APIGatewayHttpResolver(cors=CORSConfig(allow_origin="*", max_age=600))
    _add_document_routes(app, api)
    _add_search_routes(app, api)
    _register_errors(app)
    return app


def _add_document_routes(app: APIGatewayHttpResolver, api: StacApi) -> None:
    def base() -> str:
        return base_url(app.current_event, api.config.public_url)

    @app.get("")  # the stage root without its slash ("/v1"), as API Gateway passes it on
    @app.get("/")
    def landing() -> Response:
        return _json(landing_page(api.info, base()))

    @app.get("/conformance")
    def conformance() -> Response:
        return _json({"conformsTo": CONFORMANCE})

    @app.get("/api")
    def service_desc() -> Response:
        info, limits = api.info, api.config.limits
        document = api_openapi.openapi_document(base(), info.title, info.description, limits)
        return _json(document, api_openapi.OPENAPI)

    @app.get("/api.html")
    def service_doc() -> Response:
        info, limits = api.info, api.config.limits
        page = api_openapi.documentation_page(base(), info.title, info.description, limits)
        return Response(status_code=200, content_type=HTML, body=page, compress=True)

    @app.get("/queryables")
    def queryables() -> Response:
        return _json(api_openapi.queryables(f"{base()}/queryables"), api_openapi.SCHEMA_JSON)

    @app.get("/sortables")
    def sortables() -> Response:
        return _json(api_openapi.sortables(f"{base()}/sortables"), api_openapi.SCHEMA_JSON)

    @app.get("/collections")
    def collections() -> Response:
        root = base()
        documents = [collection_document(c, root) for c in api.catalog.collections()]
        links = [_link("self", f"{root}/collections"), _link("root", f"{root}/")]
        return _json({"collections": documents, "links": links})

    @app.get("/collections/<collection_id>")
    def collection(collection_id: str) -> Response:
        document = api.catalog.get_collection(path_id(collection_id, api.config.limits))
        return _json(collection_document(document, base()))

    @app.get("/collections/<collection_id>/queryables")
    def collection_queryables(collection_id: str) -> Response:
        collection_id = path_id(collection_id, api.config.limits)
        api.catalog.get_collection(collection_id)
        href = f"{base()}/collections/{collection_id}/queryables"
        document = api_openapi.queryables(href, f"Queryables of {collection_id}")
        return _json(document, api_openapi.SCHEMA_JSON)

    @app.get("/collections/<collection_id>/items/<item_id>")
    def item(collection_id: str, item_id: str) -> Response:
        limits = api.config.limits
        found = api.catalog.get_item(path_id(collection_id, limits), path_id(item_id, limits))
        query = app.current_event.query_string_parameters or {}
        fields = parse_fields(query.get("fields"), limits)
        document = select_fields(item_document(api.assets.item(found), base()), fields)
        return _json(document, GEOJSON)


def _add_search_routes(app: APIGatewayHttpResolver, api: StacApi) -> None:
    def base() -> str:
        return base_url(app.current_event, api.config.public_url)

    @app.get("/collections/<collection_id>/items")
    def items(collection_id: str) -> Response:
        collection_id = path_id(collection_id, api.config.limits)
        api.catalog.get_collection(collection_id)
        query = app.current_event.query_string_parameters or {}
        plain = {**query, "collections": None, "ids": None, "intersects": None}
        params = parse_search(plain, limits=api.config.limits)
        params = replace(params, collections=[collection_id])
        root = base()
        href = f"{root}/collections/{collection_id}/items"
        body = api.item_collection(params, root, href, lambda t: get_next_link(href, query, t))
        return _json(body, GEOJSON)

    @app.get("/search")
    def search_get() -> Response:
        query = app.current_event.query_string_parameters or {}
        root = base()
        href = f"{root}/search"
        params = parse_search(query, limits=api.config.limits)
        body = api.item_collection(params, root, href, lambda t: get_next_link(href, query, t))
        return _json(body, GEOJSON)

    @app.post("/search")
    def search_post() -> Response:
        limits = api.config.limits
        params = parse_search(json_body(app.current_event, limits), post=True, limits=limits)
        root = base()
        href = f"{root}/search"
        body = api.item_collection(params, root, href, lambda t: post_next_link(href, t))
        return _json(body, GEOJSON)


def path_id(text: str, limits: RequestLimits = LIMITS) -> str:
    """A collection or Item id as a path gives it (possibly percent-encoded), within limits."""
    value = unquote(text)
    check_id(value, "the path's ids", limits)
    return value


def json_body(event: APIGatewayProxyEventV2, limits: RequestLimits = LIMITS) -> dict[str, Any]:
    """The JSON object of a request body, its size and nesting checked before it is parsed."""
    raw = event.body or ""
    size = len(raw) * 3 // 4 if event.is_base64_encoded else len(raw)
    if size <= limits.body_bytes and not event.is_base64_encoded:
        size = len(raw.encode("utf-8", "surrogatepass"))
    if size > limits.body_bytes:
        raise refuse("the request body", limits.body_bytes, "bytes", size)
    try:
        text = event.decoded_body
        if not text:
            return {}
        body = loads(text, "the request body", limits)
    except ValueError as exc:  # UnicodeDecodeError included
        raise errors.InvalidRequest("the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise errors.InvalidRequest("the request body must be a JSON object")
    return body


def _register_errors(app: APIGatewayHttpResolver) -> None:
    """The one place where errors become HTTP statuses. A description is the error's reason
    as `redact.public_reason` lets it out: one line, no URL, path, key or credential."""

    @app.exception_handler(errors.SearchBudgetSpent)
    def budget_spent(exc: errors.SearchBudgetSpent) -> Response:
        body: dict[str, Any] = {"code": "SearchBudgetSpent", "description": str(exc)}
        if exc.next_link is not None:
            body["links"] = [exc.next_link]
        return Response(status_code=400, content_type=JSON, body=json.dumps(body))

    @app.exception_handler(errors.InvalidRequest)
    def invalid(exc: errors.InvalidRequest) -> Response:
        return error_response(400, "InvalidParameterValue", public_reason(str(exc)) or "")

    @app.exception_handler(errors.NotFound)
    def not_found(exc: errors.NotFound) -> Response:
        return error_response(404, "NotFound", public_reason(str(exc)) or "")

    @app.not_found
    def no_route(exc: NotFoundError) -> Response:
        path = app.current_event.path  # the client's own, said back within a line's length
        return error_response(404, "NotFound", f"no such resource: {path[:200]}")

    @app.exception_handler(errors.TransientError)
    def transient(exc: errors.TransientError) -> Response:
        log.warning("transient failure: %s", exc)
        return error_response(503, "ServiceUnavailable", "try again shortly")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "InternalServerError", "unexpected error")
