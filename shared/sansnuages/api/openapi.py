"""The API's self-description: OpenAPI 3.0 document, its HTML page, queryables and sortables.

The OpenAPI document describes every route and parameter the resolver serves, so that a client
generator or a fuzzer (the test suite runs schemathesis on it) sees the real API, with the
request limits (`limits.RequestLimits`) as schema bounds where a schema can say them and in the
descriptions otherwise.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

from sansnuages.api.limits import LIMITS, RequestLimits

OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA_JSON = "application/schema+json"
JSON_SCHEMA = "https://json-schema.org/draft/2019-09/schema"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
SORTABLE_FIELDS = ("datetime", "id")

QUERYABLES: dict[str, dict[str, Any]] = {
    "id": {"title": "Item id", "type": "string"},
    "collection": {"title": "Collection id", "type": "string"},
    "geometry": {"title": "Footprint", "type": "object", "format": "geometry-any"},
    "datetime": {"title": "Acquisition time", "type": "string", "format": "date-time"},
    "start_datetime": {"title": "Start of a synthesis", "type": "string", "format": "date-time"},
    "end_datetime": {"title": "End of a synthesis", "type": "string", "format": "date-time"},
    "eo:cloud_cover": {"title": "Cloud cover (%)", "type": "number", "minimum": 0, "maximum": 100},
    "grid:code": {"title": "Tile (e.g. MGRS-31TCJ)", "type": "string"},
    "platform": {"title": "Platform", "type": "string"},
    "constellation": {"title": "Constellation", "type": "string"},
    "instruments": {"title": "Instruments", "type": "array", "items": {"type": "string"}},
    "processing:level": {"title": "Processing level", "type": "string"},
}
"""Properties a filter may name; others are allowed and simply absent from most Items."""


def queryables(href: str, title: str = "Queryables") -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA,
        "$id": href,
        "type": "object",
        "title": title,
        "properties": QUERYABLES,
        "additionalProperties": True,
    }


def sortables(href: str) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA,
        "$id": href,
        "type": "object",
        "title": "Sortables (datetime, with id as the tiebreaker)",
        "properties": {name: QUERYABLES[name] for name in SORTABLE_FIELDS},
        "additionalProperties": False,
    }


# --- the OpenAPI document --------------------------------------------------------------------

_STRING_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
_ERROR = {
    "type": "object",
    "required": ["code", "description"],
    "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
}


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def _ids(most: int, limits: RequestLimits) -> dict[str, Any]:
    item = {"type": "string", "minLength": 1, "maxLength": limits.id_chars}
    return {"type": "array", "items": item, "maxItems": most}


_ARRAY = {"style": "form", "explode": False}


def _search_parameters(limits: RequestLimits) -> list[dict[str, Any]]:
    return [
        _query(
            "bbox",
            {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6},
            "xmin,ymin,xmax,ymax (or 6 numbers for 3D), WGS84",
            **_ARRAY,
        ),
        _query("datetime", {"type": "string"}, "RFC 3339 instant or interval, '..' for open ends"),
        _query("limit", {"type": "integer", "minimum": 1}, "page size (default 10, clamped)"),
        _query("ids", _ids(limits.ids, limits), f"Item ids (at most {limits.ids})", **_ARRAY),
        _query(
            "collections",
            _ids(limits.collections, limits),
            f"collection ids (at most {limits.collections})",
            **_ARRAY,
        ),
        _query(
            "intersects",
            {"type": "string"},
            f"a GeoJSON geometry, as JSON text (at most {limits.intersects_vertices:,} vertices)",
        ),
        _query(
            "filter",
            {"type": "string", "maxLength": limits.cql2_chars},
            f"a CQL2 filter (at most {limits.cql2_chars:,} characters, {limits.cql2_depth} "
            f"nested operations and {limits.cql2_nodes:,} values)",
        ),
        _query("filter-lang", {"type": "string", "enum": ["cql2-text", "cql2-json"]}, "CQL2 form"),
        _query(
            "sortby",
            {"type": "string"},
            f"'-datetime' or '+datetime' (id breaks ties; at most {limits.sortby} terms)",
        ),
        _query(
            "fields",
            {"type": "string"},
            f"fields to include (name or +name), exclude (-name); at most {limits.fields}",
        ),
        _query("query", {"type": "string"}, "query extension object, as JSON text"),
        _query(
            "token",
            {"type": "string", "maxLength": limits.token_chars},
            "paging token from a next link",
        ),
    ]


def _items_parameters(limits: RequestLimits) -> list[dict[str, Any]]:
    return [
        p
        for p in _search_parameters(limits)
        if p["name"] not in ("collections", "ids", "intersects")
    ]


def _search_body(limits: RequestLimits) -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            f"at most {limits.body_bytes:,} bytes, nested at most {limits.json_depth} levels"
        ),
        "properties": {
            "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6},
            "datetime": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1},
            "ids": _ids(limits.ids, limits),
            "collections": _ids(limits.collections, limits),
            "intersects": {
                "type": "object",
                "description": f"a GeoJSON geometry of at most {limits.intersects_vertices:,} "
                "vertices",
            },
            "filter": {
                "oneOf": [{"type": "object"}, {"type": "string", "maxLength": limits.cql2_chars}],
                "description": f"CQL2: at most {limits.cql2_depth} nested operations and "
                f"{limits.cql2_nodes:,} values",
            },
            "filter-lang": {"type": "string", "enum": ["cql2-text", "cql2-json"]},
            "filter-crs": {"type": "string"},
            "sortby": {
                "type": "array",
                "maxItems": limits.sortby,
                "items": {
                    "type": "object",
                    "required": ["field"],
                    "properties": {
                        "field": {"type": "string"},
                        "direction": {"type": "string", "enum": ["asc", "desc"]},
                    },
                },
            },
            "fields": {
                "type": "object",
                "description": f"at most {limits.fields} names, include and exclude together",
                "properties": {"include": _STRING_LIST, "exclude": _STRING_LIST},
            },
            "query": {"type": "object"},
            "token": {"type": "string", "maxLength": limits.token_chars},
        },
    }


def limits_text(limits: RequestLimits = LIMITS) -> str:
    """The limits as the documents state them: one line each."""
    lines = [f"- {name}: at most {most:,} {what}" for name, most, what in limits.documented()]
    return "\n".join(lines)


def _description(description: str, limits: RequestLimits) -> str:
    return (
        f"{description}\n\nEach request is held to these limits; past one, the answer is a 400 "
        "whose description names the limit.\n\n"
        f"{limits_text(limits)}\n\nA search stops reading the index when its budget is spent "
        "and answers with the Items found so far (possibly none) and a `next` link that "
        "resumes after the last record read: follow `next` links until there is none."
    )


_PATH_ID = {"type": "string", "minLength": 1}


def _responses(media_type: str, description: str, not_found: bool = False) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ERROR}}}
    responses: dict[str, Any] = {
        "200": {"description": description, "content": {media_type: {"schema": {}}}},
        "400": {"description": "bad request, or over a request limit", **error},
    }
    if not_found:
        responses["404"] = {"description": "not found", **error}
    return responses


def _get(operation_id: str, summary: str, media_type: str, **extra: Any) -> dict[str, Any]:
    not_found = bool(extra.pop("not_found", False))
    return {
        "operationId": operation_id,
        "summary": summary,
        "responses": _responses(media_type, summary, not_found),
        **extra,
    }


def _path_parameter(name: str, limits: RequestLimits = LIMITS) -> dict[str, Any]:
    schema = {**_PATH_ID, "maxLength": limits.id_chars}
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = {"type": "integer", "minimum": 1}
_JOB_ID = {
    "type": "string",
    "pattern": r"^(\d{4}-\d{2}|snow-\d{4})-[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
}
_JOB_PATHS: dict[str, Any] = {  # not STAC: the state of synthesis jobs (`job_routes`)
    "/jobs": {
        "get": _get(
            "getJobs",
            "synthesis jobs, the latest month first",
            "application/json",
            parameters=[
                _query("limit", _LIMIT, "page size (default 10, max 100)"),
                _query("token", {"type": "string"}, "paging token from a next link"),
            ],
        )
    },
    "/jobs/{jobId}": {
        "get": _get(
            "getJob",
            "one job: tiles pending, done and failed with reasons",
            "application/json",
            parameters=[{"name": "jobId", "in": "path", "required": True, "schema": _JOB_ID}],
            not_found=True,
        )
    },
}


_BANDS = "B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12"
_DAY = {"type": "string", "format": "date"}


def _series_paths(limits: RequestLimits) -> dict[str, Any]:
    """Not STAC: the reflectance time series (`timeseries_routes`) and the production
    statistics (`stats_routes`)."""
    text = {"type": "string", "maxLength": 200}
    series = [
        _query("lon", {"type": "number", "minimum": -180, "maximum": 180}, "longitude"),
        _query("lat", {"type": "number", "minimum": -90, "maximum": 90}, "latitude"),
        _query(
            "datetime",
            text,
            f"start/end (days or RFC 3339), at most {limits.series_days:,} days",
            required=True,
        ),
        _query("bands", text, f"comma-separated ({_BANDS}); default B2,B3,B4,B8"),
        _query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
        _query(
            "versions",
            {"type": "string", "enum": ["newest", "all"]},
            "all: every version of a reprocessed product (default: the newest)",
        ),
    ]
    body = {
        "type": "object",
        "required": ["geometry", "datetime"],
        "properties": {
            "geometry": {
                "type": "object",
                "description": "a GeoJSON Point, or a Polygon of at most "
                f"{limits.series_vertices:,} vertices over at most {limits.series_pixels:,} "
                "pixels of a product (the mean of its pixels, clear ones where there are)",
            },
            "datetime": {"type": "string"},
            "bands": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
            "format": {"type": "string", "enum": ["json", "csv"]},
            "versions": {"type": "string", "enum": ["newest", "all"]},
        },
    }
    summary = (
        "reflectance, AOT, flags and angles at a point over time "
        f"(at most {limits.series_products:,} products)"
    )
    stats = [
        _query("from", _DAY, "first day (yyyy-mm-dd)", required=True),
        _query("to", _DAY, f"last day, at most {limits.stats_days:,} days later", required=True),
        _query(
            "collection",
            {"type": "string", "enum": ["sentinel2-l2a", "landsat8-l2a", "snow-l2b"]},
            "one collection (default: every product's)",
        ),
        _query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
    ]
    return {
        "/timeseries": {
            "get": _get("getTimeSeries", summary, "application/json", parameters=series),
            "post": {
                "operationId": "postTimeSeries",
                "summary": summary + ", at a point or over a small polygon",
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": _responses("application/json", summary),
            },
        },
        "/stats/production": {
            "get": _get(
                "getProductionStatistics",
                "products acquired, ingested and quarantined per day, monthly averages",
                "application/json",
                parameters=stats,
            )
        },
        **_season_paths(limits),
    }


def _season_paths(limits: RequestLimits) -> dict[str, Any]:
    """Not STAC: the season plot's data (`season_routes`)."""
    season = {"type": "integer", "minimum": 1901, "maximum": 2199}
    output = {"type": "string", "enum": ["json", "csv"]}
    summary = "snow-covered share per day of a snow season, gap-filled and observed"
    parameters = [
        _query(
            "season",
            season,
            "the year the season ends in (2018: Sep 2017 to Aug 2018)",
            required=True,
        ),
        _query("tile", {"type": "string", "maxLength": 6}, "a Sentinel-2 tile, e.g. 31TCH"),
        _query(
            "lon", {"type": "number", "minimum": -180, "maximum": 180}, "or a point's longitude"
        ),
        _query("lat", {"type": "number", "minimum": -90, "maximum": 90}, "and latitude"),
        _query("format", output, "json (default) or csv"),
    ]
    body = {
        "type": "object",
        "required": ["season", "geometry"],
        "properties": {
            "season": season,
            "geometry": {
                "type": "object",
                "description": f"a GeoJSON Point, or a Polygon of at most {limits.series_vertices:,} "
                f"vertices over at most {limits.season_pixels:,} pixels of the 20 m grid",
            },
            "format": output,
        },
    }
    return {
        "/seasons/curve": {
            "get": _get(
                "getSeasonCurve", summary + ", of a tile", "application/json", parameters=parameters
            ),
            "post": {
                "operationId": "postSeasonCurve",
                "summary": summary + ", over a small polygon",
                "requestBody": {"content": {"application/json": {"schema": body}}},
                "responses": _responses("application/json", summary),
            },
        }
    }


