"""The periods jobs run over: a month's synthesis window centred on the 15th (46 days by default),
and a snow season's hydrological year with its margins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sansnuages.errors import InvalidRequest

HALF_WINDOW_DAYS = 23
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
SEASON_PREFIX = "snow-"
_SEASON = re.compile(r"^(?:snow-)?(\d{4})$")
MARGIN_DAYS = 15
MAX_MARGIN_DAYS = 366  # keeps every day number and sort key of a season well inside int16


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


@dataclass(frozen=True)
class HydrologicalYear:
    """Year N: 1 September N-1 to 31 August N, as in LIS tags (`T31TCH_20170901_20180831` is
    2018), read with a margin either side so that its first and last days are interpolated
    between real observations rather than held."""

    year: int
    margin_days: int = MARGIN_DAYS

    def __post_init__(self) -> None:
        if not 0 <= self.margin_days <= MAX_MARGIN_DAYS:
            raise ValueError(f"margin_days must be within 0..{MAX_MARGIN_DAYS}")

    @property
    def start(self) -> date:
        return date(self.year - 1, 9, 1)

    @property
    def end(self) -> date:
        return date(self.year, 8, 31)

    @property
    def n_days(self) -> int:
        """366 when 29 February falls in it."""
        return (self.end - self.start).days + 1

    @property
    def first_input(self) -> date:
        return self.start - timedelta(days=self.margin_days)

    @property
    def last_input(self) -> date:
        return self.end + timedelta(days=self.margin_days)

    @property
    def label(self) -> str:
        """`snow-2018`: how jobs, messages and the CLI name the season of year 2018."""
        return f"{SEASON_PREFIX}{self.year}"

    @classmethod
    def parse(cls, text: str) -> HydrologicalYear:
        """`2018` or `snow-2018`: the season that ends on 31 August 2018."""
        match = _SEASON.match(text.strip())
        if not match or not 1900 < int(match.group(1)) < 2200:
            raise InvalidRequest(
                f"a snow season is a year such as 2018 (or snow-2018), not {text!r}"
            )
        return cls(int(match.group(1)))

    @property
    def start_datetime(self) -> datetime:
        return datetime.combine(self.start, time.min, UTC)

    @property
    def end_datetime(self) -> datetime:
        """Inclusive end: the last microsecond of 31 August."""
        return datetime.combine(self.end, time.max, UTC)

    @property
    def inputs_range(self) -> tuple[datetime, datetime]:
        """The times of the snow maps it reads: its days and the margins, whole days."""
        first = datetime.combine(self.first_input, time.min, UTC)
        return first, datetime.combine(self.last_input, time.max, UTC)

    @property
    def tag(self) -> str:
        """`20170901_20180831`, LIS's dates in a product tag."""
        return f"{self.start:%Y%m%d}_{self.end:%Y%m%d}"

    def day_index(self, day: date) -> int:
        """Days since 1 September (negative in the first margin); a datetime counts by its
        calendar day."""
        return day.toordinal() - self.start.toordinal()

    def date_of(self, index: int) -> date:
        return self.start + timedelta(days=index)

    def takes(self, day: date) -> bool:
        """Whether a snow map of that day enters the season (the margins included)."""
        return -self.margin_days <= self.day_index(day) < self.n_days + self.margin_days


def parse_job_period(label: str) -> SynthesisPeriod | HydrologicalYear:
    """The period a job or a tile message names: a month (`2018-07`) for a synthesis, a season
    (`snow-2018`) for a snow season."""
    if label.startswith(SEASON_PREFIX):
        return HydrologicalYear.parse(label)
    return SynthesisPeriod.parse(label)


def latest_closed_season(now: datetime, lag_days: float = 0.0) -> HydrologicalYear:
    """The most recent season whose inputs (its margin included) closed `lag_days` before
    `now`: the yearly schedule after mid-September makes the year that ended on 31 August."""
    if lag_days < 0:
        raise InvalidRequest(f"the schedule lag cannot be negative ({lag_days} days)")
    season = HydrologicalYear(now.year + 1)
    while season.end_datetime + timedelta(days=season.margin_days + lag_days) >= now:
        season = HydrologicalYear(season.year - 1)
    return season
