from datetime import UTC, date, datetime

import pytest

from sansnuages.errors import InvalidRequest
from sansnuages.period import SynthesisPeriod, latest_closed_period


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
