"""Plan a job: find the tiles with observations, record the job, fan out.

A job is a month's synthesis or a year's snow season over an area, on the same machinery: one
message per tile, the fan-in, the mosaic. Called by the monthly and yearly schedules (with the
time they fired and, for the yearly one, `"product": "snow-season"`) and by hand (with a
`month`, or a `season`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from aws_lambda_powertools import Logger
from shapely.geometry import shape

from sansnuages import areas
from sansnuages.errors import InvalidArea, InvalidRequest, NoInputs
from sansnuages.formats import grid
from sansnuages.period import (
    HydrologicalYear,
    SynthesisPeriod,
    latest_closed_period,
    latest_closed_season,
)
from sansnuages.settings import Settings
from sansnuages.stac.collections import L2A_REFLECTANCE, SNOW_L2B
from sansnuages.stores import aws
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.jobs import Job, JobStore
from sansnuages.stores.messages import BATCH, send_all
from sansnuages.stores.usage import Meter

logger = Logger(child=True)

SEARCH_PAGE = 500
SNOW_SEASON = "snow-season"
"""The `product` of a scheduled event that plans the latest snow season, not a month."""


@dataclass(frozen=True)
class JobRequest:
    period: SynthesisPeriod | HydrologicalYear
    area: str
    """A country name or code, or the GeoJSON Feature text of an inline polygon."""
    resolution: float | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any], lag_days: float = 0.0) -> JobRequest:
        """A manual request names a `month` (YYYY-MM) or a snow `season` (2018: the year that
        ends on 31 August 2018); a scheduled one gives the time it fired, and makes the latest
        month whose window closed `lag_days` before it, or with `"product": "snow-season"` the
        latest season whose inputs closed then.

        The area is `area` (a country name or code), `area_geojson` (a GeoJSON Polygon,
        MultiPolygon, Feature or FeatureCollection, as an object or its text; `area_name`
        names it) or `tiles` (a list of tile names), checked here so that a bad area is
        refused before anything starts."""
        area = request_area(event)
        resolution = event.get("resolution")
        return cls(_period(event, lag_days), area, float(resolution) if resolution else None)


def _period(event: dict[str, Any], lag_days: float) -> SynthesisPeriod | HydrologicalYear:
    if event.get("month") and event.get("season"):
        raise InvalidRequest("give a 'month' or a 'season', not both")
    if event.get("month"):
        return SynthesisPeriod.parse(str(event["month"]))
    if event.get("season"):
        return HydrologicalYear.parse(str(event["season"]))
    fired = event.get("scheduled_time") or event.get("time")
    if not fired:
        raise InvalidRequest(
            "a job needs a 'month' (YYYY-MM), a 'season' (a year) or a 'scheduled_time'"
        )
    try:
        when = datetime.fromisoformat(str(fired).replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidRequest(f"unreadable schedule time {str(fired)[:40]!r}") from error
    if when.tzinfo is None:
        raise InvalidRequest("a schedule time must carry its time zone (e.g. Z)")
    if event.get("product") == SNOW_SEASON:
        return latest_closed_season(when, lag_days=lag_days)
    return latest_closed_period(when, lag_days=lag_days)


def request_area(event: dict[str, Any]) -> str:
    """The area spec of a plan event: a country, or an inline polygon (or a tile list's
    squares) as the text the job record keeps (`areas.geojson_spec`)."""
    area, polygon, tiles = event.get("area"), event.get("area_geojson"), event.get("tiles")
    if sum(1 for given in (area, polygon, tiles) if given) > 1:
        raise InvalidRequest(
            "give 'area' (a country), 'area_geojson' (a polygon) or 'tiles' (a list), not both"
        )
    if tiles:
        return areas.geojson_spec(tiles_area(tiles, event.get("area_name")))
    if isinstance(area, dict) or (isinstance(area, str) and area.lstrip().startswith("{")):
        polygon, area = area, None  # GeoJSON under 'area' is taken as meant
    if polygon is not None:
        if not isinstance(polygon, dict | str):
            raise InvalidRequest("'area_geojson' must be a GeoJSON object or its JSON text")
        name = event.get("area_name")
        return areas.geojson_spec(areas.area_from_geojson(polygon, str(name) if name else None))
    if not area or not isinstance(area, str):
        raise InvalidRequest(
            "a job needs an 'area' (a country name or code) or an 'area_geojson' (a polygon)"
        )
    return area


def tiles_area(tiles: Any, name: Any = None) -> areas.Area:
    """An area made of whole tiles (a list, or a comma-separated text): the union of their
    squares, which a job over it takes and no other tile."""
    names = tiles.split(",") if isinstance(tiles, str) else tiles
    if not isinstance(names, list) or not 0 < len(names) <= areas.MAX_AREA_TILES:
        raise InvalidRequest(f"'tiles' must list 1 to {areas.MAX_AREA_TILES} tile names")
    try:
        squares = {str(n).strip().upper().removeprefix("T"): grid.tile(str(n)) for n in names}
    except ValueError as error:
        raise InvalidArea(f"not a tile list: {error}") from error
    union = shapely.union_all([s.footprint_lonlat(points_per_edge=4) for s in squares.values()])
    label = str(name) if name else "tiles " + ", ".join(sorted(squares)[:6])
    label += "" if name or len(squares) <= 6 else f" and {len(squares) - 6} more"
    return areas.area_from_geojson(
        {
            "type": "Feature",
            "properties": {"name": label, "tiles": sorted(squares)},
            "geometry": shapely.geometry.mapping(union),
        }
    )


def schedule_lag_days(environ: Mapping[str, str]) -> float:
    """`SCHEDULE_LAG_DAYS` (the template's ScheduleLagDays): days between the close of a
    window and the run that synthesises it."""
    text = environ.get("SCHEDULE_LAG_DAYS", "0") or "0"
    try:
        return float(text)
    except ValueError as error:
        raise InvalidRequest(f"SCHEDULE_LAG_DAYS must be a number of days, not {text!r}") from error


def inputs_of(period: SynthesisPeriod | HydrologicalYear) -> tuple[list[str], datetime, datetime]:
    """The collections and the time range a job's tiles read: L2A reflectance over a month's
    window, snow maps over a season and its margins."""
    if isinstance(period, HydrologicalYear):
        first = datetime.combine(
            period.first_input, datetime.min.time(), period.start_datetime.tzinfo
        )
        last = datetime.combine(period.last_input, datetime.max.time(), period.end_datetime.tzinfo)
        return [SNOW_L2B], first, last
    return list(L2A_REFLECTANCE), period.start, period.end


def tiles_with_observations(
    catalog: Catalog, period: SynthesisPeriod | HydrologicalYear, area: areas.Area
) -> list[str]:
    """Tiles whose products in the period touch the area (and that the area lists, when it is
    a tile list), from the catalog alone."""
    collections, start, end = inputs_of(period)
    tiles: set[str] = set()
    for item in catalog.iter_items(
        collections,
        bbox=tuple(area.geometry.bounds),
        datetime_range=(start, end),
        page_size=SEARCH_PAGE,
    ):
        code = item.get("properties", {}).get("grid:code", "")
        if code and shape(item["geometry"]).intersects(area.geometry):
            tiles.add(code.removeprefix("MGRS-"))
    if area.tiles:
        tiles &= set(area.tiles)
    return sorted(tiles)


def plan_job(request: JobRequest, settings: Settings) -> tuple[Job, bool]:
    """Record the job and send its tile messages. A retry (or a second plan of an unfinished
    job) sends the messages that the job does not record as sent, and only those."""
    meter = Meter.start()
    area = areas.area_geometry(request.area)
    catalog = Catalog(settings.catalog_table, settings=settings)
    tiles = tiles_with_observations(catalog, request.period, area)
    if not tiles:
        _, start, end = inputs_of(request.period)
        raise NoInputs(f"no product over {area.name} between {start:%Y-%m-%d} and {end:%Y-%m-%d}")
    store = JobStore(settings)
    job, started = store.create(request.period.label, request.area, area.id, tiles)
    checkpoint("plan.after-create")
    try:
        sent = send_tile_messages(job, store, settings)
    finally:
        meter.close()
        store.add_usage(job.job_id, meter.total())
    logger.info(
        "planned job",
        extra={"job": job.job_id, "tiles": len(job.tiles), "started": started, "sent": sent},
    )
    return job, started


def send_tile_messages(job: Job, store: JobStore, settings: Settings, sqs: Any = None) -> int:
    """Send the tile messages after the `sent` count of the job (tile order), ten at a time,
    recording the count after each batch; returns how many were sent."""
    if job.finished:
        return 0
    sqs = sqs or aws.client("sqs", settings)
    done = job.sent
    for start in range(done, len(job.tiles), BATCH):
        tasks = [job.task(status.tile) for status in job.tiles[start : start + BATCH]]
        checkpoint("plan.before-send")
        send_all(sqs, settings.composite_queue_url, [task.body() for task in tasks])
        checkpoint("plan.after-send")
        if not store.record_sent(job.job_id, start, start + len(tasks)):
            # another plan of the job records the same batches: it carries on, this one stops
            logger.info("tiles sent by another plan", extra={"job": job.job_id})
            return start + len(tasks) - done
    return len(job.tiles) - done
