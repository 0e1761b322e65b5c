"""The synthesis period of a month: a window centred on the 15th (46 days by default)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sansnuages.errors import InvalidRequest

HALF_WINDOW_DAYS = 23
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class SynthesisPeriod:
    year: int
    month: int
    half_window_days: int = HALF_WINDOW_DAYS

    @classmethod
    def parse(cls, text: str, half_window_days: int = HALF_WINDOW_DAYS) -> SynthesisPeriod:
        match = _MONTH.match(text.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise InvalidRequest(f"month must look like 2018-07, not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)), half_window_days)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def centre(self) -> date:
        return date(self.year, self.month, 15)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.centre - timedelta(days=self.half_window_days), time.min, UTC)

    @property
    def end(self) -> datetime:
        """Inclusive end: the last microsecond of the window's last day."""
        last = self.centre + timedelta(days=self.half_window_days)
        return datetime.combine(last, time.max, UTC)

    @property
    def centre_datetime(self) -> datetime:
        return datetime.combine(self.centre, time.min, UTC)

    def previous(self) -> SynthesisPeriod:
        year, month = (self.year, self.month - 1) if self.month > 1 else (self.year - 1, 12)
        return SynthesisPeriod(year, month, self.half_window_days)


def latest_closed_period(
    now: datetime, half_window_days: int = HALF_WINDOW_DAYS, lag_days: float = 0.0
) -> SynthesisPeriod:
    """The most recent month whose window closed at least `lag_days` before `now` (what a
    scheduled run makes): the lag leaves time for late products to arrive and be ingested."""
    if lag_days < 0:
        raise InvalidRequest(f"the schedule lag cannot be negative ({lag_days} days)")
    period = SynthesisPeriod(now.year, now.month, half_window_days)
    while period.end + timedelta(days=lag_days) >= now:
        period = period.previous()
    return period
