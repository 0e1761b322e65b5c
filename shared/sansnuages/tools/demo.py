"""The demo: the whole pipeline over Belgium for July 2018, on the embedded local AWS."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sansnuages import areas
from sansnuages.api.map_routes import viewer_url
from sansnuages.formats import grid
from sansnuages.layout import split_s3_href
from sansnuages.period import SynthesisPeriod
from sansnuages.settings import Settings
from sansnuages.stac.collections import L2A_REFLECTANCE, MOSAICS, SENTINEL2_L3A
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import Job, JobState
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.local.scheduler import next_fire
from sansnuages.tools.progress import MONTHLY_SCHEDULE, describe_job, wait_for_job
from sansnuages.tools.simulate import MonthPlan, iter_month
from sansnuages.tools.stage_times import (
    INGEST,
    SIMULATION,
    STARTUP,
    StageClock,
    steps_line,
    tree_cpu_seconds,
)

SIMULATION_PROCESSES = os.cpu_count() or 1
"""Processes that simulate products: one per core."""
UPLOAD_THREADS = 4
"""Uploads at once: each is a few blocking requests to the local S3, so threads overlap them."""


def count_items(catalog: Catalog, collections: list[str]) -> int:
    return sum(1 for _ in catalog.iter_items(collections, page_size=1000))


def wait_for_ingest(
    runtime: LocalRuntime, catalog: Catalog, bucket: DataBucket, expected: int
) -> int:
    """Until every upload is indexed or quarantined and the ingest queue is idle (three
    looks in a row, half a second apart)."""
    quiet = 0
    while quiet < 3:
        status = runtime.status()
        queue = status["queues"]["IngestQueue"]
        indexed = count_items(catalog, list(L2A_REFLECTANCE))
        quarantined = len(
            [k for k in bucket.list_keys("quarantine/") if k.endswith(".reason.json")]
        )
        print(f"\ringested {indexed}/{expected}, quarantined {quarantined}", end="", flush=True)
        idle = queue["visible"] == 0 and queue["in_flight"] == 0 and not status["busy"]
        quiet = quiet + 1 if idle and indexed + quarantined >= expected else 0
        time.sleep(0.5)
    print()
    return indexed


def simulate_and_upload(
    bucket: DataBucket,
    tiles: list[str],
    period: SynthesisPeriod,
    folder: Path,
    resolution: float,
    seed: int = 0,
    processes: int = SIMULATION_PROCESSES,
) -> int:
    """Simulate the month's products in `processes` processes and upload each to `incoming/`
    as soon as it is written (in threads, through boto3 as any producer would; each upload
    starts its ingest), so that simulation, upload and ingest overlap. Returns the count."""
    uploaded = 0
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload") as uploads:
        pending = [
            uploads.submit(_upload, bucket, path)
            for path in iter_month(
                MonthPlan(tuple(tiles), period.year, period.month, resolution, seed=seed),
                folder,
                processes,
            )
        ]
        for done in pending:
            done.result()
            uploaded += 1
    return uploaded


def _upload(bucket: DataBucket, path: Path) -> None:
    bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
    path.unlink()


@dataclass
class MonthRun:
    """A month run on a started local runtime: its products, the job, the stages' times."""

    runtime: LocalRuntime
    settings: Settings
    clock: StageClock
    products: int = 0
    job: Job | None = None
    planning_error: str | None = None


