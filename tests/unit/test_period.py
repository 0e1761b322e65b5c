from datetime import UTC, date, datetime

import pytest

from sansnuages.errors import InvalidRequest
from sansnuages.period import (
    HydrologicalYear,
    SynthesisPeriod,
    latest_closed_period,
    latest_closed_season,
    parse_job_period,
)


def test_window_is_46_days_centred_on_the_15th() -> None:
    period = SynthesisPeriod.parse("2018-07")
    assert period.centre == date(2018, 7, 15)
    assert period.start.date() == date(2018, 6, 22)
    assert period.end.date() == date(2018, 8, 7)
    assert (period.end.date() - period.start.date()).days + 1 == 47  # 23 days each side of the 15th


def test_window_crossing_new_year() -> None:
    period = SynthesisPeriod.parse("2019-01")
    assert period.start.date() == date(2018, 12, 23)


@pytest.mark.parametrize("text", ["2018-13", "2018/07", "July", ""])
def test_bad_months_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        SynthesisPeriod.parse(text)


def test_schedule_on_the_tenth_makes_the_previous_month() -> None:
    assert latest_closed_period(datetime(2018, 8, 10, 3, tzinfo=UTC)).label == "2018-07"


def test_schedule_before_the_window_closes_goes_back_further() -> None:
    # On 5 August the July window (to 7 August) is still open: June is the latest closed month.
    assert latest_closed_period(datetime(2018, 8, 5, tzinfo=UTC)).label == "2018-06"
    assert latest_closed_period(datetime(2019, 1, 10, tzinfo=UTC)).label == "2018-12"


def test_a_snow_season_is_named_by_the_year_it_ends_in() -> None:
    season = HydrologicalYear.parse("2018")
    assert season == HydrologicalYear.parse("snow-2018") == HydrologicalYear(2018)
    assert (season.start, season.end, season.label) == (
        date(2017, 9, 1),
        date(2018, 8, 31),
        "snow-2018",
    )
    first, last = season.inputs_range
    assert (first.date(), last.date()) == (date(2017, 8, 17), date(2018, 9, 15))
    assert last.time() == datetime.max.time() and first.tzinfo == UTC


@pytest.mark.parametrize("text", ["18", "2018-07", "snow-", "snow-20188", "1800", "winter-2018"])
def test_a_malformed_season_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        HydrologicalYear.parse(text)


def test_a_job_period_is_a_month_or_a_season() -> None:
    assert parse_job_period("2018-07") == SynthesisPeriod(2018, 7)
    assert parse_job_period("snow-2018") == HydrologicalYear(2018)
    with pytest.raises(InvalidRequest):
        parse_job_period("snow-18")


@pytest.mark.parametrize(
    ("now", "year"),
    [
        (datetime(2018, 9, 15, 23, 0, tzinfo=UTC), 2017),  # the margin of 2018 is still open
        (datetime(2018, 9, 16, 0, 1, tzinfo=UTC), 2018),
        (datetime(2019, 3, 1, tzinfo=UTC), 2018),
    ],
)
def test_the_latest_closed_season_waits_for_its_margin(now: datetime, year: int) -> None:
    assert latest_closed_season(now) == HydrologicalYear(year)
    assert latest_closed_season(now, lag_days=400).year < year
