"""A small month under a schedule of faults converges to the month without faults.

Two Belgian tiles, two products each, tiny pixels (`tools/fault_schedule.py`): a crashed
delivery comes back, the tile messages are all delivered twice, two plans start at once, the
uploads are uploaded again, a crash is played once at each of a random half of the named
points, 2 % of the S3 and DynamoDB requests are throttled, reset or timed out, messages arrive
out of order, poison sits in the queues, and a product is uploaded again while its tile is
composited. The end state must be the fault-free one: the job done, every upload indexed once,
one synthesis per tile, one mosaic, equal pixel for pixel, and only the poison in the
dead-letter queues. A corrected product (other bytes, the same id) uploaded while its tile is
composited ends indexed, and the synthesis made from the bytes it replaced is marked stale.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.fault_schedule import (
    JOB_ID,
    POINTS,
    POISON_DEAD_LETTERS,
    TILES,
    UNPLANNED_JOB,
    Schedule,
    indexed_ids,
    month_products,
    mosaic_pixels,
    run_month,
)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return month_products(tmp_path_factory.mktemp("fault-month"))


def test_a_month_under_faults_ends_as_the_month_without(
    function_settings: Settings, products: list[Path]
) -> None:
    clean = run_month(function_settings, products, None)
    assert clean.job.state == JobState.DONE and clean.job.mosaic_item
    expected = mosaic_pixels(function_settings, clean.job.mosaic_item)
    l2a = indexed_ids(function_settings, "sentinel2-l2a")
    assert len(l2a) == len(products)

    # the same month again (run 2, a new version of every output), now under faults
    JobStore(function_settings).finish(JOB_ID, JobState.DONE)
    schedule = Schedule(
        set(random.Random(13).sample(POINTS, len(POINTS) // 2)),
        throttle=0.02,
        out_of_order=True,
        poison=True,
        reupload=products[0],
        seed=13,
    )
    faulty = run_month(function_settings, products, schedule)
    job = faulty.job
    assert schedule.injected, "no fault was injected"
    assert job.state == JobState.DONE, (job.state, job.reason, schedule.injected)
    assert job.run == 2  # one run started, whatever the plans and their retries
    assert all(t.state == TileState.DONE for t in job.tiles)
    assert indexed_ids(function_settings, "sentinel2-l2a") == l2a  # every upload once
    l3a = indexed_ids(function_settings, "sentinel2-l3a")
    assert len(l3a) == len(TILES) and all(i.endswith("_V1-1") for i in l3a), l3a
    assert len(indexed_ids(function_settings, "mosaics")) == 1
    assert job.mosaic_item is not None
    np.testing.assert_array_equal(mosaic_pixels(function_settings, job.mosaic_item), expected)
    assert schedule.transport is not None and schedule.transport.injected > 0
    assert schedule.reads_failed > 0  # GDAL's reads throttled too
    assert len(schedule.reuploads) == 1
    assert set(faulty.dead_letters) == set(POISON_DEAD_LETTERS), faulty.dead_letters  # only
    assert JobStore(function_settings).get(UNPLANNED_JOB) is None  # poison made no job
    print(
        f"delivered {faulty.delivered} messages, injected {', '.join(schedule.injected)}, "
        f"requests failed {schedule.transport.counts}, GDAL reads {schedule.reads_failed}"
    )


def test_a_corrected_product_uploaded_during_its_synthesis_ends_indexed_and_stale(
    function_settings: Settings, products: list[Path], tmp_path: Path
) -> None:
    corrected = next(p for p in month_products(tmp_path, seed_offset=100) if TILES[0] in p.name)
    assert corrected.name in {p.name for p in products}
    assert (
        corrected.read_bytes() != next(p for p in products if p.name == corrected.name).read_bytes()
    )
    schedule = Schedule(reupload=corrected)
    run = run_month(function_settings, products, schedule)
    assert run.job.state == JobState.DONE and len(schedule.reuploads) == 1
    product_id = corrected.name.removesuffix(".zip")
    bucket = DataBucket(function_settings)
    page = Catalog(function_settings.catalog_table, settings=function_settings).search(
        ["sentinel2-l2a"], None, None, [product_id], 10, None
    )
    (item,) = page.items  # indexed once, not quarantined
    assert item["assets"]["product"]["file:size"] == corrected.stat().st_size
    assert not bucket.list_keys("quarantine/")
    synthesis = next(t.item for t in run.job.tiles if t.tile == TILES[0])
    assert synthesis is not None
    properties = bucket.get_json(synthesis)["properties"]
    assert properties.get("sansnuages:stale") is True
    assert properties["sansnuages:late_inputs"] == [product_id]
    other = next(t.item for t in run.job.tiles if t.tile == TILES[1])
    assert other is not None and "sansnuages:stale" not in bucket.get_json(other)["properties"]
