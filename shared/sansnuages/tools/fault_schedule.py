"""A small month under a schedule of faults, with the queues played in this process.

The stages are called as their handlers call them. A failed delivery comes back at once (the
local pump's back-off) and reaches the dead-letter queue after the queue's maxReceiveCount, as
on AWS. Every schedule delivers each tile message twice and starts two plans of the month at
once; a schedule may also:

- crash once at each of a set of named points (`stores/faults.py`), on a message's first
  delivery only, so that no unit crashes on every delivery it gets;
- fail a share of the S3 and DynamoDB requests as throttled, reset or timed out
  (`faults.Transport`: botocore retries them, the queue what they leave), and the same share
  of GDAL's ranged reads of the bucket as throttled (the local S3 server's `read_faults`
  switch: GDAL retries them);
- deliver the messages of each receive out of order;
- put poison in the queues: messages that are no tile task or mosaic, and a tile task of a
  job nobody planned;
- upload one of a tile's products again while the tile is composited: the same bytes, or
  other valid bytes (a corrected product under the same id).

Used by tests/integration/test_fault_month.py and bench/faults.py.
"""

from __future__ import annotations

import json
import random
import threading
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
from sansnuages.stores.faults import InjectedCrash, Transport
from sansnuages.stores.jobs import Job, JobStore
from sansnuages.stores.messages import TileTask
from sansnuages.tools.local.read_faults import set_read_faults
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
PART_PIXELS = 24
"""Small parts, so that the mosaic goes through the queue in parts."""
REUPLOAD_POINT = "composite.after-publish"
"""Where a tile is being composited when its product is uploaded again: its synthesis is
written, the tile not yet finished."""
UNPLANNED_JOB = "2018-07-XXX"
POISON_TILE = (
    '{"v": 99, "job_id": "x"}',
    "not a message",
    json.dumps(
        {"v": 1, "job_id": UNPLANNED_JOB, "tile": TILES[0], "period": "2018-07", "version": 1}
    ),
)
POISON_MOSAIC = ("{}", '{"v": 1, "plan": "jobs/none/plan.json", "part": 0}')
"""What poison a schedule puts in each queue: no message of its kind, an unknown version,
and messages naming units that do not exist."""
POISON_DEAD_LETTERS = (*POISON_TILE, *POISON_MOSAIC)
"""Where the poison ends: none names a unit to fail, so each goes to its dead-letter queue
after its deliveries, for an operator to see, and changes nothing."""
DATES = (
    (datetime(2018, 7, 9, 10, 56, tzinfo=UTC), "SENTINEL2A"),
    (datetime(2018, 7, 14, 10, 56, tzinfo=UTC), "SENTINEL2B"),
)


def month_products(folder: Path, seed_offset: int = 0) -> list[Path]:
    """Two products on each of two Belgian tiles, at 1830 m (60 px a tile); another
    `seed_offset` gives the same products (the same ids) with other pixels."""
    pairs = [(tile, when, platform) for tile in TILES for when, platform in DATES]
    return [
        simulate_product(tile, when, platform, folder, resolution=1830, seed=seed + seed_offset)
        for seed, (tile, when, platform) in enumerate(pairs)
    ]


@dataclass
class Schedule:
    """The faults of one run (see the module's docstring). Called at every named point."""

    points: set[str] = field(default_factory=set)
    throttle: float = 0.0
    out_of_order: bool = False
    poison: bool = False
    reupload: Path | None = None
    """A product to upload (and ingest) while its tile is composited."""
    seed: int = 0
    injected: list[str] = field(default_factory=list)
    armed: bool = True
    reuploads: list[threading.Thread] = field(default_factory=list)
    transport: Transport | None = None
    reads_failed: int = 0

    def __post_init__(self) -> None:
        self.left = set(self.points)
        self.lock = threading.Lock()
        if self.throttle:
            self.transport = Transport(self.throttle, self.seed)

    @classmethod
    def random(cls, seed: int, reupload: Path | None = None) -> Schedule:
        """Random crash points, a throttled share of requests (none, 1 % or 3 %), out-of-order
        deliveries and poison or not, and the `reupload` half of the time."""
        rng = random.Random(seed)
        return cls(
            set(rng.sample(POINTS, rng.randint(1, len(POINTS)))),
            throttle=rng.choice((0.0, 0.01, 0.03)),
            out_of_order=rng.random() < 0.5,
            poison=rng.random() < 0.5,
            reupload=reupload if rng.random() < 0.5 else None,
            seed=seed,
        )

    def __call__(self, point: str) -> None:
        if point == REUPLOAD_POINT and self.reupload is not None and not self.reuploads:
            self.reuploads.append(self._start_reupload())
        with self.lock:
            if not (self.armed and point in self.left):
                return
            self.left.discard(point)
            self.injected.append(point)
        raise InjectedCrash(point)

    def _start_reupload(self) -> threading.Thread:
        path = self.reupload
        assert path is not None
        thread = threading.Thread(target=lambda: self.on_reupload(path), daemon=True)
        thread.start()
        return thread

    on_reupload: Any = None
    """Set by `run_month`: uploads and ingests a path."""

    @property
    def faults(self) -> int:
        """Faults injected: crashes, failed requests, poison messages, re-uploads."""
        requests = (self.transport.injected if self.transport else 0) + self.reads_failed
        poison = len(POISON_TILE) + len(POISON_MOSAIC) if self.poison else 0
        return len(self.injected) + requests + poison + len(self.reuploads)


@dataclass
class MonthRun:
    job: Job
    delivered: int
    seconds: float
    injected: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)


