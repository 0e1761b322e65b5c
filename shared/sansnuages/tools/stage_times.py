"""The stages of a month on the local runtime, timed apart, and their shares of the whole run.

The demo prints them at its end and `bench/pipeline.py` reports them: start-up (the local
runtime until it is ready), simulation and upload, ingest (what is left of it once the last
upload is in), the syntheses (from the schedule's firing to the last tile's end) and the mosaic
(from there to the job's end), and the rest (everything else: searches, downloads, stopping).
Ingest runs while products are still being simulated, so a stage is the time it holds the run
up, not the time its functions are busy (`LocalRuntime.status` gives that).

The syntheses and the mosaic come from the job's records: the tile that finishes last claims
the mosaic and stamps `claimed_at`, the mosaic's first delivery stamps `mosaic_started`. They
are stamped by the functions in UTC to the second, so marks here are wall-clock (epoch) seconds
too, not a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sansnuages.stores.jobs import Job

STARTUP = "start-up"
SIMULATION = "simulation and upload"
INGEST = "ingest"
SYNTHESES = "syntheses"
MOSAIC = "mosaic"
REST = "rest"
STAGES = (STARTUP, SIMULATION, INGEST, SYNTHESES, MOSAIC)
JOB_CPU = f"{SYNTHESES} + {MOSAIC}"
"""The CPU time of the job: measured from the firing to the job's end, not split."""


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    share: float
    """Of the whole run, 0 to 1."""
    cpu_s: float | None = None
    """CPU seconds of this process and its descendants (the local AWS, its workers, the
    simulator's processes) during the stage, when it was measured: on a shared machine the
    wall time depends on what else runs, the CPU time much less."""


def tree_cpu_seconds() -> float:
    """CPU seconds (user and system) used so far by this process, its children that ended,
    and every live descendant (workers are forked from a fork server, so they are not this
    process's children once they end: a worker that ended mid-run is missed)."""
    import resource

    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        total += times.user + times.system
    return total


@dataclass
class StageClock:
    """Wall-clock spans of a run's stages, from `started` (epoch seconds), and the CPU time
    of those timed with `stage`."""

    started: float = field(default_factory=time.time)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_at_start: float = field(default_factory=tree_cpu_seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name` (recorded even if the block fails)."""
        start, cpu = time.time(), tree_cpu_seconds()
        try:
            yield
        finally:
            self.spans[name] = (start, time.time())
            self.cpu[name] = tree_cpu_seconds() - cpu

    def job(self, job: Job, fired: float, finished: float, cpu_s: float | None = None) -> None:
        """The syntheses and the mosaic of `job`, fired at `fired` and seen finished at
        `finished`: the split is the last tile's claim of the mosaic (`claimed_at`), or its
        first start when the claim is not recorded (a job that failed before its mosaic has
        neither: all of it is syntheses)."""
        stamp = job.claimed_at or job.mosaic_started
        split = _epoch(stamp) if stamp else finished
        split = min(max(split, fired), finished)
        self.spans[SYNTHESES] = (fired, split)
        self.spans[MOSAIC] = (split, finished)
        if cpu_s is not None:  # one figure for both: the split is known only afterwards
            self.cpu[JOB_CPU] = cpu_s

    def times(self, end: float | None = None) -> list[StageTime]:
        """Each stage (in run order, those timed), the rest, then the whole run. The run's
        CPU time counts the processes alive now: call it before the local runtime stops."""
        total = max((end if end is not None else time.time()) - self.started, 1e-9)
        rows = [
            StageTime(
                name, b - a, (b - a) / total, self.cpu.get(name if name != MOSAIC else JOB_CPU)
            )
            for name in STAGES
            if name in self.spans
            for a, b in [self.spans[name]]
        ]
        rest = total - sum(row.seconds for row in rows)
        return [
            *rows,
            StageTime(REST, rest, rest / total),
            StageTime("total", total, 1.0, tree_cpu_seconds() - self.cpu_at_start),
        ]

    def seconds(self, name: str) -> float:
        start, stop = self.spans[name]
        return stop - start

    def table(self, end: float | None = None) -> str:
        """The stages as lines of text: seconds, share of the run, CPU seconds if measured."""
        return "\n".join(
            f"  {row.name:<22}{row.seconds:8.1f} s {100 * row.share:6.1f} %"
            + (f"   CPU {row.cpu_s:7.1f} s" if row.cpu_s is not None else "")
            + (f" ({JOB_CPU})" if row.name == MOSAIC and row.cpu_s is not None else "")
            for row in self.times(end)
        )


def _epoch(stamp: str) -> float:
    """A job record's UTC ISO stamp as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def steps_line(steps: dict[str, float]) -> str:
    """A stage's own steps on one line (`LocalRuntime.startup`: launch, template, moto ...)."""
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items())
