"""Bounding boxes and datetimes of STAC Items: how every store and route reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sansnuages import errors

Bbox = tuple[float, float, float, float]


DatetimeRange = tuple[datetime | None, datetime | None]


def iso(value: datetime) -> str:
    """A fixed-width UTC timestamp, so that lexical order is chronological order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise errors.InvalidRequest(f"not an RFC 3339 datetime: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def item_interval(item: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The instant that places the item in time (its sort key) and the end of its interval."""
    props = item.get("properties") or {}
    start_text = props.get("datetime") or props.get("start_datetime")
    if not start_text:
        raise errors.InvalidRequest(
            f"item {item.get('id')!r} has neither datetime nor start_datetime"
        )
    start = parse_datetime(start_text)
    end_text = props.get("end_datetime")
    return start, max(start, parse_datetime(end_text)) if end_text else start


def item_bbox(item: Mapping[str, Any]) -> Bbox | None:
    box = item.get("bbox")
    if not box:
        return None
    return normalise_bbox(box)


def normalise_bbox(box: Sequence[float]) -> Bbox:
    """2D bbox from a 4 or 6 number STAC bbox."""
    if len(box) == 6:
        return (float(box[0]), float(box[1]), float(box[3]), float(box[4]))
    if len(box) == 4:
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    raise errors.InvalidRequest(f"a bbox has 4 or 6 numbers, not {len(box)}")


def _bbox_union(a: Bbox | None, b: Bbox | None) -> Bbox | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _x_ranges(box: Bbox) -> list[tuple[float, float]]:
    """Longitude ranges of a bbox; one that crosses the antimeridian (xmin > xmax) has two."""
    if box[0] <= box[2]:
        return [(box[0], box[2])]
    return [(box[0], 180.0), (-180.0, box[2])]


def bbox_intersects(a: Bbox, b: Bbox) -> bool:
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(ax0 <= bx1 and bx0 <= ax1 for ax0, ax1 in _x_ranges(a) for bx0, bx1 in _x_ranges(b))