def openapi_document(
    base: str, title: str, description: str, limits: RequestLimits = LIMITS
) -> dict[str, Any]:
    """OpenAPI 3.0 for every route of the STAC API, with `base` as its server."""
    collection = _path_parameter("collectionId", limits)
    geojson, json_ = "application/geo+json", "application/json"
    search_body = {
        "content": {json_: {"schema": _search_body(limits)}},
        "required": False,
        "description": f"at most {limits.body_bytes:,} bytes",
    }
    paths: dict[str, Any] = {
        "/": {"get": _get("getLandingPage", "landing page", json_)},
        "/conformance": {"get": _get("getConformance", "conformance classes", json_)},
        "/api": {"get": _get("getOpenApi", "this document", OPENAPI)},
        "/api.html": {"get": _get("getApiDocumentation", "API documentation", "text/html")},
        "/queryables": {"get": _get("getQueryables", "queryables", SCHEMA_JSON)},
        "/sortables": {"get": _get("getSortables", "sortables", SCHEMA_JSON)},
        "/collections": {"get": _get("getCollections", "collections", json_)},
        "/collections/{collectionId}": {
            "get": _get(
                "describeCollection", "a collection", json_, parameters=[collection], not_found=True
            )
        },
        "/collections/{collectionId}/queryables": {
            "get": _get(
                "getCollectionQueryables",
                "queryables of a collection",
                SCHEMA_JSON,
                parameters=[collection],
                not_found=True,
            )
        },
        "/collections/{collectionId}/items": {
            "get": _get(
                "getFeatures",
                "items of a collection",
                geojson,
                parameters=[collection, *_items_parameters(limits)],
                not_found=True,
            )
        },
        "/collections/{collectionId}/items/{featureId}": {
            "get": _get(
                "getFeature",
                "one item",
                geojson,
                parameters=[collection, _path_parameter("featureId", limits)],
                not_found=True,
            )
        },
        "/search": {
            "get": _get(
                "getItemSearch", "item search", geojson, parameters=_search_parameters(limits)
            ),
            "post": {
                "operationId": "postItemSearch",
                "summary": "item search",
                "requestBody": search_body,
                "responses": _responses(geojson, "item search"),
            },
        },
        **_JOB_PATHS,
        **_series_paths(limits),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "description": _description(description, limits),
            "version": "1.0.0",
        },
        "servers": [{"url": base}],
        "paths": paths,
        "x-request-limits": asdict(limits),
    }


