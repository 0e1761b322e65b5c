"""Snow seasons from Let-It-Snow snow maps: the pure core (FORMATS.md section 3).

Numpy only, no I/O: the caller reads the same window of every snow map of the season, resampled
onto the Sentinel-2 20 m grid (Landsat-8 by nearest neighbour), and gets the season's layers
for that window back. Memory is bounded by the window's size times the number of dates.

The rules, from Let-It-Snow (LIS): `doc/snow_annual_map.md` ("Snow annual map", later titled
"Snow cover duration map") and the code that implements it (`snow_annual_map.py`, whose
synthesis also calls `compute_SOD_SMOD.py`, `compute_NOBS.py` and `compute_NSP.py`), with the
linear gap filling of OTB's `ImageTimeSeriesGapFilling` (temporalgapfilling, `gapfilling.h`):

- **Year.** Year N runs from 1 September N-1 to 31 August N, both included: 365 or 366 daily
  steps ("a snow season goes from 01/09 of one year to 31/08 of the next one"; the output
  dates run `while tmp_date <= date_stop`). Day 0 is 1 September.
- **Margin.** Snow maps are taken from 15 days before to 15 days after ("collected with a margin
  of +-15 days outside the requested time range to avoid any extrapolation"); others are
  ignored. Whole days here: LIS compares acquisition times with midnight, which drops a product
  of the last margin day (15 September) acquired after midnight.
- **Codes.** 0 no snow, 100 snow, 205 cloud, 254 no data (255 in newer versions). A value is a
  clear observation when it is at most 100, LIS's own fusion threshold ("threshold -- the
  threshold between valid <= invalid data", 100). Fractional products give the snow percentage
  1..100: snow from `FRACTION_SNOW_FROM` (50) percent on, so that a pixel is snow when at least
  half of it is, the same half as the daily threshold below. LIS's newer code counts any
  fraction above 0 as snow (`im1b1>0 and im1b1<=100`); pass `snow_from=1` for that rule.
- **Same-day fusion.** "if img1 != cloud/nodata use img1 data, else if img2 ...": per pixel the
  first product of the day with a clear value wins; products are ordered by `rank` (0 for
  Sentinel-2, "first the main input products and then the densification products").
- **Binary series.** Snow 0/1 and clear 0/1 per observation day ("a binary snow mask",
  "a binary cloud/nodata mask").
- **Gap filling.** Daily linear interpolation between the clear days before and after (OTB's
  linear gap filling); a day with a clear observation keeps it. Before the first clear
  observation the first one is held, after the last the last one is held (gapfilling.h: "If
  there is no previous valid value, just use the next one"; "If there is no next valid value,
  just use the last one"). Observations in the margins take part in this.
- **Threshold.** A day is snow when the interpolated value is at least 0.5 (LIS scales to 0..100
  and keeps `(2 * v) / 100` in an integer). Computed exactly here, in integers: on a day d
  between clear days t0 and t1, snow when 2 * (s0 * (t1 - d) + s1 * (d - t0)) >= t1 - t0.
  So a snow spell ends on the last day up to the midpoint and starts on the first day from it.
- **SCD.** The sum of the daily series over the year's days only ("each daily snow mask of the
  interpolated time series is summed").

Beyond LIS's first annual map (which had only SNOW_OCCURENCE and CLOUD_OCCURENCE), added here;
LIS's later synthesis has them too, with the differences noted:

- **SOD / SMOD.** First and last snow day (days since 1 September) of the longest snow period of
  the year's daily series, the earliest one if two are equally long (as LIS's `max`), given
  only where that period lasts more than 10 days (11 or more). LIS gates on the year's total
  instead (`np.sum(w) > 10`) and writes 0 elsewhere; here `DAYS_NODATA`.
- **NOBS.** The number of clear observation days after fusion, margin days included, as in LIS:
  `compute_NOBS` counts the clear bands of the cloud mask stack, which holds every date taken,
  margins included ("the number of clear observations to compute the SCD, SMOD and SOD").
- **NSP.** The number of snow periods (maximal runs of snow days) in the year's daily series,
  a period already under way on 1 September included. LIS counts rises (`np.diff(...) > 0`),
  which misses that one.
- **Never clear.** A pixel with no clear observation at all has no season: SCD, SOD, SMOD and
  NSP are no data, NOBS is 0 (LIS's gap filling returns 0 for it, so SCD 0).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sansnuages.formats.snow import SNOW
from sansnuages.period import MARGIN_DAYS, MAX_MARGIN_DAYS, HydrologicalYear

__all__ = ["MARGIN_DAYS", "MAX_MARGIN_DAYS", "HydrologicalYear"]

CLEAR_MAX = 100  # LIS's fusion threshold: a value at most this is a clear observation
FRACTION_SNOW_FROM = 50  # percent: a fractional pixel is snow from here on
LONGEST_MORE_THAN = 10  # SOD and SMOD only where the longest period lasts more than this

DAYS_NODATA = 65535  # SCD, SOD and SMOD (uint16)
NSP_NODATA = 255  # NSP (uint8): at most 183 periods fit in a year
NODATA: dict[str, int | None] = {
    "SCD": DAYS_NODATA,
    "SOD": DAYS_NODATA,
    "SMOD": DAYS_NODATA,
    "NOBS": None,  # 0 already says "never clear"
    "NSP": NSP_NODATA,
}

# A day number beyond any season's reach (margins up to MAX_MARGIN_DAYS), for "no clear
# observation on that side"; keys of 2 * (day + _FAR) + 1 still fit in int16.
_FAR = 4096


@dataclass(frozen=True, eq=False)
class DatedCodes:
    """One snow map's codes over the window, on the season's grid. `rank` orders the products
    of one day for the fusion: 0 for the main products (Sentinel-2), 1 for the densification
    products (Landsat-8); equal ranks keep their order in the sequence."""

    date: dt.date
    codes: np.ndarray
    rank: int = 0


@dataclass(frozen=True, eq=False)
class DayStack:
    """The fused codes of each observation day, ascending and distinct."""

    days: np.ndarray  # (T,) int16, days since 1 September
    codes: np.ndarray  # (T, rows, cols)


@dataclass(frozen=True, eq=False)
class SeasonLayers:
    """A season's layers over a window: SCD, SOD, SMOD uint16 (no data `DAYS_NODATA`), NOBS
    uint16 (no nodata: 0 is "never clear"), NSP uint8 (no data `NSP_NODATA`)."""

    scd: np.ndarray
    sod: np.ndarray
    smod: np.ndarray
    nobs: np.ndarray
    nsp: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """By product name, the keys of `NODATA`."""
        layers = (self.scd, self.sod, self.smod, self.nobs, self.nsp)
        return dict(zip(NODATA, layers, strict=True))


def is_clear(codes: np.ndarray) -> np.ndarray:
    """Snow, no snow or a snow fraction: what LIS's fusion and binary masks treat as seen.
    Anything else (cloud 205, no data 254 or 255, or an unexpected code) is not clear."""
    values = np.asarray(codes)
    if values.dtype.kind in "ub":  # never negative: one pass over a tile's codes, not three
        return values <= CLEAR_MAX
    return (values >= 0) & (values <= CLEAR_MAX)


def decode(codes: np.ndarray, snow_from: int = FRACTION_SNOW_FROM) -> tuple[np.ndarray, np.ndarray]:
    """(snow, clear) booleans of L2B-SNOW codes, binary (0/100) and fractional (0..100) alike:
    snow where clear and at least `snow_from` percent, never where not clear."""
    if not 1 <= snow_from <= SNOW:
        raise ValueError(f"snow_from must be a percentage within 1..{SNOW}")
    values = np.asarray(codes)
    clear = is_clear(values)
    return clear & (values >= snow_from), clear


def merge_same_day(stack_in_priority_order: Sequence[np.ndarray]) -> np.ndarray:
    """One day's products fused: per pixel the first clear value in the given order. Where none
    is clear, the last product's code, as LIS's nested BandMath expression gives."""
    if not stack_in_priority_order:
        raise ValueError("nothing to merge")
    merged = np.asarray(stack_in_priority_order[-1]).copy()
    for codes in reversed(stack_in_priority_order[:-1]):
        merged = np.where(is_clear(codes), codes, merged)
    return merged


def stack_days(observations: Sequence[DatedCodes], year: HydrologicalYear) -> DayStack:
    """The season's observation days, each day's products fused by rank; products outside the
    year and its margins are left out, as LIS discards them."""
    shape = _common_shape(observations)
    by_day: dict[int, list[DatedCodes]] = {}
    for obs in observations:
        if year.takes(obs.date):
            by_day.setdefault(year.day_index(obs.date), []).append(obs)
    days = sorted(by_day)
    dtype = np.result_type(*(obs.codes.dtype for obs in observations))
    codes = np.empty((len(days), *shape), dtype=dtype)
    for i, day in enumerate(days):
        ranked = sorted(by_day[day], key=lambda obs: obs.rank)
        codes[i] = merge_same_day([obs.codes for obs in ranked])
    return DayStack(np.array(days, dtype=np.int16), codes)


def _common_shape(observations: Sequence[DatedCodes]) -> tuple[int, ...]:
    """The window's shape, which every product must share (they are on one grid)."""
    if not observations:
        raise ValueError("no observations: the window's shape is unknown")
    shape = observations[0].codes.shape
    if len(shape) != 2 or any(obs.codes.shape != shape for obs in observations):
        raise ValueError("every snow map must cover the same 2-D window")
    return tuple(shape)