def _retrying(call: Any, tries: int = len(POINTS) + 4) -> Any:
    """`call` until it returns, as a queue delivers a message again after a failure."""
    for _ in range(tries - 1):
        try:
            return call()
        except Exception:  # noqa: BLE001, S112 - a failed delivery, whatever failed
            continue
    return call()


def max_receive_count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    return int(json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"])


def dead_letter_url(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    arn = json.loads(attributes["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
    return str(sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"])


def pump(settings: Settings, schedule: Schedule | None) -> int:
    """Deliver the composite and mosaic queues until both are empty; returns the deliveries.
    A delivery that raises is made visible again at once; the queue moves a message to its
    dead-letter queue after its maxReceiveCount."""
    sqs = client("sqs", settings)
    compositor = TileCompositor.from_settings(settings)
    mosaicker = Mosaicker.from_settings(settings)
    mosaicker.part_pixels = PART_PIXELS
    urls = (settings.composite_queue_url, settings.mosaic_queue_url)
    last = {url: max_receive_count(sqs, url) for url in urls}
    rng = random.Random(schedule.seed if schedule else 0)
    delivered = 0
    duplicated: set[str] = set()
    for _ in range(400):
        busy = False
        for url in urls:
            response = sqs.receive_message(  # SQS is not faulted: the pump plays the queue
                QueueUrl=url,
                MaxNumberOfMessages=10 if schedule and schedule.out_of_order else 1,
                AttributeNames=["ApproximateReceiveCount"],
            )
            messages = response.get("Messages", [])
            if schedule is not None and schedule.out_of_order:
                rng.shuffle(messages)
            for message in messages:
                busy = True
                delivered += 1
                body = message["Body"]
                count = int(message["Attributes"]["ApproximateReceiveCount"])
                if schedule is not None:
                    schedule.armed = count == 1
                    if url == settings.composite_queue_url and body not in duplicated:
                        duplicated.add(body)
                        sqs.send_message(QueueUrl=url, MessageBody=body)
                try:
                    if url == settings.composite_queue_url:
                        compositor.run(TileTask.from_message(body), count >= last[url])
                    else:
                        mosaicker.handle(body, count >= last[url])
                except Exception:  # noqa: BLE001 - a failed delivery: the queue retries
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                    continue
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not busy:
            return delivered
    raise RuntimeError("the queues did not empty after 400 rounds")


def dead_letters(settings: Settings) -> list[str]:
    """The bodies in the composite and mosaic queues' dead-letter queues (left there)."""
    sqs = client("sqs", settings)
    bodies: list[str] = []
    for url in (settings.composite_queue_url, settings.mosaic_queue_url):
        dlq = dead_letter_url(sqs, url)
        response = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0)
        bodies.extend(m["Body"] for m in response.get("Messages", []))
    return bodies


def _poison(settings: Settings) -> None:
    sqs = client("sqs", settings)
    for body in POISON_TILE:
        sqs.send_message(QueueUrl=settings.composite_queue_url, MessageBody=body)
    for body in POISON_MOSAIC:
        sqs.send_message(QueueUrl=settings.mosaic_queue_url, MessageBody=body)


def _upload_and_ingest(ingestor: Ingestor, path: Path) -> None:
    key = f"incoming/{path.name}"
    _retrying(lambda: ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip"))
    _retrying(lambda: ingestor.ingest(key))


def run_month(settings: Settings, products: list[Path], schedule: Schedule | None) -> MonthRun:
    """Upload the products (again: a byte-identical re-upload), plan July 2018 over Belgium
    twice at once, and deliver every message; the job as it ends."""
    started = time.monotonic()
    faults.install(schedule)
    faults.install_transport(schedule.transport if schedule else None)
    if schedule is not None and schedule.throttle and settings.endpoint_url:
        set_read_faults(
            settings.endpoint_url, settings.data_bucket, schedule.throttle, schedule.seed
        )
    try:
        ingestor = Ingestor.from_settings(settings)
        if schedule is not None:
            schedule.on_reupload = lambda path: _upload_and_ingest(ingestor, path)
        for path in products:
            _upload_and_ingest(ingestor, path)
        if schedule is not None and schedule.poison:
            _poison(settings)
        request = JobRequest.from_event({"area": "Belgium", "month": "2018-07"})
        with ThreadPoolExecutor(2) as pool:  # two plans of the month at once
            list(pool.map(lambda _: _retrying(lambda: plan_job(request, settings)), range(2)))
        delivered = pump(settings, schedule)
        for thread in schedule.reuploads if schedule else []:
            thread.join()
    finally:
        faults.install(None)
        faults.install_transport(None)
        if schedule is not None and schedule.throttle and settings.endpoint_url:
            state = set_read_faults(settings.endpoint_url, None, 0.0)
            schedule.reads_failed = int(state["failed"])
    job = JobStore(settings).get(JOB_ID)
    if job is None:
        raise RuntimeError("no job was recorded")
    injected = list(schedule.injected) if schedule else []
    return MonthRun(job, delivered, time.monotonic() - started, injected, dead_letters(settings))


def mosaic_pixels(settings: Settings, item_key: str) -> np.ndarray:
    href = DataBucket(settings).get_json(item_key)["assets"]["visual"]["href"]
    with gdal_env(settings), rasterio.open(layout.vsi_path(*layout.split_s3_href(href))) as src:
        return np.asarray(src.read())


def indexed_ids(settings: Settings, collection: str) -> list[str]:
    page = Catalog(settings.catalog_table, settings=settings).search(
        [collection], None, None, None, 100, None
    )
    return sorted(item["id"] for item in page.items)
