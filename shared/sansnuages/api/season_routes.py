"""The season plot's data: the snow-covered share of a tile or a small polygon per day of a
snow season, gap-filled and as observed (Sentinel-2 and Landsat-8 days told apart), as JSON or
CSV:

  GET  /seasons/curve?season=2018&tile=31TCH&format=csv
  POST /seasons/curve   {"season": 2018, "geometry": {GeoJSON Polygon}, "format": "json"}

A tile's curve was stored with its season (one small read); a polygon's is computed from the
snow maps' pixels under it, read by windows, within the request limits (`season_pixels` of
the 20 m grid, the time series' vertex limit).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from sansnuages import errors
from sansnuages.api.limits import LIMITS, RequestLimits
from sansnuages.api.stac import JSON, json_body
from sansnuages.api.timeseries_routes import CSV, parse_format, parse_geometry
from sansnuages.period import HydrologicalYear
from sansnuages.processing.season_curve import curve_csv
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.seasons import polygon_curve, tile_curve

PARAMETERS = frozenset({"season", "tile", "geometry", "format"})
_TILE = re.compile(r"^T?\d{1,2}[C-X][A-Z][A-V]$")


def parse_season(value: Any) -> HydrologicalYear:
    if value is None or value == "":
        raise errors.InvalidRequest("season is required: the year it ends in, e.g. 2018")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise errors.InvalidRequest("season is a year, e.g. 2018")
    return HydrologicalYear.parse(str(value)[:20])


def parse_tile(value: Any) -> str:
    if not isinstance(value, str) or not _TILE.match(value.strip().upper()):
        raise errors.InvalidRequest("tile is a Sentinel-2 tile name, e.g. 31TCH")
    return value.strip().upper().removeprefix("T")


def season_curve_response(
    catalog: Catalog,
    bucket: DataBucket,
    params: dict[str, Any],
    limits: RequestLimits = LIMITS,
) -> Response:
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise errors.InvalidRequest(f"unknown parameter {unknown[0][:40]!r}")
    year = parse_season(params.get("season"))
    output = parse_format(params.get("format"))
    if (params.get("tile") is None) == (params.get("geometry") is None):
        raise errors.InvalidRequest("give a tile or a geometry (a GeoJSON Polygon), one of them")
    if params.get("tile") is not None:
        document = tile_curve(catalog, bucket, year, parse_tile(params["tile"]))
    else:
        geometry = parse_geometry(params["geometry"], limits)
        if geometry["type"] != "Polygon":
            raise errors.InvalidRequest("geometry must be a GeoJSON Polygon")
        document = polygon_curve(catalog, year, geometry, limits.season_pixels)
    headers = {"Cache-Control": "max-age=300"}
    if output == "csv":
        return Response(200, CSV, curve_csv(document), headers=headers, compress=True)
    body = json.dumps(document, separators=(",", ":"))
    return Response(200, JSON, body, headers=headers, compress=True)


def add_season_routes(
    app: APIGatewayHttpResolver,
    catalog: Catalog,
    bucket: DataBucket,
    limits: RequestLimits = LIMITS,
) -> APIGatewayHttpResolver:
    """Register `/seasons/curve` (GET for a tile, POST for a polygon too)."""

    @app.get("/seasons/curve")
    def curve_get() -> Response:
        params = dict(app.current_event.query_string_parameters or {})
        return season_curve_response(catalog, bucket, params, limits)

    @app.post("/seasons/curve")
    def curve_post() -> Response:
        body = json_body(app.current_event, limits)
        if not isinstance(body, dict):
            raise errors.InvalidRequest("the body must be a JSON object")
        return season_curve_response(catalog, bucket, body, limits)

    return app
