"""The demo: the whole pipeline over Belgium for July 2018, on the embedded local AWS."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sansnuages import areas
from sansnuages.api.map_routes import viewer_url
from sansnuages.formats import grid
from sansnuages.layout import split_s3_href
from sansnuages.period import SynthesisPeriod
from sansnuages.stac.collections import L2A_REFLECTANCE, MOSAICS, SENTINEL2_L3A
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.local.scheduler import next_fire
from sansnuages.tools.progress import MONTHLY_SCHEDULE, describe_job, wait_for_job
from sansnuages.tools.simulate import simulate_month


def count_items(catalog: Catalog, collections: list[str]) -> int:
    return sum(1 for _ in catalog.iter_items(collections, page_size=1000))


def wait_for_ingest(
    runtime: LocalRuntime, catalog: Catalog, bucket: DataBucket, expected: int
) -> int:
    """Until every upload is indexed or quarantined and the ingest queue is idle."""
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
        time.sleep(1)
    print()
    return indexed


def run_demo(args: argparse.Namespace) -> int:
    from sansnuages.tools.foreground import default_template

    started = time.monotonic()
    period = SynthesisPeriod.parse(args.month)
    area = areas.area_geometry(args.area)
    tiles = grid.tiles_for_geometry(area.geometry)
    print(f"{area.name}: {len(tiles)} Sentinel-2 tiles ({', '.join(tiles)})")
    runtime = LocalRuntime(default_template(), Path.cwd()).start()
    try:
        settings = _settings(runtime)
        facts = runtime.facts()
        print(f"local AWS at {facts['endpoint_url']}, STAC API at {facts['stac_api_url']}")
        bucket, catalog = DataBucket(settings), Catalog(settings.catalog_table, settings=settings)
        with tempfile.TemporaryDirectory() as folder:
            products = simulate_month(
                tiles, period.year, period.month, Path(folder), resolution=args.resolution
            )
            print(
                f"simulated {len(products)} products at {args.resolution:g} m; uploading to incoming/"
            )
            for path in products:
                bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
        wait_for_ingest(runtime, catalog, bucket, len(products))
        schedule = next(s for s in runtime.schedules if s.name == MONTHLY_SCHEDULE)
        fired = next_fire(schedule.expression, period.end)  # its first run after the window
        print(
            f"firing schedule {schedule.name} ({schedule.expression}) as at {fired:%Y-%m-%d %H:%M}"
        )
        result = runtime.fire_schedule(schedule, fired)
        if not result.ok:
            print(f"planning failed: {result.error_type}: {result.error_message}")
            return 1
        job = wait_for_job(settings, result.payload["job_id"])
        print(describe_job(job, detail=True))
        _show_search(facts["stac_api_url"], area, period)
        viewer = None
        if job.state == JobState.DONE and job.mosaic_item:
            _download_mosaic(bucket, job.mosaic_item, args.out)
            viewer = viewer_url(facts["stac_api_url"], area.id, period.label)
        print(f"demo finished in {time.monotonic() - started:.0f} s")
        if viewer:
            print(f"the {area.name} mosaic of {period.label} in the map viewer: {viewer}")
        if not args.exit:
            print(f"STAC API at {facts['stac_api_url']}  (Ctrl-C to stop)", flush=True)
            from sansnuages.tools.foreground import wait_for_signal

            wait_for_signal()
        return 0 if job.state == JobState.DONE else 1
    finally:
        runtime.stop()


def _settings(runtime: LocalRuntime) -> Any:
    from sansnuages.tools.local.client import RuntimeClient

    return RuntimeClient(runtime.facts()).settings()


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
