"""The season plot's data: the snow-covered share of a tile or a small polygon per day of a
snow season, gap-filled and as observed (Sentinel-2 and Landsat-8 days told apart), as JSON or
CSV:

  GET  /seasons/curve?season=2018&tile=31TCH&format=csv
  GET  /seasons/curve?season=2018&lon=1.55&lat=42.55      (the pixel under a point)
  POST /seasons/curve   {"season": 2018, "geometry": {GeoJSON Point or Polygon}}

A tile's curve was stored with its season (one small read); a point's or a polygon's is
computed from the snow maps' pixels under it, read by windows, within the request limits
(`season_pixels` of the 20 m grid, the time series' vertex limit).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from sansnuages import errors
from sansnuages.api.limits import LIMITS, RequestLimits
from sansnuages.api.stac import JSON, json_body
from sansnuages.api.timeseries_routes import CSV, parse_format, parse_geometry, parse_point
from sansnuages.period import HydrologicalYear
from sansnuages.processing.season_curve import curve_csv
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.seasons import polygon_curve, tile_curve

PARAMETERS = frozenset({"season", "tile", "geometry", "lon", "lat", "format"})
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
    point = params.get("lon") is not None or params.get("lat") is not None
    given = [params.get("tile") is not None, params.get("geometry") is not None, point]
    if sum(given) != 1:
        raise errors.InvalidRequest("give one of a tile, a geometry, or lon and lat")
    if params.get("tile") is not None:
        document = tile_curve(catalog, bucket, year, parse_tile(params["tile"]))
    else:
        geometry = (
            parse_point(params.get("lon"), params.get("lat"))
            if point
            else parse_geometry(params["geometry"], limits)
        )
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
