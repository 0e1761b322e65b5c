"""The search index: a DynamoDB cache of the STAC Item JSON files, which stay the source of truth.

Records are keyed so that a search reads about as many records as it returns, never the table:

- an Item lives under ``pk = "item#{collection}#{yyyy-mm}"``, ``sk = "{utc datetime}#{id}"``, so a
  collection and a time range are a few range queries over monthly partitions;
- the same Item is copied under ``pk = "tile#{collection}#{grid:code}"`` (same ``sk``), so "this
  tile's items in this window" (the planner and the compositor) is one range query;
- the primary record carries ``item_key = "{collection}/{id}"``, indexed by the sparse GSI
  ``by_id``, so lookups by id need no datetime;
- a collection lives under ``pk = "collection"``, ``sk = id``, with its JSON, the string set
  ``months`` of the partitions holding items, the extent of its items and the string set
  ``cells`` of the 10-degree cells where its tiles lie, and a count of items per month
  (``count#yyyy-mm``, changed in the same transaction as the item's primary record), so that a
  search by collection and whole months knows ``numberMatched`` without reading the items;
- the extents of a collection's tiles are kept per cell, under ``pk = "cells#{collection}"``,
  ``sk = cell``, so that a small bbox reads one or two cell records to find the tile partitions
  it touches. One record for all the tiles of a collection would pass DynamoDB's 400 KB item
  limit at about 8,000 tiles (51 bytes a tile by DynamoDB's sizing rules; 2.9 MB for the 57,000
  Sentinel-2 tiles of the world); the busiest cell of the world holds about 190 tiles (10 KB).

Paging tokens are positions (partition and last sort key returned), so pages never skip or repeat
records, whatever was written in between.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from sansnuages import errors
from sansnuages.settings import Settings
from sansnuages.stores import aws

COLLECTION_PK = "collection"
GSI_NAME = "by_id"
TILE_PROPERTY = "grid:code"
MAX_SUMMARY_ATTEMPTS = 8
MAX_BATCH = 1000
"""Most records one query of a stream asks for (DynamoDB also stops at 1 MB)."""
MAX_TILE_STREAMS = 12
"""A bbox touching at most this many tiles reads their tile partitions instead of the months."""
CELL_DEGREES = 10
"""Side of the lon/lat cells that shard tile extents (a Sentinel-2 tile is about 1 degree)."""
MAX_CELLS = 4
"""A bbox over more cells than this touches more than MAX_TILE_STREAMS tiles: read the months."""
CELLS_PREFIX = "cells#"
COUNT_PREFIX = "count#"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Bbox = tuple[float, float, float, float]
DatetimeRange = tuple[datetime | None, datetime | None]
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

    def before(self, key: tuple[str, str, str], descending: bool) -> bool:
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


@dataclass(frozen=True)
class Summary:
    """What a collection record knows about its items: partitions, extent and tiles."""

    months: frozenset[str] = frozenset()
    bbox: Bbox | None = None
    start: str | None = None
    end: str | None = None
    version: int | None = None
    cells: frozenset[str] = frozenset()
    """The cells holding the extents of the collection's tiles (records ``cells#{collection}``)."""
    untiled: bool = False
    """Some items have no tile: only the monthly partitions hold them all."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """Items per month, as counted by the writes of primary records (read only)."""

    def merged(
        self, month: str, bbox: Bbox | None, start: str, end: str, tile: str | None = None
    ) -> Summary:
        tiled = tile is not None and bbox is not None
        return replace(
            self,
            months=self.months | {month},
            bbox=_bbox_union(self.bbox, bbox),
            start=min(start, self.start) if self.start else start,
            end=max(end, self.end) if self.end else end,
            cells=self.cells | frozenset(cells_of(bbox)) if tiled else self.cells,  # type: ignore[arg-type]
            untiled=self.untiled or not tiled,
        )

    def covers(
        self, month: str, bbox: Bbox | None, start: str, end: str, cells: list[str], tiled: bool
    ) -> bool:
        """Whether merging this would change nothing (a bulk load merges mostly such items)."""
        return (
            month in self.months
            and (bbox is None or _bbox_union(self.bbox, bbox) == self.bbox)
            and self.start is not None
            and self.start <= start
            and self.end is not None
            and self.end >= end
            and (tiled or self.untiled)
            and self.cells.issuperset(cells)
        )

    def union(self, other: Summary) -> Summary:
        starts = [t for t in (self.start, other.start) if t]
        ends = [t for t in (self.end, other.end) if t]
        return replace(
            self,
            months=self.months | other.months,
            bbox=_bbox_union(self.bbox, other.bbox),
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            cells=self.cells | other.cells,
            untiled=self.untiled or other.untiled,
        )


TileExtents = dict[str, Bbox]
"""The extent of each tile's items, by tile code."""


