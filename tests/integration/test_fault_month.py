"""A small month under a schedule of faults converges to the month without faults.

Two Belgian tiles, two products each, tiny pixels (`tools/fault_schedule.py`): a crashed
delivery comes back, the tile messages are all delivered twice, two plans start at once, the
uploads are uploaded again, and a crash is played once at each of a random half of the named
points. The end state must be the fault-free one: the job done, every upload indexed once,
one synthesis per tile, one mosaic, equal pixel for pixel.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from sansnuages.settings import Settings
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.fault_schedule import (
    JOB_ID,
    POINTS,
    TILES,
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
    schedule = Schedule(set(random.Random(13).sample(POINTS, len(POINTS) // 2)))
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
    print(f"delivered {faulty.delivered} messages, injected {', '.join(schedule.injected)}")
