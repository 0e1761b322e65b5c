"""A small month under a schedule of faults, with the queues played in this process.

The stages are called as their handlers call them; a crashed delivery comes back at once
(the local pump's back-off), the tile messages are all delivered twice, two plans of the month
start at once, and a crash is played once at each chosen named point (`stores/faults.py`), on
a message's first delivery only, so that no unit crashes on every delivery it gets. Used by
tests/integration/test_fault_month.py and bench/faults.py.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from sansnuages import layout
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.ingest import Ingestor
from sansnuages.stages.mosaic import Mosaicker
from sansnuages.stages.plan import JobRequest, plan_job
from sansnuages.stores import faults
from sansnuages.stores.aws import client
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import InjectedCrash
from sansnuages.stores.jobs import Job, JobStore
from sansnuages.stores.messages import TileTask
from sansnuages.tools.simulate import simulate_product

TILES = ("31UFS", "31UGS")
JOB_ID = "2018-07-BEL"
POINTS = (
    "ingest.after-publish",
    "jobs.after-tiles",
    "jobs.after-create",
    "plan.after-create",
    "plan.before-send",
    "plan.after-send",
    "composite.after-publish",
    "composite.after-finish-tile",
    "composite.before-mosaic-send",
    "composite.after-mosaic-send",
    "mosaic.after-plan",
    "mosaic.before-parts-send",
    "mosaic.after-parts-send",
    "mosaic.after-part",
)
MAX_DELIVERIES = 3
PART_PIXELS = 24
"""Small parts, so that the mosaic goes through the queue in parts."""


def month_products(folder: Path) -> list[Path]:
    """Two products on each of two Belgian tiles, at 1830 m (60 px a tile)."""
    dates = (
        (datetime(2018, 7, 9, 10, 56, tzinfo=UTC), "SENTINEL2A"),
        (datetime(2018, 7, 14, 10, 56, tzinfo=UTC), "SENTINEL2B"),
    )
    pairs = [(tile, when, platform) for tile in TILES for when, platform in dates]
    return [
        simulate_product(tile, when, platform, folder, resolution=1830, seed=seed)
        for seed, (tile, when, platform) in enumerate(pairs)
    ]


class Schedule:
    """Crash once at each chosen point; `armed` is off on a message's redelivery."""

    def __init__(self, points: set[str]) -> None:
        self.left = set(points)
        self.injected: list[str] = []
        self.armed = True

    @classmethod
    def random(cls, seed: int) -> Schedule:
        rng = random.Random(seed)
        return cls(set(rng.sample(POINTS, rng.randint(1, len(POINTS)))))

    def __call__(self, point: str) -> None:
        if self.armed and point in self.left:
            self.left.discard(point)
            self.injected.append(point)
            raise InjectedCrash(point)


@dataclass
class MonthRun:
    job: Job
    delivered: int
    seconds: float
    injected: list[str] = field(default_factory=list)


def _retrying(call: Any, tries: int = len(POINTS) + 2) -> Any:
    for _ in range(tries - 1):
        try:
            return call()
        except InjectedCrash:
            continue
    return call()


def pump(settings: Settings, schedule: Schedule | None) -> int:
    """Deliver the composite and mosaic queues until both are empty; returns the deliveries."""
    sqs = client("sqs", settings)
    compositor = TileCompositor.from_settings(settings)
    mosaicker = Mosaicker.from_settings(settings)
    mosaicker.part_pixels = PART_PIXELS
    delivered = 0
    duplicated: set[str] = set()
    for _ in range(400):
        busy = False
        for url in (settings.composite_queue_url, settings.mosaic_queue_url):
            response = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["ApproximateReceiveCount"]
            )
            for message in response.get("Messages", []):
                busy = True
                delivered += 1
                body = message["Body"]
                count = int(message["Attributes"]["ApproximateReceiveCount"])
                if schedule is not None:
                    schedule.armed = count == 1
                    if url == settings.composite_queue_url and body not in duplicated:
                        duplicated.add(body)
                        sqs.send_message(QueueUrl=url, MessageBody=body)  # delivered twice
                try:
                    if url == settings.composite_queue_url:
                        compositor.run(TileTask.from_message(body), count >= MAX_DELIVERIES)
                    else:
                        mosaicker.handle(body, count >= MAX_DELIVERIES)
                except InjectedCrash:
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                    continue
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not busy:
            return delivered
    raise RuntimeError("the queues did not empty after 400 rounds")


def run_month(settings: Settings, products: list[Path], schedule: Schedule | None) -> MonthRun:
    """Upload the products (again: a byte-identical re-upload), plan July 2018 over Belgium
    twice at once, and deliver every message; the job as it ends."""
    started = time.monotonic()
    faults.install(schedule)
    try:
        ingestor = Ingestor.from_settings(settings)
        for path in products:
            key = f"incoming/{path.name}"
            ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip")
            _retrying(lambda key=key: ingestor.ingest(key))
        request = JobRequest.from_event({"area": "Belgium", "month": "2018-07"})
        with ThreadPoolExecutor(2) as pool:  # two plans of the month at once
            list(pool.map(lambda _: _retrying(lambda: plan_job(request, settings)), range(2)))
        delivered = pump(settings, schedule)
    finally:
        faults.install(None)
    job = JobStore(settings).get(JOB_ID)
    if job is None:
        raise RuntimeError("no job was recorded")
    injected = list(schedule.injected) if schedule else []
    return MonthRun(job, delivered, time.monotonic() - started, injected)


def mosaic_pixels(settings: Settings, item_key: str) -> np.ndarray:
    href = DataBucket(settings).get_json(item_key)["assets"]["visual"]["href"]
    with gdal_env(settings), rasterio.open(layout.vsi_path(*layout.split_s3_href(href))) as src:
        return np.asarray(src.read())


def indexed_ids(settings: Settings, collection: str) -> list[str]:
    page = Catalog(settings.catalog_table, settings=settings).search(
        [collection], None, None, None, 100, None
    )
    return sorted(item["id"] for item in page.items)
