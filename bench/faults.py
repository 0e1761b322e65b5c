"""Random fault schedules over a small month: messages, faults, losses, duplicates, stuck jobs.

Each schedule runs July 2018 over two Belgian tiles (two products each, 60 px a tile) on a
fresh stack of the embedded local AWS, with the queues played in this process
(`sansnuages.tools.fault_schedule`): every tile message delivered twice, two plans at once,
the uploads uploaded again, and, drawn at random per schedule, one crash at each of a set of
the named points, 0, 1 or 3 % of the S3 and DynamoDB requests throttled, reset or timed out,
messages delivered out of order, poison in the queues, and a product uploaded again (the
same bytes) while its tile is composited. A job still unfinished is swept (as if its units
were overdue) and delivered again. The outcome is compared with a month without faults: the
same Items, the mosaic equal pixel for pixel, and nothing but the poison dead-lettered.

    .venv/bin/python bench/faults.py --schedules 50
    .venv/bin/python bench/faults.py --schedules 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _settings(endpoint: str) -> Any:
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.settings import Settings
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS
    from sansnuages.tools.local.provision import local_environment, provision
    from sansnuages.tools.local.template import load_stack

    os.environ.update(LOCAL_CREDENTIALS)
    name = f"f-{uuid.uuid4().hex[:12]}"  # a fresh bucket: GDAL caches what it read
    stack = load_stack(ROOT / "template.yaml", stack_name=name, endpoint_url=endpoint)
    provision(stack, endpoint_url=endpoint)
    environment = {**LOCAL_CREDENTIALS, **local_environment(stack, "IngestFunction", endpoint)}
    os.environ.update(environment)
    settings = Settings.from_env(environment)
    use_gdal(settings)
    return settings


def one_schedule(endpoint: str, products: list[Path], seed: int, expected: Any) -> dict[str, Any]:
    from sansnuages.stages.sweeper import Sweeper, SweepLimits
    from sansnuages.stores.jobs import JobState, JobStore
    from sansnuages.tools import fault_schedule as fs

    settings = _settings(endpoint)
    schedule = fs.Schedule.random(seed, reupload=products[0])
    started = time.monotonic()
    run = fs.run_month(settings, products, schedule)
    job = run.job
    if not job.finished:  # the sweeper, as if every unit were overdue, then the queues again
        limits = SweepLimits(0, 0, fs.MAX_DELIVERIES)
        Sweeper.from_settings(settings, limits).sweep(datetime.now(UTC) + timedelta(hours=2))
        run.delivered += fs.pump(settings, None)
        job = JobStore(settings).get(fs.JOB_ID) or job
    l2a = fs.indexed_ids(settings, "sentinel2-l2a")
    l3a = fs.indexed_ids(settings, "sentinel2-l3a")
    same = bool(
        job.state == JobState.DONE
        and job.mosaic_item
        and np.array_equal(fs.mosaic_pixels(settings, job.mosaic_item), expected)
    )
    return {
        "seed": seed,
        "delivered": run.delivered,
        "faults": schedule.faults,
        "crashes": len(run.injected),
        "requests_failed": schedule.transport.injected if schedule.transport else 0,
        "poison": schedule.poison,
        "out_of_order": schedule.out_of_order,
        "reupload": bool(schedule.reuploads),
        "dead_lettered_units": len(set(run.dead_letters) - set(fs.POISON_DEAD_LETTERS)),
        "lost": max(0, len(products) - len(l2a)) + max(0, len(fs.TILES) - len(l3a)),
        "duplicates": max(0, len(l2a) - len(products)) + max(0, len(l3a) - len(fs.TILES)),
        "stuck": 0 if job.finished else 1,
        "failed": 1 if job.state == JobState.FAILED else 0,
        "mosaic_equal": same,
        "seconds": round(time.monotonic() - started, 1),
        "points": run.injected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10, help="random schedules to run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first schedule")
    parser.add_argument("--json", action="store_true", help="one JSON document at the end")
    args = parser.parse_args(argv)

    from sansnuages.tools import fault_schedule as fs
    from sansnuages.tools.local.moto_process import MotoServer

    server = MotoServer.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            products = fs.month_products(Path(folder))
            reference = _settings(server.url)
            clean = fs.run_month(reference, products, None)
            if not clean.job.mosaic_item:
                raise SystemExit(f"the month without faults made no mosaic: {clean.job}")
            expected = fs.mosaic_pixels(reference, clean.job.mosaic_item)
            results = []
            for seed in range(args.seed, args.seed + args.schedules):
                result = one_schedule(server.url, products, seed, expected)
                results.append(result)
                if not args.json:
                    print(json.dumps({k: v for k, v in result.items() if k != "points"}))
    finally:
        server.stop()
    totals = {
        "schedules": len(results),
        "messages_delivered": sum(r["delivered"] for r in results),
        "faults_injected": sum(r["faults"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "requests_failed": sum(r["requests_failed"] for r in results),
        "with_poison": sum(1 for r in results if r["poison"]),
        "out_of_order": sum(1 for r in results if r["out_of_order"]),
        "reuploads_during_synthesis": sum(1 for r in results if r["reupload"]),
        "dead_lettered_units": sum(r["dead_lettered_units"] for r in results),
        "items_lost": sum(r["lost"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "jobs_stuck": sum(r["stuck"] for r in results),
        "jobs_failed": sum(r["failed"] for r in results),
        "mosaics_different": sum(0 if r["mosaic_equal"] else 1 for r in results),
        "seconds_to_converge_median": float(np.median([r["seconds"] for r in results])),
        "seconds_to_converge_max": max(r["seconds"] for r in results),
    }
    print(json.dumps(totals if not args.json else {"totals": totals, "runs": results}))
    bad = (
        totals["items_lost"]
        + totals["duplicates"]
        + totals["jobs_stuck"]
        + totals["dead_lettered_units"]
    )
    return 1 if bad or totals["mosaics_different"] else 0


if __name__ == "__main__":
    sys.exit(main())