def documentation_page(
    base: str, title: str, description: str, limits: RequestLimits = LIMITS
) -> str:
    """The service-doc: a plain HTML page listing the routes, how to search and the limits."""
    rows = "".join(
        f"<tr><td><code>{html.escape(method.upper())}</code></td>"
        f"<td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(operation.get('summary', ''))}</td></tr>"
        for path, methods in openapi_document(base, title, description, limits)["paths"].items()
        for method, operation in methods.items()
    )
    limit_rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{most:,}</td>"
        f"<td>{html.escape(what)}</td></tr>"
        for name, most, what in limits.documented()
    )
    safe_base = html.escape(base)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} STAC API</title></head><body>"
        f"<h1>{html.escape(title)} STAC API</h1><p>{html.escape(description)}</p>"
        f"<p>OpenAPI document: <a href='{safe_base}/api'>{safe_base}/api</a></p>"
        "<p>Search with pystac-client:</p><pre>"
        "from pystac_client import Client\n"
        f"client = Client.open('{safe_base}/')\n"
        "search = client.search(collections=['sentinel2-l2a'], bbox=[1, 43, 2, 44],\n"
        "                       datetime='2024-01', filter='eo:cloud_cover &lt; 20')\n"
        "for item in search.items(): print(item.id)</pre>"
        f"<table><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table>"
        "<h2>Limits</h2><p>Past a limit, a request is a 400 that names it. A search that spends "
        "its read budget answers with what it found so far and a <code>next</code> link.</p>"
        f"<table><tr><th>parameter</th><th>at most</th><th>what</th></tr>{limit_rows}</table>"
        "</body></html>"
    )