@dataclass
class IndexDelta:
    """What a batch of Items adds to the summaries and tile cells of their collections."""

    summaries: dict[str, Summary] = field(default_factory=dict)
    cells: dict[tuple[str, str], TileExtents] = field(default_factory=dict)
    """Tile extents to merge, by (collection, cell)."""

    def add(
        self,
        collection_id: str,
        month: str,
        box: Bbox | None,
        start: str,
        end: str,
        tile: str | None,
    ) -> None:
        summary = self.summaries.get(collection_id, Summary())
        tiled = tile is not None and box is not None
        cells = cells_of(box) if tiled else []  # type: ignore[arg-type]
        if not summary.covers(month, box, start, end, cells, tiled):
            self.summaries[collection_id] = summary.merged(month, box, start, end, tile)
        if tile is not None and box is not None:
            for cell in cells:
                extents = self.cells.setdefault((collection_id, cell), {})
                extents[tile] = _bbox_union(extents.get(tile), box)  # type: ignore[assignment]


def cells_of(box: Bbox) -> list[str]:
    """Names of the CELL_DEGREES cells a lon/lat bbox meets (both sides of the antimeridian)."""
    last_row, last_column = 180 // CELL_DEGREES - 1, 360 // CELL_DEGREES - 1
    rows = range(
        min(max(int((box[1] + 90) // CELL_DEGREES), 0), last_row),
        min(max(int((box[3] + 90) // CELL_DEGREES), 0), last_row) + 1,
    )
    columns: set[int] = set()
    for x0, x1 in _x_ranges(box):
        first = min(max(int((x0 + 180) // CELL_DEGREES), 0), last_column)
        last = min(max(int((x1 + 180) // CELL_DEGREES), 0), last_column)
        columns.update(range(first, last + 1))
    return [
        f"{row * CELL_DEGREES - 90:+03d}{column * CELL_DEGREES - 180:+04d}"
        for row in rows
        for column in sorted(columns)
    ]


def tiles_touching(extents: Mapping[str, Bbox], box: Bbox) -> list[str] | None:
    """The tiles whose items may intersect `box`, or None when there are too many to read."""
    touched = sorted(t for t, extent in extents.items() if bbox_intersects(extent, box))
    return touched if len(touched) <= MAX_TILE_STREAMS else None


def extents_union(a: Mapping[str, Bbox], b: Mapping[str, Bbox]) -> TileExtents:
    union = dict(a)
    for code, extent in b.items():
        union[code] = _bbox_union(union.get(code), extent)  # type: ignore[assignment]
    return union


# --- pure helpers -------------------------------------------------------------------------


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


def month_of(sort_key: str) -> str:
    return sort_key[:7]


def item_sort_key(when: datetime, item_id: str) -> str:
    return f"{iso(when)}#{item_id}"


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


def month_start(month: str) -> datetime:
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)


def month_end(month: str) -> datetime:
    """The last microsecond of a month."""
    start = month_start(month)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return following - timedelta(microseconds=1)


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


def _order(key: tuple[str, str, str]) -> tuple[str, str]:
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


def _to_attrs(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in record.items() if v is not None}


def _from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in attrs.items()}


def _summary_from_record(record: Mapping[str, Any]) -> Summary:
    names = ("xmin", "ymin", "xmax", "ymax")
    bbox = tuple(float(record[n]) for n in names) if all(n in record for n in names) else None
    version = record.get("version")
    return Summary(
        months=frozenset(record.get("months") or ()),
        bbox=bbox,  # type: ignore[arg-type]
        start=record.get("tmin"),
        end=record.get("tmax"),
        version=int(version) if version is not None else None,
        cells=frozenset(record.get("cells") or ()),
        counts={
            name.removeprefix(COUNT_PREFIX): int(value)
            for name, value in record.items()
            if name.startswith(COUNT_PREFIX)
        },
        # A record written before tile cells existed cannot vouch for its tiles.
        untiled=bool(record.get("untiled")) or ("months" in record and "cells" not in record),
    )


def _extents_from_record(record: Mapping[str, Any]) -> TileExtents:
    return {
        code: tuple(float(v) for v in extent)  # type: ignore[misc]
        for code, extent in (record.get("tiles") or {}).items()
    }


def cell_attributes(extents: Mapping[str, Bbox]) -> Any:
    """The DynamoDB value of a cell record's tile extents."""
    return {
        "M": {code: {"L": [{"N": _number(v)} for v in extent]} for code, extent in extents.items()}
    }


def _with_extent(collection: dict[str, Any], summary: Summary) -> dict[str, Any]:
    """The Collection JSON with the extent of the items actually indexed, when there are any."""
    if summary.bbox is None or summary.start is None:
        return collection
    extent = {
        "spatial": {"bbox": [list(summary.bbox)]},
        "temporal": {"interval": [[summary.start, summary.end]]},
    }
    return {**collection, "extent": extent}


# --- the store ----------------------------------------------------------------------------


def _index_keys(item: Mapping[str, Any]) -> tuple[str, str, datetime, datetime, str, Any]:
    """What indexing an Item needs: collection, id, interval, sort key and tile."""
    collection_id, item_id = item.get("collection"), item.get("id")
    if not collection_id or not item_id:
        raise errors.InvalidRequest("an indexed item needs an id and a collection")
    start, end = item_interval(item)
    tile = (item.get("properties") or {}).get(TILE_PROPERTY)
    return str(collection_id), str(item_id), start, end, item_sort_key(start, item_id), tile


class Catalog:
    """The catalog index in one DynamoDB table (see the module docstring for the records)."""

    def __init__(
        self, table_name: str, client: Any = None, settings: Settings | None = None
    ) -> None:
        self.table = table_name
        self.client = client or aws.client("dynamodb", settings or Settings.from_env())

    # collections

    def put_collection(self, collection: Mapping[str, Any]) -> None:
        """Store the Collection JSON without touching the months and extent its items wrote."""
        collection_id = collection.get("id")
        if not collection_id:
            raise errors.InvalidRequest("a collection needs an id")
        self.client.update_item(
            TableName=self.table,
            Key=_to_attrs({"pk": COLLECTION_PK, "sk": collection_id}),
            UpdateExpression="SET #c = :c",
            ExpressionAttributeNames={"#c": "collection"},
            ExpressionAttributeValues={":c": {"S": _compact(collection)}},
        )

    def get_collection(self, collection_id: str) -> dict[str, Any]:
        response = self.client.get_item(
            TableName=self.table, Key=_to_attrs({"pk": COLLECTION_PK, "sk": collection_id})
        )
        record = _from_attrs(response.get("Item") or {})
        if "collection" not in record:
            raise errors.NotFound(f"no collection {collection_id!r}")
        return _with_extent(json.loads(record["collection"]), _summary_from_record(record))

    def collections(self) -> list[dict[str, Any]]:
        records = self._query_all(COLLECTION_PK)
        return [
            _with_extent(json.loads(r["collection"]), _summary_from_record(r))
            for r in records
            if "collection" in r
        ]

    # items

    def put_item(self, item: Mapping[str, Any]) -> None:
        """Index an Item; writing the same id again replaces its records (idempotent)."""
        collection_id, item_id, start, end, sort_key, tile = _index_keys(item)
        records = self._item_records(item, sort_key, tile)
        previous = self._find(collection_id, item_id)
        self._write_primary(records[0])
        for record in records[1:]:
            self.client.put_item(TableName=self.table, Item=_to_attrs(record))
        if previous is not None:
            written = {(r["pk"], r["sk"]) for r in records}
            self._delete_records(previous, keep=written)
        delta = IndexDelta()
        delta.add(collection_id, month_of(sort_key), item_bbox(item), iso(start), iso(end), tile)
        self._apply(delta)

    def put_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Bulk-index Items not indexed before (a backfill): batched writes, one summary update
        per collection. An Item that may already be indexed under another datetime goes through
        `put_item`, which also removes its old records.

        Month counts grow by the primary records that did not exist before the batch, once the
        batch is written: unlike `put_item`, a bulk load killed half-way leaves them short."""
        delta = IndexDelta()
        records: dict[tuple[str, str], dict[str, Any]] = {}  # one write per key: the last
        primaries: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            collection_id, _, start, end, sort_key, tile = _index_keys(item)
            written = self._item_records(item, sort_key, tile)
            records.update(((r["pk"], r["sk"]), r) for r in written)
            primaries[written[0]["pk"], written[0]["sk"]] = written[0]
            delta.add(
                collection_id, month_of(sort_key), item_bbox(item), iso(start), iso(end), tile
            )
        existing = self._get_keys(list(primaries), projection="pk, sk")
        for record in existing:
            primaries.pop((record["pk"], record["sk"]), None)
        writes = list(records.values())
        for start_index in range(0, len(writes), 25):
            batch = [
                {"PutRequest": {"Item": _to_attrs(r)}}
                for r in writes[start_index : start_index + 25]
            ]
            request: dict[str, Any] = {self.table: batch}
            while request:
                response = self.client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}
        self._apply(delta)
        self._add_counts(primaries.values())

    def _add_counts(self, primaries: Iterable[Mapping[str, Any]]) -> None:
        counts: dict[str, Counter[str]] = {}
        for record in primaries:
            counts.setdefault(record["collection"], Counter())[month_of(record["sk"])] += 1
        for collection_id, months in sorted(counts.items()):
            names = {f"#n{i}": f"{COUNT_PREFIX}{m}" for i, m in enumerate(sorted(months))}
            values = {f":n{i}": {"N": str(months[m])} for i, m in enumerate(sorted(months))}
            self.client.update_item(
                TableName=self.table,
                Key=_to_attrs({"pk": COLLECTION_PK, "sk": collection_id}),
                UpdateExpression="ADD " + ", ".join(f"#n{i} :n{i}" for i in range(len(months))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        record = self._find(collection_id, item_id)
        if record is None:
            raise errors.NotFound(f"no item {item_id!r} in collection {collection_id!r}")
        return dict(json.loads(record["item"]))

    def delete_item(self, collection_id: str, item_id: str) -> None:
        """Remove an Item from the index; its month stays listed (empty partitions are harmless)."""
        record = self._find(collection_id, item_id)
        if record is not None:
            self._delete_records(record)

    # search

    def search(
        self,
        collections: list[str] | None,
        bbox: tuple[float, ...] | None,
        datetime_range: DatetimeRange | None,
        ids: list[str] | None,
        limit: int,
        token: str | None,
        filters: dict[str, object] | None = None,
        *,
        match: Matcher | None = None,
        descending: bool = False,
    ) -> SearchPage:
        """One page of Items in (datetime, id, collection) order, ascending unless `descending`.

        `filters` are property equalities (``grid:code`` picks the tile partitions); `match` is a
        predicate on the decoded Item for what the index cannot answer (a CQL2 filter).
        """
        if limit < 1:
            raise errors.InvalidRequest("limit must be a positive integer")
        query = Query(
            bbox=normalise_bbox(bbox) if bbox is not None else None,
            datetime_range=datetime_range,
            filters=dict(filters or {}),
            match=match,
            descending=descending,
        )
        position = decode_token(token) if token else None
        if ids:
            return self._search_ids(collections, ids, query, limit, position)
        resume = Position.from_token(position, descending) if position is not None else None
        return self._search_streams(collections, query, limit, resume)

    def iter_items(
        self,
        collections: list[str] | None,
        bbox: tuple[float, ...] | None = None,
        datetime_range: DatetimeRange | None = None,
        filters: dict[str, object] | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching Item, page after page: for the stages, which need them all."""
        token: str | None = None
        while True:
            page = self.search(collections, bbox, datetime_range, None, page_size, token, filters)
            yield from page.items
            token = page.next_token
            if not token:
                return

    # --- internals ----------------------------------------------------------------------

    def _item_records(
        self, item: Mapping[str, Any], sort_key: str, tile: str | None
    ) -> list[dict[str, Any]]:
        collection_id, item_id = item["collection"], item["id"]
        box = item_bbox(item)
        common: dict[str, Any] = {
            "sk": sort_key,
            "item": _compact(item),
            "collection": collection_id,
            "item_id": item_id,
            "tile": tile,
        }
        if box is not None:
            common.update(zip(("xmin", "ymin", "xmax", "ymax"), map(_decimal, box), strict=True))
        primary = {
            **common,
            "pk": f"item#{collection_id}#{month_of(sort_key)}",
            "item_key": f"{collection_id}/{item_id}",
        }
        if tile is None:
            return [primary]
        return [primary, {**common, "pk": f"tile#{collection_id}#{tile}"}]

    def _find(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        response = self.client.query(
            TableName=self.table,
            IndexName=GSI_NAME,
            KeyConditionExpression="item_key = :k",
            ExpressionAttributeValues={":k": {"S": f"{collection_id}/{item_id}"}},
        )
        found = [_from_attrs(a) for a in response.get("Items", [])]
        return found[0] if found else None

    def _delete_records(
        self,
        record: Mapping[str, Any],
        keep: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """Delete an item's primary and tile records, except those just rewritten."""
        if (record["pk"], record["sk"]) not in keep:
            self._delete_primary(record)
        if record.get("tile"):
            pk = f"tile#{record['collection']}#{record['tile']}"
            if (pk, record["sk"]) not in keep:
                key = _to_attrs({"pk": pk, "sk": record["sk"]})
                self.client.delete_item(TableName=self.table, Key=key)

    def _count_update(self, record: Mapping[str, Any], change: int) -> dict[str, Any]:
        """The transaction step that counts a primary record in its collection's month."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": _to_attrs({"pk": COLLECTION_PK, "sk": record["collection"]}),
                "UpdateExpression": "ADD #n :change",
                "ExpressionAttributeNames": {"#n": f"{COUNT_PREFIX}{month_of(record['sk'])}"},
                "ExpressionAttributeValues": {":change": {"N": str(change)}},
            }
        }

    def _write_primary(self, record: Mapping[str, Any]) -> None:
        """Write an item's primary record; a new one is counted in the same transaction."""
        step = {
            "Put": {
                "TableName": self.table,
                "Item": _to_attrs(record),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        if self._transact([step, self._count_update(record, 1)]):
            return
        self.client.put_item(TableName=self.table, Item=_to_attrs(record))  # a replacement

    def _delete_primary(self, record: Mapping[str, Any]) -> None:
        """Delete an item's primary record and uncount it, unless someone else already did."""
        step = {
            "Delete": {
                "TableName": self.table,
                "Key": _to_attrs({"pk": record["pk"], "sk": record["sk"]}),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        self._transact([step, self._count_update(record, -1)])

    def _transact(self, steps: list[dict[str, Any]]) -> bool:
        """Run a transaction; False when its first step's condition failed (nothing written)."""
        try:
            self.client.transact_write_items(TransactItems=steps)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise errors.TransientError(f"index transaction cancelled: {reasons}") from exc

    def _apply(self, delta: IndexDelta) -> None:
        """Merge tile extents first, then summaries: a listed cell always has its record."""
        for (collection_id, cell), extents in sorted(delta.cells.items()):
            self._merge_cell(collection_id, cell, extents)
        for collection_id, summary in sorted(delta.summaries.items()):
            self._merge_summary(collection_id, summary)

    def _merge_cell(self, collection_id: str, cell: str, addition: TileExtents) -> None:
        """Grow the tile extents of one cell with an optimistic, conditional update."""
        key = _to_attrs({"pk": f"{CELLS_PREFIX}{collection_id}", "sk": cell})
        for _ in range(MAX_SUMMARY_ATTEMPTS):
            response = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            record = _from_attrs(response.get("Item") or {})
            current = _extents_from_record(record)
            wanted = extents_union(current, addition)
            if wanted == current:
                return
            values: dict[str, Any] = {
                ":t": cell_attributes(wanted),
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
            }
            condition = "attribute_not_exists(#v)"
            if "version" in record:
                condition = "#v = :current"
                values[":current"] = {"N": str(record["version"])}
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET tiles = :t, #v = if_not_exists(#v, :zero) + :one",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues=values,
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise errors.TransientError(f"tiles of {collection_id!r} in cell {cell} kept changing")

    def _merge_summary(self, collection_id: str, addition: Summary) -> None:
        """Grow the collection's months and extent with an optimistic, conditional update."""
        key = _to_attrs({"pk": COLLECTION_PK, "sk": collection_id})
        for _ in range(MAX_SUMMARY_ATTEMPTS):
            response = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            current = _summary_from_record(_from_attrs(response.get("Item") or {}))
            wanted = current.union(addition)
            if wanted == current:
                return
            try:
                self.client.update_item(
                    TableName=self.table, Key=key, **_summary_update(current, wanted)
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise errors.TransientError(f"collection {collection_id!r} summary kept changing")

    def _query_all(self, pk: str, projection: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        records: list[dict[str, Any]] = []
        while True:
            response = self.client.query(**kwargs)
            records.extend(_from_attrs(a) for a in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return records
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _summaries(self, collections: list[str] | None) -> tuple[dict[str, Summary], int]:
        """The summaries of the searched collections, and how many records that read."""
        if collections is None:
            records = self._query_all(COLLECTION_PK)
        else:
            records = self._get_many(COLLECTION_PK, sorted(set(collections)))
        return {r["sk"]: _summary_from_record(r) for r in records}, len(records)

    def _get_many(self, pk: str, sort_keys: list[str]) -> list[dict[str, Any]]:
        return self._get_keys([(pk, sk) for sk in sort_keys])

    def _get_keys(
        self, pairs: list[tuple[str, str]], projection: str | None = None
    ) -> list[dict[str, Any]]:
        """The records that exist among (pk, sk) pairs, by BatchGetItem."""
        records: list[dict[str, Any]] = []
        for start in range(0, len(pairs), 100):
            keys = [_to_attrs({"pk": pk, "sk": sk}) for pk, sk in pairs[start : start + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys}}
            if projection:
                request[self.table]["ProjectionExpression"] = projection
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                records.extend(_from_attrs(a) for a in response["Responses"].get(self.table, []))
                request = response.get("UnprocessedKeys") or {}
        return records

    def _plan(
        self, collections: list[str] | None, query: Query, position: Position | None
    ) -> tuple[list[Stream], int, dict[str, Summary]]:
        """The streams a search merges (each one sorted), the records read to decide them and
        the summaries of the collections searched."""
        summaries, read = self._summaries(collections)
        extents, cells_read = self._tile_extents(summaries, query)
        low, high = resume_bounds(query, position)
        streams: list[Stream] = []
        for collection_id in sorted(summaries):
            summary = summaries[collection_id]
            near = extents.get(collection_id)
            for pks in stream_keys(collection_id, summary, query, (low, high), near):
                partitions = tuple(Partition(pk, low, high) for pk in pks)
                streams.append(Stream(collection_id, partitions))
        return streams, read + cells_read, summaries

    def _tile_extents(
        self, summaries: Mapping[str, Summary], query: Query
    ) -> tuple[dict[str, TileExtents], int]:
        """The tiles near a small bbox, per tiled collection (one record per cell it meets)."""
        if query.bbox is None or isinstance(query.filters.get(TILE_PROPERTY), str):
            return {}, 0
        cells = cells_of(query.bbox)
        if len(cells) > MAX_CELLS:
            return {}, 0
        tiled = sorted(c for c, s in summaries.items() if not s.untiled)
        keys = [
            (f"{CELLS_PREFIX}{c}", cell)
            for c in tiled
            for cell in cells
            if cell in summaries[c].cells
        ]
        records = self._get_keys(keys)
        extents: dict[str, TileExtents] = {c: {} for c in tiled}
        for record in records:
            collection_id = record["pk"].removeprefix(CELLS_PREFIX)
            extents[collection_id] = extents_union(
                extents[collection_id], _extents_from_record(record)
            )
        return extents, len(records)

    def _search_streams(
        self,
        collections: list[str] | None,
        query: Query,
        limit: int,
        position: Position | None,
    ) -> SearchPage:
        streams, read, summaries = self._plan(collections, query, position)
        counter = [read]
        matched = self._count(summaries, query, counter)
        batch = first_batch(limit, len(streams))
        cap = MAX_BATCH if query.filtered else limit + 1
        iterators = [self._stream(s, query.descending, batch, cap, counter) for s in streams]
        merged = heapq.merge(*iterators, key=_order, reverse=query.descending)
        items: list[dict[str, Any]] = []
        tokens: list[str] = []
        for key in merged:
            if position is not None and not position.before(key, query.descending):
                continue
            if len(items) == limit:
                return SearchPage(items, tokens[-1], counter[0], tokens, matched)
            item = json.loads(key[2])
            if query.accepts(item):
                items.append(item)
                tokens.append(Position(key[0], key[1]).token(query.descending))
        return SearchPage(items, None, counter[0], tokens, matched)

    def _count(
        self, summaries: Mapping[str, Summary], query: Query, counter: list[int]
    ) -> int | None:
        """The search's matches from month counts (plus a COUNT query of the sliver after the
        search's end), or None when they cannot be known without reading the matches."""
        total = 0
        for collection_id, summary in sorted(summaries.items()):
            plan = count_plan(query, summary.months)
            if plan is None or not set(plan.months) <= set(summary.counts):
                return None  # filtered, or months counted before counts existed
            total += sum(summary.counts[m] for m in plan.months)
            if plan.sliver is not None and plan.sliver[0] in plan.months:
                total -= self._count_after(collection_id, *plan.sliver, counter)
        return total

    def _count_after(self, collection_id: str, month: str, bound: str, counter: list[int]) -> int:
        """Items of one month after a sort key, counted by DynamoDB without returning them."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk > :bound",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"item#{collection_id}#{month}"},
                ":bound": {"S": bound},
            },
            "Select": "COUNT",
        }
        count = 0
        while True:
            response = self.client.query(**kwargs)
            count += int(response.get("Count", 0))
            counter[0] += int(response.get("ScannedCount", 0))
            if "LastEvaluatedKey" not in response:
                return count
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _stream(
        self, stream: Stream, descending: bool, batch: int, cap: int, counter: list[int]
    ) -> Iterator[tuple[str, str, str]]:
        """(sort key, collection, item JSON) of a stream's partitions, in order.

        The first query asks for about the page's share of the stream, so that a search merging
        several streams reads little more than it returns; each further query asks for twice as
        many, so that a search whose post-filter rejects most records still pages quickly.
        """
        for partition in stream.partitions:
            kwargs = _range_query(self.table, partition, None)
            kwargs["ScanIndexForward"] = not descending
            while True:
                kwargs["Limit"] = batch
                response = self.client.query(**kwargs)
                found = response.get("Items", [])
                counter[0] += int(response.get("ScannedCount", len(found)))
                for attrs in found:
                    yield attrs["sk"]["S"], stream.collection, attrs["item"]["S"]
                batch = min(batch * 2, cap)
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _search_ids(
        self,
        collections: list[str] | None,
        ids: list[str],
        query: Query,
        limit: int,
        position: Mapping[str, str] | None,
    ) -> SearchPage:
        """Items by id: one GSI lookup each, in (collection, id) order."""
        read = 0
        if collections is None:
            summaries, read = self._summaries(None)
            collections = sorted(summaries)
        keys = sorted({(c, i) for c in collections for i in ids}, reverse=query.descending)
        after = position.get("key") if position else None
        if position is not None and after is None:
            raise errors.InvalidRequest("paging token does not belong to an id search")
        items: list[dict[str, Any]] = []
        tokens: list[str] = []
        for collection_id, item_id in keys:
            key = f"{collection_id}/{item_id}"
            if after is not None and (key >= after if query.descending else key <= after):
                continue
            record = self._find(collection_id, item_id)
            read += 1
            if record is None:
                continue
            item = json.loads(record["item"])
            if not (query.accepts(item) and in_time_range(item, query.datetime_range)):
                continue
            if len(items) == limit:
                return SearchPage(items, tokens[-1], read, tokens)
            items.append(item)
            tokens.append(encode_token({"key": key}))
        return SearchPage(items, None, read, tokens)


def _range_query(table: str, partition: Partition, after: str | None) -> dict[str, Any]:
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


SUMMARY_SETS = ("months", "cells")
"""Set attributes of a summary, grown with ADD so that concurrent writers never lose a member."""


def summary_attributes(summary: Summary) -> dict[str, Any]:
    """The DynamoDB attributes of a collection record that describe its items."""
    attrs: dict[str, Any] = {}
    if summary.bbox is not None:
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), summary.bbox, strict=True):
            attrs[name] = {"N": _number(value)}
    for name, text in (("tmin", summary.start), ("tmax", summary.end)):
        if text is not None:
            attrs[name] = {"S": text}
    if summary.untiled:
        attrs["untiled"] = {"BOOL": True}
    for name, members in (("months", summary.months), ("cells", summary.cells)):
        if members:
            attrs[name] = {"SS": sorted(members)}
    return attrs


def _summary_update(current: Summary, wanted: Summary) -> dict[str, Any]:
    """A conditional update from `current` to `wanted`: it fails if anyone wrote in between."""
    names = {"#v": "version"}
    values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"}}
    sets = ["#v = if_not_exists(#v, :zero) + :one"]
    additions = []
    previous = summary_attributes(current)
    # `untiled` is also set when only inferred from a record written before tile cells existed.
    for name, value in summary_attributes(wanted).items():
        if name in SUMMARY_SETS:
            new = sorted(set(value["SS"]) - set(previous.get(name, {}).get("SS", ())))
            if new:
                additions.append(f"{name} :{name}")
                values[f":{name}"] = {"SS": new}
        else:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = value
    if current.version is None:
        condition = "attribute_not_exists(#v)"
    else:
        condition = "#v = :current"
        values[":current"] = {"N": str(current.version)}
    expression = "SET " + ", ".join(sets)
    if additions:
        expression += " ADD " + ", ".join(additions)
    return {
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _compact(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _number(value: float) -> str:
    return repr(float(value))


def _decimal(value: float) -> Decimal:
    """DynamoDB numbers go through Decimal; repr keeps the float's exact shortest form."""
    return Decimal(_number(value))
