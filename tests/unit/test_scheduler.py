from datetime import UTC, datetime

import pytest

from sansnuages.tools.local.scheduler import next_fire, schedule_event


def test_monthly_cron_fires_on_the_tenth_at_three() -> None:
    after = datetime(2018, 7, 20, 12, 0, tzinfo=UTC)
    assert next_fire("cron(0 3 10 * ? *)", after) == datetime(2018, 8, 10, 3, 0, tzinfo=UTC)


def test_cron_fires_strictly_after_the_given_time() -> None:
    at = datetime(2018, 8, 10, 3, 0, tzinfo=UTC)
    assert next_fire("cron(0 3 10 * ? *)", at) == datetime(2018, 9, 10, 3, 0, tzinfo=UTC)


def test_cron_lists_ranges_and_weekdays() -> None:
    monday = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)  # a Monday
    # 2-6 = Monday..Friday in EventBridge (1 = Sunday)
    assert next_fire("cron(30 8,17 ? * 2-6 *)", monday) == datetime(2024, 1, 1, 8, 30, tzinfo=UTC)
    saturday = datetime(2024, 1, 6, 0, 0, tzinfo=UTC)
    assert next_fire("cron(30 8 ? * 2-6 *)", saturday) == datetime(2024, 1, 8, 8, 30, tzinfo=UTC)


def test_rate_expressions() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert next_fire("rate(5 minutes)", at) == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert next_fire("rate(1 day)", at) == datetime(2024, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["every day", "cron(0 3 10 *)", "rate(five minutes)"])
def test_bad_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        next_fire(expression, datetime(2024, 1, 1, tzinfo=UTC))


def test_scheduled_time_placeholder_is_filled() -> None:
    event = schedule_event(
        '{"area": "Belgium", "scheduled_time": "<aws.scheduler.scheduled-time>"}',
        datetime(2018, 8, 10, 3, 0, tzinfo=UTC),
    )
    assert event == {"area": "Belgium", "scheduled_time": "2018-08-10T03:00:00Z"}
