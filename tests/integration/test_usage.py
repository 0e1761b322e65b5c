"""A unit's usage measured on the moto server: boto3's requests counted as they are sent, time
times declared memory, and added to its job's record by atomic counters."""

from __future__ import annotations

import time

import pytest

from sansnuages.costs import PriceTable
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.jobs import JobStore
from sansnuages.stores.usage import Meter
from sansnuages.tools.progress import describe_cost


def test_a_unit_counts_its_requests_and_its_time(
    function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    bucket, jobs = DataBucket(function_settings), JobStore(function_settings)
    meter = Meter.start()
    bucket.put_bytes("l3a/usage/a.txt", b"a", "text/plain")
    assert bucket.get_bytes("l3a/usage/a.txt") == b"a"
    job, _ = jobs.create(
        "2018-07",
        "Belgium",
        "BEL",
        [f"31U{c}S" for c in "ABCDEFGHJKLMNPQRSTUVWXYZ"] + ["31UFT", "31UGT"],
    )
    time.sleep(0.2)
    meter.close()
    usage = meter.total()
    assert (usage.invocations, usage.s3_gets, usage.s3_puts) == (1, 1, 1)
    # 26 tile records in two batches, the job and its listing, then the job read back
    assert usage.dynamodb_writes == 26 + 2 and usage.dynamodb_reads >= 2
    assert usage.lambda_mb_ms >= 2048 * 200
    assert jobs.add_usage(job.job_id, usage) and jobs.add_usage(job.job_id, usage)
    recorded = jobs.get(job.job_id)
    assert recorded is not None and recorded.usage == usage + usage
    assert jobs.head(job.job_id).usage == usage + usage  # type: ignore[union-attr]
    assert not jobs.add_usage("2018-07-NOPE", usage)  # no such job: nothing written, no error
    text = describe_cost(recorded)
    total = PriceTable.load().cost(usage + usage)["total"]
    assert f"total {total:.4f} USD" in text and "2 invocations" in text


def test_estimates_are_added_and_labelled(function_settings: Settings) -> None:
    meter = Meter.start()
    items = [{"assets": {"B4": {"type": "image/tiff; application=geotiff", "proj:shape": [1024, 1024]},
                         "thumbnail": {"type": "image/jpeg", "proj:shape": [10, 10]}}}]  # fmt: skip
    meter.add_gdal(items, [1000, 1000])
    meter.close()
    usage = meter.total()
    assert (usage.s3_gets, usage.s3_puts, usage.s3_estimated) == (5, 2, 7)
    assert usage.invocations == 1 and usage.dynamodb_writes == 0  # nothing was counted