def season_of_window(
    observations: Sequence[DatedCodes],
    year: HydrologicalYear,
    snow_from: int = FRACTION_SNOW_FROM,
) -> SeasonLayers:
    """The season's layers over one window, from all its snow maps (any order)."""
    stack = stack_days(observations, year)
    shape = stack.codes.shape[1:]
    fold = SeasonFold(int(np.prod(shape)), year.n_days, snow_from)
    for day, codes in zip(stack.days, stack.codes, strict=True):
        fold.add(int(day), codes.reshape(-1))
    layers, _ = fold.finish()
    return SeasonLayers(*(layer.reshape(shape) for layer in layers.as_dict().values()))


class SeasonFold:
    """A season's layers over a set of pixels, built one observation day at a time, in day
    order: the daily series is a step function that only changes between two clear
    observations that disagree, at their midpoint, so a pixel's snow periods open and close
    at those observations, and each day updates a few numbers per pixel.

    Per day, a handful of passes over the day's codes find the clear pixels whose snow state
    changes (a few per cent of them); only those are updated, by index. Memory is about 20
    bytes per pixel whatever the number of days, and a day costs about 2 ns a pixel here: a
    quarter of a computation vectorised over pixels and days at once, which holds and rescans
    (days x pixels) arrays of keys and bounds.

    `counted` (bool per pixel, all by default) says which pixels count in the season plot's
    figures: the clear and snow pixels `add` returns and the daily snow-covered area."""

    def __init__(
        self,
        pixels: int,
        n_days: int,
        snow_from: int = FRACTION_SNOW_FROM,
        counted: np.ndarray | None = None,
    ) -> None:
        decode(np.zeros(0, np.uint8), snow_from)  # raises for a percentage out of 1..100
        self._n_days = n_days
        self._snow_from = snow_from
        self._counted = None if counted is None else np.asarray(counted, bool).reshape(-1)
        self._day: int | None = None
        self._last_clear = np.zeros(pixels, np.int16)  # day + _FAR; 0: none, far before
        self._in_snow = np.zeros(pixels, bool)  # the last clear observation was snow
        self._opened = np.zeros(pixels, np.int16)  # first day of the period under way
        self._nobs = np.zeros(pixels, np.uint16)
        self._scd = np.zeros(pixels, np.int16)
        self._nsp = np.zeros(pixels, np.uint8)
        self._longest = np.zeros(pixels, np.int16)
        self._sod = np.zeros(pixels, np.int16)
        self._smod = np.zeros(pixels, np.int16)
        self._clear, self._snow, self._change = (np.empty(pixels, bool) for _ in range(3))
        self._stamp = np.empty(pixels, np.int16)
        self._starts: list[np.ndarray] = []  # first days of the counted periods
        self._ends: list[np.ndarray] = []  # and the days after their last

    def add(self, day: int, codes: np.ndarray) -> tuple[int, int]:
        """One observation day's codes (fused already, one per pixel); returns its clear and
        snow pixels among those counted."""
        if self._day is not None and day <= self._day:
            raise ValueError(f"observation days must ascend: {day} after {self._day}")
        self._day = day
        clear, snow, change = self._clear, self._snow, self._change
        np.less_equal(codes, CLEAR_MAX, out=clear)
        np.greater_equal(codes, self._snow_from, out=snow)
        snow &= clear
        np.not_equal(snow, self._in_snow, out=change)
        change &= clear
        at = np.flatnonzero(change)
        if len(at):
            opening = snow[at]
            opens, closes = at[opening], at[~opening]
            # A period starts on the first day from the midpoint with the last clear day (no
            # snow, or none: far before), and ends on the last day up to it.
            start = (self._last_clear[opens] + (day + 1 - _FAR)) >> 1
            self._opened[opens] = np.clip(start, 0, self._n_days)
            self._close(closes, (self._last_clear[closes] + (day - _FAR)) >> 1)
            self._in_snow[at] = opening
        # Days ascend, so the last clear day is a running maximum: a masked copy costs about
        # twenty times as much.
        np.multiply(clear, np.int16(day + _FAR), out=self._stamp)
        np.maximum(self._last_clear, self._stamp, out=self._last_clear)
        np.add(self._nobs, clear.view(np.uint8), out=self._nobs)
        if self._counted is not None:
            clear, snow = clear & self._counted, snow & self._counted
        return int(np.count_nonzero(clear)), int(np.count_nonzero(snow))

    def finish(self) -> tuple[SeasonLayers, np.ndarray]:
        """The layers (one value per pixel) and, per day of the year, the counted pixels
        that are snow in the gap-filled daily series (from each period's first and last days,
        a difference array: never the daily series itself)."""
        under_way = np.flatnonzero(self._in_snow)  # the last clear value is held to the end
        self._close(under_way, np.full(len(under_way), self._n_days - 1, np.int16))
        self._in_snow[:] = False
        size = self._n_days + 1
        starts = np.bincount(np.concatenate(self._starts), minlength=size)  # first <= last
        ends = np.bincount(np.concatenate(self._ends), minlength=size)  # < n_days there
        daily = np.cumsum(starts - ends)[: self._n_days]
        never = self._nobs == 0
        dated = ~never & (self._longest > LONGEST_MORE_THAN)
        layers = SeasonLayers(
            np.where(never, DAYS_NODATA, self._scd).astype(np.uint16),
            np.where(dated, self._sod, DAYS_NODATA).astype(np.uint16),
            np.where(dated, self._smod, DAYS_NODATA).astype(np.uint16),
            self._nobs.copy(),
            np.where(never, NSP_NODATA, self._nsp).astype(np.uint8),
        )
        return layers, daily

    def _close(self, at: np.ndarray, last: np.ndarray) -> None:
        """Periods of pixels `at` end on day `last`: clipped to the year (a period outside it
        lasts 0 days and is not one), summed, counted and kept if the longest yet (the
        earliest of equals, as LIS's `max`)."""
        last = np.clip(last, -1, self._n_days - 1).astype(np.int16)
        first = self._opened[at]
        length = last + 1 - first
        self._scd[at] += length
        self._nsp[at] += length > 0
        longer = length > self._longest[at]
        where = at[longer]
        self._longest[where] = length[longer]
        self._sod[where] = first[longer]
        self._smod[where] = last[longer]
        kept = length > 0
        if self._counted is not None:
            kept &= self._counted[at]
        self._starts.append(first[kept])
        self._ends.append(last[kept] + 1)


