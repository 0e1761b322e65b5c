"""EventBridge Scheduler, played locally: fires the template's schedules (moto never does) and
lets a person fire one by hand with the time it should pretend to be."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def _field_values(text: str, low: int, high: int) -> set[int] | None:
    """Values of one cron field; None means any (`*` or `?`)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part in ("*", ""):
            start, stop = low, high
        elif "-" in part:
            start, stop = (int(v) for v in part.split("-"))
        else:
            start = stop = int(part)
            if step > 1:
                stop = high
        values.update(range(start, stop + 1, step))
    return values


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time strictly after `after` at which the schedule fires (UTC)."""
    rate = _RATE.match(expression)
    if rate:
        unit = rate.group(2).rstrip("s")
        return after + timedelta(seconds=int(rate.group(1)) * _UNITS[unit])
    cron = _CRON.match(expression)
    if not cron:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"a cron expression has six fields: {expression!r}")
    minutes, hours, days, months = (
        _field_values(fields[0], 0, 59),
        _field_values(fields[1], 0, 23),
        _field_values(fields[2], 1, 31),
        _field_values(fields[3], 1, 12),
    )
    weekdays = _field_values(fields[4], 1, 7)  # 1 = Sunday in EventBridge cron
    candidate = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 366 * 2):
        if (
            (months is None or candidate.month in months)
            and (days is None or candidate.day in days)
            and (weekdays is None or (candidate.isoweekday() % 7) + 1 in weekdays)
            and (hours is None or candidate.hour in hours)
            and (minutes is None or candidate.minute in minutes)
        ):
            return candidate
        candidate += timedelta(minutes=1)
    raise ValueError(f"{expression!r} never fires")


def schedule_event(input_text: str | None, fired: datetime) -> dict[str, Any]:
    stamp = fired.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if input_text is None:
        return {
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "time": stamp,
            "detail": {},
        }
    return dict(json.loads(input_text.replace(SCHEDULED_TIME, stamp)))


@dataclass
class LocalSchedule:
    name: str
    function: str
    expression: str
    input_text: str | None


class Scheduler(threading.Thread):
    def __init__(
        self,
        schedules: list[LocalSchedule],
        fire: Callable[[LocalSchedule, datetime], Any],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.schedules, self.fire, self.stop_event = schedules, fire, stop

    def run(self) -> None:
        upcoming = {s.name: next_fire(s.expression, datetime.now(UTC)) for s in self.schedules}
        while upcoming and not self.stop_event.is_set():
            name, when = min(upcoming.items(), key=lambda pair: pair[1])
            wait = (when - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self.stop_event.wait(min(wait, 30))
                continue
            schedule = next(s for s in self.schedules if s.name == name)
            self.fire(schedule, when)
            upcoming[name] = next_fire(schedule.expression, when)
