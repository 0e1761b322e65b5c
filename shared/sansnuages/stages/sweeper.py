"""The sweeper: units of unfinished jobs that started and are overdue, re-driven or failed.

A tile (or a mosaic) is stamped when its message is received. A unit whose last start is
older than its function's timeout plus the queue's visibility timeout has no invocation left
at work and no delivery left to come: its message went to the dead-letter queue, or was lost.
The sweeper sends it again while attempts remain (a retry can help), and otherwise fails it
with the reason, so that the job ends. A unit never started is waiting in a queue's backlog:
it is never touched, so a long backlog is not duplicated. Run every 15 minutes (template).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from sansnuages.settings import Settings
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.plan import send_tile_messages
from sansnuages.stores import aws
from sansnuages.stores.jobs import Job, JobState, JobStore, TileState
from sansnuages.stores.messages import MosaicJob, send_all

logger = Logger(child=True)

SWEEPER = "sweeper"
"""The claimer's name when the sweeper claims a mosaic no finisher claimed."""


@dataclass(frozen=True)
class SweepLimits:
    tile_overdue_s: float
    """The composite function's timeout plus its queue's visibility timeout."""
    mosaic_overdue_s: float
    max_attempts: int
    """The queues' maxReceiveCount: deliveries a unit gets before it is given up."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SweepLimits:
        return cls(
            float(environ["TILE_OVERDUE_SECONDS"]),
            float(environ["MOSAIC_OVERDUE_SECONDS"]),
            int(environ["MAX_RECEIVE_COUNT"]),
        )


@dataclass
class SweepReport:
    redriven: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    sent_tiles: int = 0
    mosaics_sent: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "redriven": self.redriven,
            "failed": self.failed,
            "sent_tiles": self.sent_tiles,
            "mosaics_sent": self.mosaics_sent,
        }


def _age_s(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    return (now - datetime.fromisoformat(stamp)).total_seconds()


@dataclass
class Sweeper:
    settings: Settings
    limits: SweepLimits
    jobs: JobStore
    compositor: TileCompositor

    @classmethod
    def from_settings(cls, settings: Settings, limits: SweepLimits) -> Sweeper:
        jobs = JobStore(settings)
        return cls(settings, limits, jobs, TileCompositor.from_settings(settings))

    def sweep(self, now: datetime | None = None) -> SweepReport:
        now = now or datetime.now(UTC)
        report = SweepReport()
        for job in self.jobs.unfinished():
            if job.state == JobState.RUNNING:
                self._running(job, now, report)
            elif job.state == JobState.MOSAIC_QUEUED:
                self._mosaic(job, now, report)
        if report.redriven or report.failed or report.sent_tiles or report.mosaics_sent:
            logger.info("swept", extra=report.as_dict())
        return report

    def _running(self, job: Job, now: datetime, report: SweepReport) -> None:
        overdue = timedelta(seconds=self.limits.tile_overdue_s)
        if job.sent < len(job.tiles) and now - datetime.fromisoformat(job.created) > overdue:
            report.sent_tiles += send_tile_messages(job, self.jobs, self.settings)  # plan died
        tasks = []
        for status in job.tiles:
            if status.state != TileState.PENDING or status.started is None:
                continue  # finished, or waiting in the backlog
            if _age_s(status.started, now) <= self.limits.tile_overdue_s:
                continue
            unit = f"{job.job_id}/{status.tile}"
            if status.attempts >= self.limits.max_attempts:
                reason = (
                    f"no result after {status.attempts} attempts, the last started at "
                    f"{status.started}"
                )
                if self.jobs.finish_tile(job.job_id, status.tile, TileState.FAILED, reason=reason):
                    report.failed.append(unit)
                self.compositor.fan_in(job.job_id, status.tile)
            elif self.jobs.requeue_tile(job.job_id, status.tile, status.started):
                tasks.append(job.task(status.tile))
                report.redriven.append(unit)
        if tasks:
            sqs = aws.client("sqs", self.settings)
            send_all(sqs, self.settings.composite_queue_url, [t.body() for t in tasks])
        if job.pending == 0 and not tasks:  # every tile finished; the finisher died unclaimed
            self._send_mosaic(job.job_id, SWEEPER, report)

    def _mosaic(self, job: Job, now: datetime, report: SweepReport) -> None:
        if job.mosaic_sent is None:  # claimed, not sent: the claimer died before sending
            if _age_s(job.claimed_at, now) > self.limits.tile_overdue_s:
                self._send_mosaic(job.job_id, job.claimed_by or SWEEPER, report)
            return
        if job.mosaic_started is None or _age_s(job.mosaic_started, now) <= (
            self.limits.mosaic_overdue_s
        ):
            return  # waiting in the backlog, or at work
        if job.mosaic_attempts >= self.limits.max_attempts:
            reason = (
                f"no mosaic after {job.mosaic_attempts} attempts, the last started at "
                f"{job.mosaic_started}"
            )
            self.jobs.finish(job.job_id, JobState.FAILED, reason=reason)
            report.failed.append(job.job_id)
        elif self.jobs.requeue_mosaic(job.job_id, job.mosaic_started):
            sqs = aws.client("sqs", self.settings)
            send_all(sqs, self.settings.mosaic_queue_url, [MosaicJob(job.job_id).body()])
            report.redriven.append(job.job_id)

    def _send_mosaic(self, job_id: str, claimer: str, report: SweepReport) -> None:
        before = self.jobs.get(job_id)
        self.compositor.fan_in(job_id, claimer)
        after = self.jobs.get(job_id)
        if after is not None and after.mosaic_sent and (before is None or not before.mosaic_sent):
            report.mosaics_sent.append(job_id)