def run_month(
    runtime: LocalRuntime,
    clock: StageClock,
    tiles: list[str],
    period: SynthesisPeriod,
    resolution: float,
    seed: int = 0,
    processes: int = SIMULATION_PROCESSES,
) -> MonthRun:
    """Simulate and upload the month's products, wait for their ingest, fire the monthly
    schedule as at its first run after the month's window, and wait for the job: what the
    demo and `bench/pipeline.py` both run, each stage timed on `clock`."""
    settings = RuntimeClient(runtime.facts()).settings()
    run = MonthRun(runtime, settings, clock)
    bucket, catalog = DataBucket(settings), Catalog(settings.catalog_table, settings=settings)
    with tempfile.TemporaryDirectory() as folder, clock.stage(SIMULATION):
        run.products = simulate_and_upload(
            bucket, tiles, period, Path(folder), resolution, seed, processes
        )
    print(f"simulated {run.products} products at {resolution:g} m and uploaded them to incoming/")
    with clock.stage(INGEST):
        wait_for_ingest(runtime, catalog, bucket, run.products)
    schedule = next(s for s in runtime.schedules if s.name == MONTHLY_SCHEDULE)
    fired = next_fire(schedule.expression, period.end)  # its first run after the window
    print(f"firing schedule {schedule.name} ({schedule.expression}) as at {fired:%Y-%m-%d %H:%M}")
    fired_at, cpu = time.time(), tree_cpu_seconds()
    result = runtime.fire_schedule(schedule, fired)
    if not result.ok:
        run.planning_error = f"{result.error_type}: {result.error_message}"
        return run
    run.job = wait_for_job(settings, result.payload["job_id"])
    clock.job(run.job, fired_at, time.time(), tree_cpu_seconds() - cpu)
    return run


def run_demo(args: argparse.Namespace) -> int:
    from sansnuages.tools.foreground import default_template

    clock = StageClock()
    period = SynthesisPeriod.parse(args.month)
    area = areas.area_geometry(args.area)
    tiles = grid.tiles_for_geometry(area.geometry)
    print(f"{area.name}: {len(tiles)} Sentinel-2 tiles ({', '.join(tiles)})")
    with clock.stage(STARTUP):
        runtime = LocalRuntime(default_template(), Path.cwd()).start()
    try:
        facts = runtime.facts()
        print(f"local AWS at {facts['endpoint_url']}, STAC API at {facts['stac_api_url']}")
        print(f"started in {clock.seconds(STARTUP):.1f} s ({steps_line(runtime.startup)})")
        run = run_month(runtime, clock, tiles, period, args.resolution)
        if run.job is None:
            print(f"planning failed: {run.planning_error}")
            return 1
        job = run.job
        print(describe_job(job, detail=True))
        _show_search(facts["stac_api_url"], area, period)
        viewer = None
        if job.state == JobState.DONE and job.mosaic_item:
            _download_mosaic(DataBucket(run.settings), job.mosaic_item, args.out)
            viewer = viewer_url(facts["stac_api_url"], area.id, period.label)
        loads = ", ".join(f"{load:.1f}" for load in os.getloadavg())
        print(
            f"demo finished in {time.time() - clock.started:.0f} s (load average over 1, 5"
            f" and 15 min: {loads}); its stages:"
        )
        print(clock.table())
        if viewer:
            print(f"the {area.name} mosaic of {period.label} in the map viewer: {viewer}")
        if not args.exit:
            print(f"STAC API at {facts['stac_api_url']}  (Ctrl-C to stop)", flush=True)
            from sansnuages.tools.foreground import wait_for_signal

            wait_for_signal()
        return 0 if job.state == JobState.DONE else 1
    finally:
        runtime.stop()


def _show_search(api_url: str, area: areas.Area, period: SynthesisPeriod) -> None:
    from pystac_client import Client

    client = Client.open(api_url)
    print(f"pystac-client search of {api_url}:")
    for collection in (*L2A_REFLECTANCE, SENTINEL2_L3A, MOSAICS):
        search = client.search(
            collections=[collection], bbox=area.geometry.bounds, datetime=period.label, limit=100
        )
        items = list(search.items())
        print(
            f"  {collection:<14} {len(items):>4} items" + (f", e.g. {items[0].id}" if items else "")
        )


def _download_mosaic(bucket: DataBucket, item_key: str, out: Path) -> None:
    item = bucket.get_json(item_key)
    out.mkdir(parents=True, exist_ok=True)
    for key in ("visual", "thumbnail"):
        _, object_key = split_s3_href(item["assets"][key]["href"])
        target = out / object_key.rsplit("/", 1)[-1]
        bucket.client.download_file(bucket.name, object_key, str(target))
        print(f"wrote {target}")
