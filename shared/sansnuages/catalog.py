"""The search index: a DynamoDB cache of the STAC Item JSON files, which stay the source of truth.

Records are keyed so that a search reads about as many records as it returns, never the table:

- an Item lives under ``pk = "item#{collection}#{yyyy-mm}"``, ``sk = "{utc datetime}#{id}"``, so a
  collection and a time range are a few range queries over monthly partitions;
- the same Item is copied under ``pk = "tile#{collection}#{grid:code}"`` (same ``sk``), so "this
  tile's items in this window" (the planner and the compositor) is one range query;
- the primary record carries ``item_key = "{collection}/{id}"``, indexed by the sparse GSI
  ``by_id``, so lookups by id need no datetime;
- a collection lives under ``pk = "collection"``, ``sk = id``, with its JSON, the string set
  ``months`` of the partitions holding items, and the extent of its items.

Paging tokens are positions (partition and last sort key returned), so pages never skip or repeat
records, whatever was written in between.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from . import aws, errors
from .settings import Settings

COLLECTION_PK = "collection"
GSI_NAME = "by_id"
TILE_PROPERTY = "grid:code"
MAX_SUMMARY_ATTEMPTS = 8
MAX_BATCH = 1000
"""Most records one query of a stream asks for (DynamoDB also stops at 1 MB)."""
MAX_TILE_STREAMS = 12
"""A bbox touching at most this many tiles reads their tile partitions instead of the months."""

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
    tiles: Mapping[str, Bbox] = field(default_factory=dict)
    """The extent of each tile's items, so that a small bbox reads only its tiles' partitions."""
    untiled: bool = False
    """Some items have no tile: only the monthly partitions hold them all."""

    def merged(
        self, month: str, bbox: Bbox | None, start: str, end: str, tile: str | None = None
    ) -> Summary:
        tiles = dict(self.tiles)
        if tile is not None and bbox is not None:
            tiles[tile] = _bbox_union(tiles.get(tile), bbox)  # type: ignore[assignment]
        return replace(
            self,
            months=self.months | {month},
            bbox=_bbox_union(self.bbox, bbox),
            start=min(start, self.start) if self.start else start,
            end=max(end, self.end) if self.end else end,
            tiles=tiles,
            untiled=self.untiled or tile is None or bbox is None,
        )

    def union(self, other: Summary) -> Summary:
        tiles = dict(self.tiles)
        for code, extent in other.tiles.items():
            tiles[code] = _bbox_union(tiles.get(code), extent)  # type: ignore[assignment]
        starts = [t for t in (self.start, other.start) if t]
        ends = [t for t in (self.end, other.end) if t]
        return replace(
            self,
            months=self.months | other.months,
            bbox=_bbox_union(self.bbox, other.bbox),
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            tiles=tiles,
            untiled=self.untiled or other.untiled,
        )

    def tiles_touching(self, box: Bbox) -> list[str] | None:
        """The tiles whose items may intersect `box`, or None when the months must be read."""
        if self.untiled:
            return None
        touched = sorted(t for t, extent in self.tiles.items() if bbox_intersects(extent, box))
        return touched if len(touched) <= MAX_TILE_STREAMS else None


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
    collection_id: str, summary: Summary, query: Query, low: str | None, high: str | None
) -> list[list[str]]:
    """Partition keys of one collection's streams: one per tile, or the months in order."""
    tile = query.filters.get(TILE_PROPERTY)
    if isinstance(tile, str):
        return [[f"tile#{collection_id}#{tile}"]] if summary.months else []
    touched = summary.tiles_touching(query.bbox) if query.bbox is not None else None
    if touched is not None:
        return [[f"tile#{collection_id}#{t}"] for t in touched]
    months = months_in_range(summary.months, low, high)
    if not months:
        return []
    ordered = reversed(months) if query.descending else months
    return [[f"item#{collection_id}#{m}" for m in ordered]]


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
    tiles = {
        code: tuple(float(v) for v in extent)
        for code, extent in (record.get("tiles") or {}).items()
    }
    return Summary(
        months=frozenset(record.get("months") or ()),
        bbox=bbox,  # type: ignore[arg-type]
        start=record.get("tmin"),
        end=record.get("tmax"),
        version=int(version) if version is not None else None,
        tiles=tiles,  # type: ignore[arg-type]
        # A record written before tiles were summarised cannot vouch for its tiles.
        untiled=bool(record.get("untiled")) or ("months" in record and "tiles" not in record),
    )


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
        for record in records:
            self.client.put_item(TableName=self.table, Item=_to_attrs(record))
        if previous is not None:
            written = {(r["pk"], r["sk"]) for r in records}
            self._delete_records(previous, keep=written)
        self._update_summary(
            collection_id, month_of(sort_key), item_bbox(item), iso(start), iso(end), tile
        )

    def put_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Bulk-index Items not indexed before (a backfill): batched writes, one summary update
        per collection. An Item that may already be indexed under another datetime goes through
        `put_item`, which also removes its old records."""
        summaries: dict[str, Summary] = {}
        records: list[dict[str, Any]] = []
        for item in items:
            collection_id, _, start, end, sort_key, tile = _index_keys(item)
            records.extend(self._item_records(item, sort_key, tile))
            summaries[collection_id] = summaries.get(collection_id, Summary()).merged(
                month_of(sort_key), item_bbox(item), iso(start), iso(end), tile
            )
        for start_index in range(0, len(records), 25):
            batch = [
                {"PutRequest": {"Item": _to_attrs(r)}}
                for r in records[start_index : start_index + 25]
            ]
            request: dict[str, Any] = {self.table: batch}
            while request:
                response = self.client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}
        for collection_id, summary in summaries.items():
            self._merge_summary(collection_id, summary)

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
        keys = [(record["pk"], record["sk"])]
        if record.get("tile"):
            keys.append((f"tile#{record['collection']}#{record['tile']}", record["sk"]))
        for pk, sk in keys:
            if (pk, sk) not in keep:
                self.client.delete_item(TableName=self.table, Key=_to_attrs({"pk": pk, "sk": sk}))

    def _update_summary(
        self,
        collection_id: str,
        month: str,
        bbox: Bbox | None,
        start: str,
        end: str,
        tile: str | None,
    ) -> None:
        """Grow the collection's months and extent with an optimistic, conditional update."""
        self._merge_summary(collection_id, Summary().merged(month, bbox, start, end, tile))

    def _merge_summary(self, collection_id: str, addition: Summary) -> None:
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
        records: list[dict[str, Any]] = []
        for start in range(0, len(sort_keys), 100):
            keys = [_to_attrs({"pk": pk, "sk": sk}) for sk in sort_keys[start : start + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                records.extend(_from_attrs(a) for a in response["Responses"].get(self.table, []))
                request = response.get("UnprocessedKeys") or {}
        return records

    def _plan(
        self, collections: list[str] | None, query: Query, position: Position | None
    ) -> tuple[list[Stream], int]:
        """The streams a search merges (each one sorted), and the records read to decide them."""
        summaries, read = self._summaries(collections)
        low, high = resume_bounds(query, position)
        streams: list[Stream] = []
        for collection_id in sorted(summaries):
            summary = summaries[collection_id]
            for pks in stream_keys(collection_id, summary, query, low, high):
                partitions = tuple(Partition(pk, low, high) for pk in pks)
                streams.append(Stream(collection_id, partitions))
        return streams, read

    def _search_streams(
        self,
        collections: list[str] | None,
        query: Query,
        limit: int,
        position: Position | None,
    ) -> SearchPage:
        streams, read = self._plan(collections, query, position)
        counter = [read]
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
                return SearchPage(items, tokens[-1], counter[0], tokens)
            item = json.loads(key[2])
            if query.accepts(item):
                items.append(item)
                tokens.append(Position(key[0], key[1]).token(query.descending))
        return SearchPage(items, None, counter[0], tokens)

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


def _summary_update(current: Summary, wanted: Summary) -> dict[str, Any]:
    """A conditional update from `current` to `wanted`: it fails if anyone wrote in between."""
    names = {"#v": "version"}
    values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"}}
    sets = ["#v = if_not_exists(#v, :zero) + :one"]
    if wanted.bbox is not None:
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), wanted.bbox, strict=True):
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {"N": _number(value)}
    for name, text in (("tmin", wanted.start), ("tmax", wanted.end)):
        if text is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {"S": text}
    if wanted.tiles != current.tiles:
        sets.append("tiles = :tiles")
        values[":tiles"] = _serializer.serialize(
            {code: [_decimal(v) for v in extent] for code, extent in wanted.tiles.items()}
        )
    if wanted.untiled:  # also when only inferred from a record written before tiles existed
        sets.append("untiled = :untiled")
        values[":untiled"] = {"BOOL": True}
    if current.version is None:
        condition = "attribute_not_exists(#v)"
    else:
        condition = "#v = :current"
        values[":current"] = {"N": str(current.version)}
    expression = "SET " + ", ".join(sets)
    new_months = sorted(wanted.months - current.months)
    if new_months:
        expression += " ADD months :m"
        values[":m"] = {"SS": new_months}
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
