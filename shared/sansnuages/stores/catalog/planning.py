"""Search planning over the catalog records: which partitions a query reads, in which order,
where a page resumes and what can be counted without reading. Pure: no table is touched."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sansnuages import errors
from sansnuages.stac.extents import (
    Bbox,
    DatetimeRange,
    bbox_intersects,
    iso,
    item_bbox,
    item_interval,
)
from sansnuages.stores.catalog.records import TILE_PROPERTY, Summary, month_end, month_start

MAX_BATCH = 1000
"""Most records one query of a stream asks for (DynamoDB also stops at 1 MB)."""


MAX_TILE_STREAMS = 12
"""A bbox touching at most this many tiles reads their tile partitions instead of the months."""


MAX_CELLS = 4
"""A bbox over more cells than this touches more than MAX_TILE_STREAMS tiles: read the months."""


Matcher = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    next_token: str | None
    records_read: int
    tokens: list[str] = field(default_factory=list)
    """The token that resumes after each returned item, so a caller can cut a page short."""
    matched: int | None = None
    """How many items the whole search matches, when the index knows without reading them."""
    budget_spent: bool = False
    """Whether the page ended because the search read all its budget allowed: `next_token`
    then resumes after the last record read, whether or not it matched."""


@dataclass(frozen=True)
class ReadBudget:
    """The most one search may read of the index: records (as DynamoDB counts them scanned)
    and queries (each a round trip). When either is spent, the search stops where it is and
    answers with what it found so far (possibly nothing) and a token that resumes there, so that
    a filter matching nothing costs each request a bounded read, however large the catalog."""

    records: int
    queries: int


@dataclass
class Reading:
    """What a search has read so far, against its budget (None: no limit)."""

    budget: ReadBudget | None = None
    records: int = 0
    queries: int = 0

    def spent(self) -> bool:
        budget = self.budget
        return budget is not None and (
            self.records >= budget.records or self.queries >= budget.queries
        )

    def limit(self, wanted: int) -> int:
        """Records the next query may ask for: `wanted`, within what the budget has left (at
        least one, for a stream that must read on before it may stop)."""
        if self.budget is None:
            return wanted
        return max(1, min(wanted, self.budget.records - self.records))

    def add(self, response: Mapping[str, Any]) -> None:
        self.queries += 1
        self.records += int(response.get("ScannedCount", len(response.get("Items", []))))


@dataclass(frozen=True)
class Partition:
    """One range query of a search plan: a partition key and optional sort key bounds."""

    pk: str
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True)
class Stream:
    """Partitions of one collection whose records, read one after the other, stay sorted."""

    collection: str
    partitions: tuple[Partition, ...]


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last (sort key, collection) returned, in the merge order."""

    sk: str
    collection: str

    def token(self, descending: bool) -> str:
        return encode_token({"sk": self.sk, "c": self.collection, "o": "d" if descending else "a"})

    def before(self, key: tuple[str, str, str | None], descending: bool) -> bool:
        """Whether a record comes after this position in the merge order (not yet returned)."""
        here = (self.sk, self.collection)
        return key[:2] < here if descending else key[:2] > here

    @classmethod
    def from_token(cls, position: Mapping[str, str], descending: bool) -> Position:
        sk, collection = position.get("sk"), position.get("c")
        if sk is None or collection is None:
            raise errors.InvalidRequest("paging token does not belong to this search")
        if position.get("o", "a") != ("d" if descending else "a"):
            raise errors.InvalidRequest("paging token was made for the other sort order")
        return cls(sk, collection)


@dataclass(frozen=True)
class Query:
    """A normalised search, shared by the partition and the id access paths."""

    bbox: Bbox | None = None
    datetime_range: DatetimeRange | None = None
    filters: Mapping[str, object] = field(default_factory=dict)
    match: Matcher | None = None
    descending: bool = False

    @property
    def filtered(self) -> bool:
        """Whether records read may be rejected after reading (then queries grow larger)."""
        return self.bbox is not None or bool(self.filters) or self.match is not None

    def accepts(self, item: Mapping[str, Any]) -> bool:
        return matches(item, self) and (self.match is None or self.match(item))


def encode_token(position: Mapping[str, str]) -> str:
    raw = json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidRequest("malformed paging token") from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.InvalidRequest("malformed paging token")
    return value


def sort_key_bounds(datetime_range: DatetimeRange | None) -> tuple[str | None, str | None]:
    """Sort key bounds for a closed time range; '$' sorts after the '#' that ends every instant."""
    start, end = datetime_range or (None, None)
    return (iso(start) if start else None, f"{iso(end)}$" if end else None)


