"""The stages of a month run and their shares, as the demo and `bench/pipeline.py` print them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from sansnuages.stores.jobs import Job, JobState
from sansnuages.tools.stage_times import (
    INGEST,
    MOSAIC,
    REST,
    STARTUP,
    SYNTHESES,
    StageClock,
    steps_line,
    tree_cpu_seconds,
)

FIRED = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC).timestamp()


def job(**fields: str | None) -> Job:
    return Job("2018-07-BEL", "2018-07", "Belgium", "BEL", JobState.DONE, 0, **fields)  # type: ignore[arg-type]


def test_the_job_splits_at_the_last_tiles_claim_of_the_mosaic() -> None:
    clock = StageClock(started=FIRED - 100)
    clock.job(job(claimed_at="2026-01-05T10:00:40+00:00"), FIRED, FIRED + 52.5)
    assert clock.seconds(SYNTHESES) == pytest.approx(40.0)
    assert clock.seconds(MOSAIC) == pytest.approx(12.5)


def test_the_jobs_cpu_time_is_shown_once_for_syntheses_and_mosaic() -> None:
    clock = StageClock(started=FIRED)
    clock.job(job(claimed_at="2026-01-05T10:00:10+00:00"), FIRED, FIRED + 20, cpu_s=33.0)
    rows = {row.name: row for row in clock.times(end=FIRED + 30)}
    assert rows[SYNTHESES].cpu_s is None and rows[MOSAIC].cpu_s == 33.0
    assert "33.0 s (syntheses + mosaic)" in clock.table(end=FIRED + 30)


def test_a_job_without_a_claim_is_all_syntheses() -> None:
    clock = StageClock(started=FIRED)
    clock.job(job(), FIRED, FIRED + 30)
    assert clock.seconds(SYNTHESES) == pytest.approx(30.0)
    assert clock.seconds(MOSAIC) == 0.0


def test_a_claim_stamped_outside_the_job_is_kept_within_it() -> None:
    """Stamps are to the second: a claim can read a little before the firing."""
    clock = StageClock(started=FIRED)
    clock.job(job(claimed_at="2026-01-05T09:59:59+00:00"), FIRED + 0.7, FIRED + 5)
    assert clock.seconds(SYNTHESES) == 0.0
    assert clock.seconds(MOSAIC) == pytest.approx(4.3)


def test_stages_in_run_order_then_the_rest_and_the_total_sharing_the_run() -> None:
    clock = StageClock(started=0.0)
    clock.spans[INGEST] = (10.0, 40.0)
    clock.spans[STARTUP] = (0.0, 5.0)
    rows = clock.times(end=100.0)
    assert [row.name for row in rows] == [STARTUP, INGEST, REST, "total"]
    assert [row.seconds for row in rows] == pytest.approx([5.0, 30.0, 65.0, 100.0])
    assert sum(row.share for row in rows[:-1]) == pytest.approx(1.0)
    assert "ingest" in clock.table(end=100.0) and "30.0 %" in clock.table(end=100.0)


def test_a_stage_is_timed_even_when_it_fails() -> None:
    clock = StageClock()
    with pytest.raises(RuntimeError), clock.stage(STARTUP):
        raise RuntimeError("no server")
    assert clock.seconds(STARTUP) >= 0.0


def test_steps_line() -> None:
    assert steps_line({"moto": 1.25, "provision": 0.5}) == "moto 1.2 s, provision 0.5 s"


def test_a_stage_counts_the_cpu_of_its_processes_children_included() -> None:
    clock = StageClock()
    with clock.stage(STARTUP):
        # a child that spins for a moment: the stage's CPU time must count it
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass",
            ],
            check=True,
        )
    assert clock.cpu[STARTUP] >= 0.3
    assert "CPU" in clock.table()
    assert tree_cpu_seconds() >= clock.cpu_at_start + 0.3
