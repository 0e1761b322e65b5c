"""Starting jobs on a running runtime and watching them, for people at a terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

from sansnuages.costs import PriceTable
from sansnuages.errors import SansnuagesError
from sansnuages.settings import Settings
from sansnuages.stores.jobs import Job, JobStore, TileState

PLAN_FUNCTION = "PlanFunction"
MONTHLY_SCHEDULE = "PlanFunctionMonthly"
YEARLY_SCHEDULE = "PlanFunctionYearly"
"""The template's schedules of the plan function: the months, and the snow seasons."""


def start_job(client: Any, event: dict[str, Any]) -> str:
    """Invoke the planner with a month's or a season's event, as a schedule would; returns
    the job id."""
    return job_from_invocation(client.invoke(PLAN_FUNCTION, event))


def job_from_invocation(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        raise SansnuagesError(
            f"planning failed: {result.get('error_type')}: {result.get('error_message')}"
        )
    payload = result["payload"]
    print(f"job {payload['job_id']}: {len(payload['tiles'])} tiles ({', '.join(payload['tiles'])})")
    return str(payload["job_id"])


def describe_job(job: Job, detail: bool = False) -> str:
    line = (
        f"{job.job_id}  {job.state:<13}  tiles: {job.count(TileState.DONE)} done, "
        f"{job.count(TileState.PENDING)} pending, {job.count(TileState.FAILED)} failed"
    )
    if job.run > 1:
        line += f"  run {job.run}"
    if job.mosaic_item:
        line += f"  mosaic: {job.mosaic_item}"
    if job.reason:
        line += f"  ({job.reason})"
    if detail:
        for tile in job.tiles:
            line += f"\n  {tile.tile}  {tile.state:<8} {tile.reason or tile.item or ''}"
        line += "\n" + describe_cost(job)
    return line


def describe_cost(job: Job, prices: PriceTable | None = None) -> str:
    """What the job's units used, every attempt and run included, and its estimated cost at
    the price table's prices (`costs.PriceTable.load`)."""
    table = prices or PriceTable.load()
    usage = job.usage
    cost = table.cost(usage)
    return "\n".join(
        [
            f"  used: {usage.invocations} invocations, {usage.gb_seconds:,.1f} Lambda GB-s;"
            f" S3 {usage.s3_gets:,} GET, {usage.s3_puts:,} PUT ({usage.s3_estimated:,} of them"
            f" estimated: GDAL's, one per block read or raster written);"
            f" DynamoDB {usage.dynamodb_reads:,} read and {usage.dynamodb_writes:,} write units;"
            f" SQS {usage.sqs_requests:,} requests",
            f"  estimated cost ({table.region} prices of {table.as_of}): "
            + ", ".join(f"{name} {value:.4f}" for name, value in cost.items() if name != "total")
            + f"; total {cost['total']:.4f} {table.currency}",
        ]
    )


def wait_for_job(
    settings: Settings, job_id: str, timeout_s: float = 3600, stream: Any = None
) -> Job:
    """Poll the job until it has finished, redrawing one progress line."""
    out = stream or sys.stdout
    store = JobStore(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        job = store.get(job_id)
        if job is None:
            raise SansnuagesError(f"no job {job_id}")
        print(f"\r{describe_job(job)}", end="", file=out, flush=True)
        if job.finished or time.monotonic() > deadline:
            print(file=out)
            if not job.finished:
                raise SansnuagesError(f"job {job_id} still {job.state} after {timeout_s:.0f} s")
            return job
        time.sleep(1)
