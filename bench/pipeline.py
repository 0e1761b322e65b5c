"""Benchmark of the whole pipeline on the embedded local AWS.

Runs a month over N tiles as the demo does (`demo.run_month`): starts the local runtime,
simulates the month's products and uploads each as it is written, waits for ingest, fires the
monthly schedule and waits for the job. Reports each stage's time and share of the run
(`stage_times`: start-up, simulation and upload, ingest, syntheses, mosaic, the rest), ingest's
rate, and each function's invocations, busy time and peak resident memory (worker process and
children).

    .venv/bin/python bench/pipeline.py --tiles 31UES,31UFS,31UER,31UFR --resolution 610
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from sansnuages.period import SynthesisPeriod
from sansnuages.tools.demo import SIMULATION_PROCESSES, run_month
from sansnuages.tools.local import WORKERS_PER_FUNCTION
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.stage_times import INGEST, SIMULATION, STARTUP, StageClock, steps_line

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", default="31UES,31UFS,31UER,31UFR")
    parser.add_argument("--resolution", type=float, default=610.0)
    parser.add_argument("--concurrency", type=int, default=WORKERS_PER_FUNCTION)
    parser.add_argument("--processes", type=int, default=SIMULATION_PROCESSES)
    args = parser.parse_args()
    tiles = args.tiles.split(",")
    started_load = ", ".join(f"{load:.1f}" for load in os.getloadavg())
    clock = StageClock()
    with tempfile.TemporaryDirectory() as folder:
        with clock.stage(STARTUP):
            runtime = LocalRuntime(
                ROOT / "template.yaml", Path(folder), concurrency=args.concurrency
            ).start()
        try:
            run = run_month(
                runtime,
                clock,
                tiles,
                SynthesisPeriod.parse("2018-07"),
                args.resolution,
                seed=1,
                processes=args.processes,
            )
            functions = runtime.status()["functions"]
            table = clock.table()  # the run's CPU time counts the runtime's live processes
        finally:
            runtime.stop()
    print(f"load average at the start (1, 5, 15 min): {started_load}")
    loads = ", ".join(f"{load:.1f}" for load in os.getloadavg())
    state = run.job.state if run.job else f"planning failed: {run.planning_error}"
    print(f"tiles {len(tiles)}, products {run.products} at {args.resolution:g} m; job {state}")
    print(f"load average at the end (1, 5, 15 min): {loads}")
    print(table)
    simulated, ingested = clock.spans[SIMULATION], clock.spans[INGEST]
    from_first_upload = ingested[1] - simulated[0]
    print(
        f"ingest {run.products / from_first_upload:.2f} products/s from the start of the"
        f" simulation to the last product indexed"
    )
    print(f"start-up {clock.seconds(STARTUP):.1f} s: {steps_line(runtime.startup)}")
    print(f"{'function':<18}{'invocations':>12}{'busy s':>9}{'peak RSS MB':>13}")
    for name, stats in sorted(functions.items()):
        print(
            f"{name:<18}{stats['invocations']:>12}{stats['busy_s']:>9.1f}{stats['peak_rss_mb']:>13.0f}"
        )


if __name__ == "__main__":
    main()