def _flat(cube: np.ndarray) -> np.ndarray:
    """(T, rows, cols) as (T, pixels), also when T is 0."""
    return cube.reshape(cube.shape[0], int(np.prod(cube.shape[1:])))


def _running_max(values: np.ndarray, backwards: bool = False) -> np.ndarray:
    """In place along the first axis, one row at a time: much faster than
    `np.maximum.accumulate(axis=0)`, which does not vectorise over the other axis."""
    rows = range(len(values) - 2, -1, -1) if backwards else range(1, len(values))
    step = 1 if backwards else -1
    for k in rows:
        np.maximum(values[k + step], values[k], out=values[k])
    return values


def _clear_keys(
    days: np.ndarray, snow: np.ndarray, clear: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(T + 1, pixels) each: `back[k]` is the last clear observation among 0..k-1, `ahead[k]`
    the first among k..T-1, as int16 keys.

    A clear observation on day t with snow s is `2 * (t + _FAR) + s` looking back and
    `2 * (_FAR - t) + s` looking ahead, so the latest (earliest) is the largest and running
    maxima find it; 0 where there is none, which reads as a snow-free day `_FAR` days away.
    That far day is what makes the rules hold without a branch: the nearest clear value is
    held beyond the ends, and a pixel never clear stays snow-free."""
    count, pixels = clear.shape
    t = days.astype(np.int16)[:, None]
    back = np.zeros((count + 1, pixels), dtype=np.int16)
    np.multiply(clear, 2 * (t + _FAR), out=back[1:])
    back[1:] += snow  # snow is only ever set where clear
    ahead = np.zeros((count + 1, pixels), dtype=np.int16)
    np.multiply(clear, 2 * (_FAR - t), out=ahead[:-1])
    ahead[:-1] += snow
    return _running_max(back), _running_max(ahead, backwards=True)


def _day_back(key: np.ndarray) -> np.ndarray:
    return (key >> 1) - _FAR


def _day_ahead(key: np.ndarray) -> np.ndarray:
    return _FAR - (key >> 1)


def daily_snow(
    observations: Sequence[DatedCodes],
    year: HydrologicalYear,
    snow_from: int = FRACTION_SNOW_FROM,
) -> np.ndarray:
    """The gap-filled daily series of the year (n_days, rows, cols), bool: for the season plot
    (snow-covered area per day) and straightforward whole-cube implementations. Never-clear
    pixels read no snow. Memory is a few times n_days times the window, in int16."""
    stack = stack_days(observations, year)
    snow, clear = decode(stack.codes, snow_from)
    back, ahead = _clear_keys(stack.days, _flat(snow), _flat(clear))
    day = np.arange(year.n_days, dtype=np.int16)
    split = np.searchsorted(stack.days, day, side="right")  # observations on or before / after
    before, after = back[split], ahead[split]
    t0, s0 = _day_back(before), before & 1
    t1, s1 = _day_ahead(after), after & 1
    day = day[:, None]
    snowy = 2 * (s0 * (t1 - day) + s1 * (day - t0)) >= t1 - t0
    return snowy.reshape(year.n_days, *stack.codes.shape[1:])


def season_reference(
    observations: Sequence[DatedCodes],
    year: HydrologicalYear,
    snow_from: int = FRACTION_SNOW_FROM,
) -> SeasonLayers:
    """The same rules, pixel by pixel and day by day in plain Python, to check
    `season_of_window` against: slow, for small windows only."""
    shape = _common_shape(observations)
    ordered = _reference_order(observations)
    layers = np.zeros((5, *shape), dtype=np.int64)
    for row, col in np.ndindex(*shape):
        seen = _reference_clear_days(ordered, year, (row, col), snow_from)
        layers[:, row, col] = _reference_pixel(_reference_daily(seen, year.n_days), len(seen))
    scd, sod, smod, nobs, nsp = layers
    return SeasonLayers(
        scd.astype(np.uint16),
        sod.astype(np.uint16),
        smod.astype(np.uint16),
        nobs.astype(np.uint16),
        nsp.astype(np.uint8),
    )


def daily_reference(
    observations: Sequence[DatedCodes],
    year: HydrologicalYear,
    snow_from: int = FRACTION_SNOW_FROM,
) -> np.ndarray:
    """`daily_snow` pixel by pixel in plain Python."""
    shape = _common_shape(observations)
    ordered = _reference_order(observations)
    out = np.zeros((year.n_days, *shape), dtype=bool)
    for row, col in np.ndindex(*shape):
        seen = _reference_clear_days(ordered, year, (row, col), snow_from)
        out[:, row, col] = _reference_daily(seen, year.n_days)
    return out


def _reference_order(observations: Sequence[DatedCodes]) -> list[DatedCodes]:
    """By day, then rank, then sequence order (a stable sort)."""
    return sorted(observations, key=lambda obs: (obs.date.toordinal(), obs.rank))


def _reference_clear_days(
    ordered: list[DatedCodes],
    year: HydrologicalYear,
    pixel: tuple[int, int],
    snow_from: int,
) -> dict[int, bool]:
    """Day -> snow, for the days with a clear observation: the first clear product of the day
    in `_reference_order` wins."""
    seen: dict[int, bool] = {}
    for obs in ordered:
        value, day = int(obs.codes[pixel]), year.day_index(obs.date)
        if year.takes(obs.date) and 0 <= value <= CLEAR_MAX and day not in seen:
            seen[day] = value >= snow_from
    return seen


def _reference_daily(seen: dict[int, bool], n_days: int) -> list[bool]:
    """Each day of the year: its own observation, else the linear interpolation between the
    clear days around it (as a fraction) at least 1/2, else the nearest end held."""
    days = sorted(seen)
    series = []
    for day in range(n_days):
        i = bisect_right(days, day)
        if not days:
            series.append(False)
        elif i > 0 and days[i - 1] == day:
            series.append(seen[day])
        elif i == 0 or i == len(days):
            series.append(seen[days[0] if i == 0 else days[-1]])
        else:
            t0, t1 = days[i - 1], days[i]
            value = Fraction(seen[t0] * (t1 - day) + seen[t1] * (day - t0), t1 - t0)
            series.append(value >= Fraction(1, 2))
    return series


def _reference_pixel(series: list[bool], nobs: int) -> tuple[int, int, int, int, int]:
    """(SCD, SOD, SMOD, NOBS, NSP) of one pixel's daily series, with their no data."""
    if nobs == 0:
        return DAYS_NODATA, DAYS_NODATA, DAYS_NODATA, 0, NSP_NODATA
    periods: list[tuple[int, int]] = []
    for day, snow in enumerate(series):
        if snow and periods and periods[-1][1] == day - 1:
            periods[-1] = (periods[-1][0], day)
        elif snow:
            periods.append((day, day))
    longest = max(periods, key=lambda p: p[1] - p[0], default=None)  # the first of the longest
    if longest is None or longest[1] - longest[0] + 1 <= LONGEST_MORE_THAN:
        longest = (DAYS_NODATA, DAYS_NODATA)
    return sum(series), longest[0], longest[1], nobs, len(periods)
