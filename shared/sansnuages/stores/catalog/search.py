"""Searching the catalog index: pages of Items merged from sorted partition streams."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping
from typing import Any

from sansnuages import errors
from sansnuages.stac.extents import DatetimeRange, normalise_bbox
from sansnuages.stores.catalog.planning import (
    MAX_BATCH,
    MAX_CELLS,
    Matcher,
    Partition,
    Position,
    Query,
    ReadBudget,
    Reading,
    SearchPage,
    Stream,
    count_plan,
    decode_token,
    encode_token,
    first_batch,
    in_time_range,
    merge_order,
    range_query,
    resume_bounds,
    stream_keys,
)
from sansnuages.stores.catalog.records import (
    CELLS_PREFIX,
    COLLECTION_PK,
    TILE_PROPERTY,
    Summary,
    TileExtents,
    cells_of,
    extents_from_record,
    extents_union,
    from_attrs,
    summary_from_record,
    to_attrs,
    with_extent,
)
from sansnuages.stores.catalog.table import IndexTable


class CatalogSearch(IndexTable):
    """The reader of the catalog index: collections, Items by id and searches."""

    def get_collection(self, collection_id: str) -> dict[str, Any]:
        response = self.client.get_item(
            TableName=self.table, Key=to_attrs({"pk": COLLECTION_PK, "sk": collection_id})
        )
        record = from_attrs(response.get("Item") or {})
        if "collection" not in record:
            raise errors.NotFound(f"no collection {collection_id!r}")
        return with_extent(json.loads(record["collection"]), summary_from_record(record))

    def collections(self) -> list[dict[str, Any]]:
        records = self._query_all(COLLECTION_PK)
        return [
            with_extent(json.loads(r["collection"]), summary_from_record(r))
            for r in records
            if "collection" in r
        ]

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        record = self._find(collection_id, item_id)
        if record is None:
            raise errors.NotFound(f"no item {item_id!r} in collection {collection_id!r}")
        return dict(json.loads(record["item"]))

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
        budget: ReadBudget | None = None,
    ) -> SearchPage:
        """One page of Items in (datetime, id, collection) order, ascending unless `descending`.

        `filters` are property equalities (``grid:code`` picks the tile partitions); `match` is a
        predicate on the decoded Item for what the index cannot answer (a CQL2 filter). With a
        `budget`, the page may end early (`budget_spent`), its token resuming where reading
        stopped.
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
        reading = Reading(budget)
        if ids:
            return self._search_ids(collections, ids, query, limit, position, reading)
        resume = Position.from_token(position, descending) if position is not None else None
        return self._search_streams(collections, query, limit, resume, reading)

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

    def _summaries(self, collections: list[str] | None) -> tuple[dict[str, Summary], int]:
        """The summaries of the searched collections, and how many records that read."""
        if collections is None:
            records = self._query_all(COLLECTION_PK)
        else:
            records = self._get_many(COLLECTION_PK, sorted(set(collections)))
        return {r["sk"]: summary_from_record(r) for r in records}, len(records)

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
                extents[collection_id], extents_from_record(record)
            )
        return extents, len(records)

    def _search_streams(
        self,
        collections: list[str] | None,
        query: Query,
        limit: int,
        position: Position | None,
        reading: Reading,
    ) -> SearchPage:
        streams, read, summaries = self._plan(collections, query, position)
        reading.records += read
        matched = self._count(summaries, query, reading)
        batch = first_batch(limit, len(streams))
        cap = MAX_BATCH if query.filtered else limit + 1
        iterators = [
            self._stream(s, query.descending, batch, cap, reading, position) for s in streams
        ]
        merged = heapq.merge(*iterators, key=merge_order, reverse=query.descending)
        items: list[dict[str, Any]] = []
        tokens: list[str] = []
        for key in merged:
            if position is not None and not position.before(key, query.descending):
                continue
            if len(items) == limit:
                return SearchPage(items, tokens[-1], reading.records, tokens, matched)
            if key[2] is None:  # a stream spent the budget: everything up to here was read
                after = Position(key[0], key[1]).token(query.descending)
                return SearchPage(items, after, reading.records, tokens, matched, True)
            item = json.loads(key[2])
            if query.accepts(item):
                items.append(item)
                tokens.append(Position(key[0], key[1]).token(query.descending))
        return SearchPage(items, None, reading.records, tokens, matched)

    def _count(
        self, summaries: Mapping[str, Summary], query: Query, reading: Reading
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
                total -= self._count_after(collection_id, *plan.sliver, reading)
        return total

    def _count_after(self, collection_id: str, month: str, bound: str, reading: Reading) -> int:
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
            reading.add(response)
            if "LastEvaluatedKey" not in response:
                return count
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _stream(
        self,
        stream: Stream,
        descending: bool,
        batch: int,
        cap: int,
        reading: Reading,
        position: Position | None,
    ) -> Iterator[tuple[str, str, str | None]]:
        """(sort key, collection, item JSON) of a stream's partitions, in order.

        The first query asks for about the page's share of the stream, so that a search merging
        several streams reads little more than it returns; each further query asks for twice as
        many, so that a search whose post-filter rejects most records still pages quickly.

        Once the budget is spent, and the stream has given a record past `position` (so that
        the search moves on), it ends with a marker `(sort key, collection, None)` that repeats
        its last record's place: the merge stops there, before the records of other streams
        that this one, unread, might have preceded.
        """
        last: tuple[str, str] | None = None
        for partition in stream.partitions:
            kwargs = range_query(self.table, partition, None)
            kwargs["ScanIndexForward"] = not descending
            while True:
                if last is not None and reading.spent():
                    yield last[0], last[1], None
                    return
                kwargs["Limit"] = reading.limit(batch)
                response = self.client.query(**kwargs)
                reading.add(response)
                for attrs in response.get("Items", []):
                    key = (attrs["sk"]["S"], stream.collection, attrs["item"]["S"])
                    if position is None or position.before(key, descending):
                        last = key[:2]
                    yield key
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
        reading: Reading,
    ) -> SearchPage:
        """Items by id: one GSI lookup each, in (collection, id) order; a spent budget ends the
        page after the last key looked up."""
        if collections is None:
            summaries, reading.records = self._summaries(None)
            collections = sorted(summaries)
        keys = sorted({(c, i) for c in collections for i in ids}, reverse=query.descending)
        after = position.get("key") if position else None
        if position is not None and after is None:
            raise errors.InvalidRequest("paging token does not belong to an id search")
        items: list[dict[str, Any]] = []
        tokens: list[str] = []
        looked_up: str | None = None
        for collection_id, item_id in keys:
            key = f"{collection_id}/{item_id}"
            if after is not None and (key >= after if query.descending else key <= after):
                continue
            if looked_up is not None and reading.spent():
                after_last = encode_token({"key": looked_up})
                return SearchPage(items, after_last, reading.records, tokens, None, True)
            record = self._find(collection_id, item_id)
            reading.add({"ScannedCount": 1})
            looked_up = key
            if record is None:
                continue
            item = json.loads(record["item"])
            if not (query.accepts(item) and in_time_range(item, query.datetime_range)):
                continue
            if len(items) == limit:
                return SearchPage(items, tokens[-1], reading.records, tokens)
            items.append(item)
            tokens.append(encode_token({"key": key}))
        return SearchPage(items, None, reading.records, tokens)
