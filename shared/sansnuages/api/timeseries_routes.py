"""Reflectance time series at a point or over a small polygon, as JSON or CSV:

  GET  /timeseries?lon=4.35&lat=50.85&datetime=2018-01-01/2018-12-31&bands=B2,B4&format=csv
  POST /timeseries   {"geometry": {GeoJSON Point or Polygon}, "datetime": ..., "bands": [...]}

`versions=all` keeps every version of a reprocessed product (by default only the newest).
Every parameter is held to the request limits (`api.limits`): a range of dates with both ends,
known bands, a polygon of few vertices over few pixels, a bounded number of products.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from shapely.geometry import shape

from sansnuages import errors
from sansnuages.api.filter import parse_intersects
from sansnuages.api.limits import LIMITS, RequestLimits, refuse
from sansnuages.api.stac import JSON, json_body, parse_datetime_range
from sansnuages.processing.timeseries import parse_bands, series_csv, series_document
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.timeseries import SeriesQuery, time_series

CSV = "text/csv"
PARAMETERS = frozenset({"lon", "lat", "datetime", "bands", "format", "versions", "geometry"})


def parse_format(value: Any) -> str:
    if value in (None, "", "json"):
        return "json"
    if value == "csv":
        return "csv"
    raise errors.InvalidRequest("format is json or csv")


def parse_versions(value: Any) -> bool:
    if value in (None, "", "newest"):
        return False
    if value == "all":
        return True
    raise errors.InvalidRequest("versions is newest (the default) or all")


def parse_range(value: Any, limits: RequestLimits = LIMITS) -> tuple[datetime, datetime]:
    """A closed range of dates (`start/end`), at most `series_days` long."""
    if not value:
        raise errors.InvalidRequest("datetime is required: start/end, e.g. 2018-01-01/2018-12-31")
    if not isinstance(value, str) or value.count("/") != 1:
        raise errors.InvalidRequest("datetime must be a range with both ends: start/end")
    first, last = value.split("/")
    value = f"{_instant(first, end=False)}/{_instant(last, end=True)}"
    parsed = parse_datetime_range(value)
    start, end = parsed if parsed is not None else (None, None)
    if start is None or end is None:
        raise errors.InvalidRequest("datetime must be a range with both ends")
    days = (end.date() - start.date()).days + 1  # calendar days touched
    if days > limits.series_days:
        raise refuse("the datetime range", limits.series_days, "days", days)
    return start, end


def _instant(text: str, end: bool) -> str:
    """A day alone stands for its first (start) or last (end) second."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return f"{text}T23:59:59Z" if end else f"{text}T00:00:00Z"
    return text


def parse_point(lon: Any, lat: Any) -> dict[str, Any]:
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidRequest("lon and lat must be numbers") from exc
    if not (math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90):
        raise errors.InvalidRequest("lon and lat must be a longitude and a latitude")
    return {"type": "Point", "coordinates": [x, y]}


def parse_geometry(value: Any, limits: RequestLimits = LIMITS) -> dict[str, Any]:
    """A GeoJSON Point or Polygon (object or text), within the vertex limit, valid."""
    geometry = parse_intersects(value, replace(limits, intersects_vertices=limits.series_vertices))
    if geometry is None or geometry.get("type") not in ("Point", "Polygon"):
        raise errors.InvalidRequest("geometry must be a GeoJSON Point or Polygon")
    if geometry["type"] == "Polygon":
        polygon = shape(geometry)
        if not polygon.is_valid or polygon.area == 0:
            raise errors.InvalidRequest("the polygon is not valid (self-intersecting or empty)")
    return geometry


def parse_series(params: dict[str, Any], limits: RequestLimits = LIMITS) -> tuple[SeriesQuery, str]:
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise errors.InvalidRequest(f"unknown parameter {unknown[0][:40]!r}")
    if params.get("geometry") is not None:
        geometry = parse_geometry(params["geometry"], limits)
    elif params.get("lon") is not None or params.get("lat") is not None:
        geometry = parse_point(params.get("lon"), params.get("lat"))
    else:
        raise errors.InvalidRequest("give lon and lat, or a geometry")
    bands = params.get("bands")
    if isinstance(bands, str) and len(bands) > 200 or isinstance(bands, list) and len(bands) > 20:
        raise errors.InvalidRequest("bands: at most the ten Sentinel-2 band names")
    if bands is not None and not isinstance(bands, str | list):
        raise errors.InvalidRequest("bands is a list of band names")
    query = SeriesQuery(
        geometry=geometry,
        datetime_range=parse_range(params.get("datetime"), limits),
        bands=parse_bands(bands),
        all_versions=parse_versions(params.get("versions")),
        max_products=limits.series_products,
        max_pixels=limits.series_pixels,
    )
    return query, parse_format(params.get("format"))


def series_response(catalog: Catalog, query: SeriesQuery, output: str) -> Response:
    result = time_series(catalog, query)
    headers = {"Cache-Control": "max-age=300"}
    if output == "csv":
        body = series_csv(result.observations, query.bands)
        return Response(200, CSV, body, headers=headers, compress=True)
    start, end = query.datetime_range
    described = {
        "geometry": query.geometry,
        "datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
        "versions": "all" if query.all_versions else "newest",
    }
    document = series_document(result.observations, query.bands, described)
    document["products"] = result.products
    body = json.dumps(document, separators=(",", ":"))
    return Response(200, JSON, body, headers=headers, compress=True)


def add_timeseries_routes(
    app: APIGatewayHttpResolver, catalog: Catalog, limits: RequestLimits = LIMITS
) -> APIGatewayHttpResolver:
    """Register `/timeseries` (GET and POST) on the STAC API's resolver, whose error handlers
    turn `InvalidRequest` into a 400 naming the limit."""

    @app.get("/timeseries")
    def series_get() -> Response:
        params = dict(app.current_event.query_string_parameters or {})
        return series_response(catalog, *parse_series(params, limits))

    @app.post("/timeseries")
    def series_post() -> Response:
        body = json_body(app.current_event, limits)
        if not isinstance(body, dict):
            raise errors.InvalidRequest("the body must be a JSON object")
        return series_response(catalog, *parse_series(body, limits))

    return app
