"""Production statistics, as JSON or CSV:

  GET /stats/production?from=2018-07-01&to=2018-07-31&collection=sentinel2-l2a&format=csv

Daily counts by platform of the products acquired (those over 90 % cloud apart) and of the
products ingested and uploads quarantined, with each month's average of daily acquisitions.
Counters kept at ingest in the catalog table: two Queries whatever the catalog's size.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from sansnuages import errors
from sansnuages.api.limits import LIMITS, RequestLimits, refuse
from sansnuages.api.stac import JSON
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.catalog.stats import PRODUCT_COLLECTIONS, production_csv, production_stats

PARAMETERS = frozenset({"from", "to", "collection", "format"})
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: Any, name: str) -> date:
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise errors.InvalidRequest(f"{name} must be a day, yyyy-mm-dd")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise errors.InvalidRequest(f"{name} is not a day of the calendar") from exc


def parse_stats(
    params: dict[str, Any], limits: RequestLimits = LIMITS
) -> tuple[date, date, list[str] | None, str]:
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise errors.InvalidRequest(f"unknown parameter {unknown[0][:40]!r}")
    start, end = parse_day(params.get("from"), "from"), parse_day(params.get("to"), "to")
    if start > end:
        raise errors.InvalidRequest("from is after to")
    days = (end - start).days + 1
    if days > limits.stats_days:
        raise refuse("the range of days", limits.stats_days, "days", days)
    collections = None
    if params.get("collection"):
        collections = [c.strip() for c in str(params["collection"]).split(",")]
        for collection in collections:
            if collection not in PRODUCT_COLLECTIONS:
                raise errors.InvalidRequest(
                    f"collection is one of {', '.join(sorted(PRODUCT_COLLECTIONS))}"
                )
    output = params.get("format") or "json"
    if output not in ("json", "csv"):
        raise errors.InvalidRequest("format is json or csv")
    return start, end, collections, output


def add_stats_routes(
    app: APIGatewayHttpResolver, catalog: Catalog, limits: RequestLimits = LIMITS
) -> APIGatewayHttpResolver:
    """Register `/stats/production` on the STAC API's resolver."""

    @app.get("/stats/production")
    def production() -> Response:
        params = dict(app.current_event.query_string_parameters or {})
        start, end, collections, output = parse_stats(params, limits)
        document = production_stats(catalog, start, end, collections)
        headers = {"Cache-Control": "max-age=60"}
        if output == "csv":
            return Response(200, "text/csv", production_csv(document), headers, compress=True)
        body = json.dumps(document, separators=(",", ":"))
        return Response(200, JSON, body, headers=headers, compress=True)

    return app
