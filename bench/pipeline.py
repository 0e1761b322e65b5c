"""Benchmark of the whole pipeline on the embedded local AWS.

Simulates a month of products over N tiles, uploads them, and times each stage as the local
runtime runs it: ingest (products per second), the monthly job (composites and mosaic), with
each function's invocations, busy time and peak resident memory (worker process and children).

    .venv/bin/python bench/pipeline.py --tiles 31UES,31UFS,31UER,31UFR --resolution 610
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobStore
from sansnuages.tools.demo import wait_for_ingest
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.simulate import simulate_month

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", default="31UES,31UFS,31UER,31UFR")
    parser.add_argument("--resolution", type=float, default=610.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    tiles = args.tiles.split(",")
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        products = simulate_month(tiles, 2018, 7, Path(folder), resolution=args.resolution, seed=1)
        simulated = time.monotonic() - started
        size_mb = sum(p.stat().st_size for p in products) / 2**20
        runtime = LocalRuntime(
            ROOT / "template.yaml", Path(folder), concurrency=args.concurrency
        ).start()
        try:
            settings = RuntimeClient(runtime.facts()).settings()
            bucket, catalog = (
                DataBucket(settings),
                Catalog(settings.catalog_table, settings=settings),
            )
            started = time.monotonic()
            for path in products:
                bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
            wait_for_ingest(runtime, catalog, bucket, len(products))
            ingest_s = time.monotonic() - started
            schedule = next(s for s in runtime.schedules if s.function == "PlanFunction")
            started = time.monotonic()
            result = runtime.fire_schedule(schedule, datetime(2018, 8, 10, 3, tzinfo=UTC))
            store = JobStore(settings)
            while not store.get(result.payload["job_id"]).finished:  # type: ignore[union-attr]
                time.sleep(0.5)
            job_s = time.monotonic() - started
            functions = runtime.status()["functions"]
        finally:
            runtime.stop()
    print(
        f"tiles {len(tiles)}, products {len(products)} ({size_mb:.1f} MB of zips) at {args.resolution:g} m"
    )
    print(f"simulate   {simulated:7.1f} s")
    print(f"ingest     {ingest_s:7.1f} s   {len(products) / ingest_s:.2f} products/s")
    print(f"month job  {job_s:7.1f} s   {len(tiles) / job_s:.2f} tiles/s (composites + mosaic)")
    print(f"{'function':<18}{'invocations':>12}{'busy s':>9}{'peak RSS MB':>13}")
    for name, stats in sorted(functions.items()):
        print(
            f"{name:<18}{stats['invocations']:>12}{stats['busy_s']:>9.1f}{stats['peak_rss_mb']:>13.0f}"
        )


if __name__ == "__main__":
    main()