def months_in_range(months: frozenset[str], low: str | None, high: str | None) -> list[str]:
    return sorted(
        m for m in months if (low is None or m >= low[:7]) and (high is None or m <= high[:7])
    )


def resume_bounds(query: Query, position: Position | None) -> tuple[str | None, str | None]:
    """Sort key bounds of a search, narrowed to what follows the paging position."""
    low, high = sort_key_bounds(query.datetime_range)
    if position is None:
        return low, high
    if query.descending:
        return low, position.sk if high is None else min(high, position.sk)
    return position.sk if low is None else max(low, position.sk), high


def stream_keys(
    collection_id: str,
    summary: Summary,
    query: Query,
    bounds: tuple[str | None, str | None],
    extents: Mapping[str, Bbox] | None = None,
) -> list[list[str]]:
    """Partition keys of one collection's streams: one per tile, or the months in order.

    `extents` are the tiles near the query's bbox (None: unknown, the months must be read).
    """
    low, high = bounds
    tile = query.filters.get(TILE_PROPERTY)
    if isinstance(tile, str):
        return [[f"tile#{collection_id}#{tile}"]] if summary.months else []
    touched = None
    if query.bbox is not None and extents is not None:
        touched = tiles_touching(extents, query.bbox)
    if touched is not None:
        return [[f"tile#{collection_id}#{t}"] for t in touched]
    months = months_in_range(summary.months, low, high)
    if not months:
        return []
    ordered = reversed(months) if query.descending else months
    return [[f"item#{collection_id}#{m}" for m in ordered]]


@dataclass(frozen=True)
class CountPlan:
    """How to count a search from month counts: the months, and a sliver at the end (the time
    between the search's end and its month's end) to count and take away."""

    months: tuple[str, ...]
    sliver: tuple[str, str] | None = None
    """(month, sort key bound): the items of that month after the bound are not matched."""


def count_plan(query: Query, months: frozenset[str]) -> CountPlan | None:
    """A plan to count a search's matches from month counts, or None when only reading would.

    Counted: no bbox, filter or id; a time range that starts at a month's start (or is open)
    and ends within its month's last second (or is open), as pystac-client writes "2018-07".
    """
    if query.filtered:
        return None
    start, end = query.datetime_range or (None, None)
    low, high = sort_key_bounds(query.datetime_range)
    if start is not None and start != month_start(iso(start)[:7]):
        return None
    sliver = None
    if end is not None:
        last = month_end(iso(end)[:7])
        if last - end >= timedelta(seconds=1):
            return None
        if end != last:
            sliver = (iso(end)[:7], high or "")
    return CountPlan(tuple(months_in_range(months, low, high)), sliver)


def first_batch(limit: int, streams: int) -> int:
    """Records the first query of each stream asks for: the page's share, plus one to peek."""
    if streams <= 1:
        return limit + 1
    return max(2, -(-(limit + 1) // streams))


def merge_order(key: tuple[str, str, str | None]) -> tuple[str, str]:
    return key[0], key[1]


def matches(item: Mapping[str, Any], query: Query) -> bool:
    """Post-filter checks on a decoded Item: bbox intersection and property equalities."""
    if query.bbox is not None:
        box = item_bbox(item)
        if box is None or not bbox_intersects(box, query.bbox):
            return False
    props = item.get("properties") or {}
    return all(props.get(name) == value for name, value in query.filters.items())


def in_time_range(item: Mapping[str, Any], datetime_range: DatetimeRange | None) -> bool:
    low, high = sort_key_bounds(datetime_range)
    key = iso(item_interval(item)[0])
    return (low is None or key >= low) and (high is None or key <= high)


def range_query(table: str, partition: Partition, after: str | None) -> dict[str, Any]:
    condition = "pk = :pk"
    values: dict[str, Any] = {":pk": {"S": partition.pk}}
    if partition.low is not None and partition.high is not None:
        condition += " AND sk BETWEEN :low AND :high"
    elif partition.low is not None:
        condition += " AND sk >= :low"
    elif partition.high is not None:
        condition += " AND sk <= :high"
    if partition.low is not None:
        values[":low"] = {"S": partition.low}
    if partition.high is not None:
        values[":high"] = {"S": partition.high}
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = {"pk": {"S": partition.pk}, "sk": {"S": after}}
    return kwargs


def tiles_touching(extents: Mapping[str, Bbox], box: Bbox) -> list[str] | None:
    """The tiles whose items may intersect `box`, or None when there are too many to read."""
    touched = sorted(t for t, extent in extents.items() if bbox_intersects(extent, box))
    return touched if len(touched) <= MAX_TILE_STREAMS else None
