"""Plan a monthly synthesis job: find the tiles with observations, record the job, fan out.

Called by the monthly schedule (with the time it fired) and by hand (with a month).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from shapely.geometry import shape

from sansnuages import areas
from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.period import SynthesisPeriod, latest_closed_period
from sansnuages.settings import Settings
from sansnuages.stac.collections import L2A_REFLECTANCE
from sansnuages.stores import aws
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.jobs import Job, JobStore
from sansnuages.stores.messages import BATCH, TileTask, send_all

logger = Logger(child=True)

SEARCH_PAGE = 500


@dataclass(frozen=True)
class JobRequest:
    period: SynthesisPeriod
    area: str
    """A country name or code, or the GeoJSON Feature text of an inline polygon."""
    resolution: float | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any], lag_days: float = 0.0) -> JobRequest:
        """A manual request names a month; a scheduled one gives the time it fired, and makes
        the latest month whose window closed `lag_days` before it.

        The area is `area` (a country name or code) or `area_geojson` (a GeoJSON Polygon,
        MultiPolygon, Feature or FeatureCollection, as an object or its text; `area_name`
        names it), checked here so that a bad polygon is refused before anything starts."""
        area = request_area(event)
        if event.get("month"):
            period = SynthesisPeriod.parse(str(event["month"]))
        elif event.get("scheduled_time") or event.get("time"):
            fired = str(event.get("scheduled_time") or event.get("time"))
            try:
                when = datetime.fromisoformat(fired.replace("Z", "+00:00"))
            except ValueError as error:
                raise InvalidRequest(f"unreadable schedule time {fired!r}") from error
            period = latest_closed_period(when, lag_days=lag_days)
        else:
            raise InvalidRequest("a job needs a 'month' (YYYY-MM) or a 'scheduled_time'")
        resolution = event.get("resolution")
        return cls(period, area, float(resolution) if resolution else None)


def request_area(event: dict[str, Any]) -> str:
    """The area spec of a plan event: a country, or an inline polygon as the text the job
    record keeps (`areas.geojson_spec`)."""
    area, polygon = event.get("area"), event.get("area_geojson")
    if polygon is not None and area:
        raise InvalidRequest("give 'area' (a country) or 'area_geojson' (a polygon), not both")
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


def schedule_lag_days(environ: Mapping[str, str]) -> float:
    """`SCHEDULE_LAG_DAYS` (the template's ScheduleLagDays): days between the close of a
    window and the run that synthesises it."""
    text = environ.get("SCHEDULE_LAG_DAYS", "0") or "0"
    try:
        return float(text)
    except ValueError as error:
        raise InvalidRequest(f"SCHEDULE_LAG_DAYS must be a number of days, not {text!r}") from error


def tiles_with_observations(
    catalog: Catalog, period: SynthesisPeriod, area: areas.Area
) -> list[str]:
    """Tiles whose products in the window touch the area, from the catalog alone."""
    tiles: set[str] = set()
    for item in catalog.iter_items(
        list(L2A_REFLECTANCE),
        bbox=tuple(area.geometry.bounds),
        datetime_range=(period.start, period.end),
        page_size=SEARCH_PAGE,
    ):
        code = item.get("properties", {}).get("grid:code", "")
        if code and shape(item["geometry"]).intersects(area.geometry):
            tiles.add(code.removeprefix("MGRS-"))
    return sorted(tiles)


def plan_job(request: JobRequest, settings: Settings) -> tuple[Job, bool]:
    """Record the job and send its tile messages. A retry (or a second plan of an unfinished
    job) sends the messages that the job does not record as sent, and only those."""
    area = areas.area_geometry(request.area)
    catalog = Catalog(settings.catalog_table, settings=settings)
    tiles = tiles_with_observations(catalog, request.period, area)
    if not tiles:
        raise NoInputs(
            f"no product over {area.name} between {request.period.start:%Y-%m-%d} and {request.period.end:%Y-%m-%d}"
        )
    store = JobStore(settings)
    job, started = store.create(request.period.label, request.area, area.id, tiles)
    checkpoint("plan.after-create")
    sent = send_tile_messages(job, store, settings)
    logger.info(
        "planned job",
        extra={"job": job.job_id, "tiles": len(job.tiles), "started": started, "sent": sent},
    )
    return job, started


def send_tile_messages(job: Job, store: JobStore, settings: Settings) -> int:
    """Send the tile messages after the `sent` count of the job (tile order), ten at a time,
    recording the count after each batch; returns how many were sent."""
    if job.finished:
        return 0
    sqs = aws.client("sqs", settings)
    done = job.sent
    for start in range(done, len(job.tiles), BATCH):
        tasks = [
            TileTask(job.job_id, status.tile, SynthesisPeriod.parse(job.month), job.run - 1)
            for status in job.tiles[start : start + BATCH]
        ]
        checkpoint("plan.before-send")
        send_all(sqs, settings.composite_queue_url, [task.body() for task in tasks])
        checkpoint("plan.after-send")
        if not store.record_sent(job.job_id, start, start + len(tasks)):
            # another plan of the job records the same batches: it carries on, this one stops
            logger.info("tiles sent by another plan", extra={"job": job.job_id})
            return start + len(tasks) - done
    return len(job.tiles) - done
