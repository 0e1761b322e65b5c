"""Writing the catalog index: Items, their tile copies, month counts, tile extents and the
collection summaries, each change conditional so that concurrent writers lose nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from sansnuages import errors
from sansnuages.stac.extents import iso, item_bbox
from sansnuages.stores.catalog.records import (
    CELLS_PREFIX,
    COLLECTION_PK,
    COUNT_PREFIX,
    IndexDelta,
    Summary,
    TileExtents,
    cell_attributes,
    compact_json,
    extents_from_record,
    extents_union,
    from_attrs,
    index_keys,
    item_records,
    month_of,
    summary_from_record,
    summary_update,
    to_attrs,
)
from sansnuages.stores.catalog.stats import (
    ACQUIRED_PK,
    INGESTED_PK,
    MARKER_PREFIX,
    PRODUCT_COLLECTIONS,
    QUARANTINED,
    Counts,
    acquired_counter,
    acquisition_day,
    counted,
    counter_name,
    ingest_day,
    marker_key,
)
from sansnuages.stores.catalog.table import IndexTable

MAX_SUMMARY_ATTEMPTS = 8


class CatalogIndex(IndexTable):
    """The writer of the catalog index."""

    def put_collection(self, collection: Mapping[str, Any]) -> None:
        """Store the Collection JSON without touching the months and extent its items wrote."""
        collection_id = collection.get("id")
        if not collection_id:
            raise errors.InvalidRequest("a collection needs an id")
        self.client.update_item(
            TableName=self.table,
            Key=to_attrs({"pk": COLLECTION_PK, "sk": collection_id}),
            UpdateExpression="SET #c = :c",
            ExpressionAttributeNames={"#c": "collection"},
            ExpressionAttributeValues={":c": {"S": compact_json(collection)}},
        )

    def put_item(self, item: Mapping[str, Any]) -> None:
        """Index an Item; writing the same id again replaces its records (idempotent)."""
        collection_id, item_id, start, end, sort_key, tile = index_keys(item)
        records = item_records(item, sort_key, tile)
        previous = self._find(collection_id, item_id)
        self._write_primary(records[0], item)
        for record in records[1:]:
            self.client.put_item(TableName=self.table, Item=to_attrs(record))
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
            collection_id, _, start, end, sort_key, tile = index_keys(item)
            written = item_records(item, sort_key, tile)
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
                {"PutRequest": {"Item": to_attrs(r)}}
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
                Key=to_attrs({"pk": COLLECTION_PK, "sk": collection_id}),
                UpdateExpression="ADD " + ", ".join(f"#n{i} :n{i}" for i in range(len(months))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def delete_item(self, collection_id: str, item_id: str) -> None:
        """Remove an Item from the index; its month stays listed (empty partitions are harmless)."""
        record = self._find(collection_id, item_id)
        if record is not None:
            self._delete_records(record)

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
                key = to_attrs({"pk": pk, "sk": record["sk"]})
                self.client.delete_item(TableName=self.table, Key=key)

    def _count_update(self, record: Mapping[str, Any], change: int) -> dict[str, Any]:
        """The transaction step that counts a primary record in its collection's month."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": to_attrs({"pk": COLLECTION_PK, "sk": record["collection"]}),
                "UpdateExpression": "ADD #n :change",
                "ExpressionAttributeNames": {"#n": f"{COUNT_PREFIX}{month_of(record['sk'])}"},
                "ExpressionAttributeValues": {":change": {"N": str(change)}},
            }
        }

    def _write_primary(
        self, record: Mapping[str, Any], item: Mapping[str, Any] | None = None
    ) -> None:
        """Write an item's primary record; a new one is counted in the same transaction: in
        its collection's month and, for an ingested product, in the production statistics
        (`stats`), its acquisition once whatever the versions."""
        step = {
            "Put": {
                "TableName": self.table,
                "Item": to_attrs(record),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        steps = [step, self._count_update(record, 1)]
        counters, acquisition = self._stats_steps(item)
        for attempt in (steps + counters + acquisition, steps + counters):
            codes = self._transact_codes(attempt)
            if codes is None:
                return
            if codes[0] == "ConditionalCheckFailed":
                break  # a replacement: counted when first written
            marker = len(steps) + len(counters)
            if len(attempt) > marker and codes[marker] == "ConditionalCheckFailed":
                continue  # another version of this acquisition was counted before
            raise errors.TransientError(f"index transaction cancelled: {codes}")
        self.client.put_item(TableName=self.table, Item=to_attrs(record))  # a replacement

    def _stats_steps(
        self, item: Mapping[str, Any] | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The counter of the ingest day, and the acquisition's marker and counter."""
        if item is None or not counted(item):
            return [], []
        pk, sk = marker_key(item)
        marker = {
            "Put": {
                "TableName": self.table,
                "Item": to_attrs({"pk": pk, "sk": sk, "id": item["id"]}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        return [self._add_step(INGESTED_PK, ingest_day(item), counter_name(item))], [
            marker,
            self._add_step(ACQUIRED_PK, acquisition_day(item), acquired_counter(item)),
        ]

    def _add_step(self, pk: str, sk: str, name: str, change: int = 1) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": to_attrs({"pk": pk, "sk": sk}),
                "UpdateExpression": "ADD #n :change",
                "ExpressionAttributeNames": {"#n": name},
                "ExpressionAttributeValues": {":change": {"N": str(change)}},
            }
        }

    def count_quarantined(self, day: str) -> None:
        """One more upload quarantined on `day` (yyyy-mm-dd): an atomic counter."""
        self.client.update_item(**self._add_step(INGESTED_PK, day[:10], QUARANTINED)["Update"])

    def put_stats(self, counts: Counts) -> None:
        """Make the statistics records exactly `counts`: each day's record written whole,
        records of days without counts removed, the acquisition markers put back (those of
        acquisitions no longer found removed). Reads the statistics partitions, never the
        table."""
        partitions = {ACQUIRED_PK, INGESTED_PK} | {pk for pk, _ in counts.markers}
        partitions |= {f"{MARKER_PREFIX}{c}" for c in PRODUCT_COLLECTIONS}
        wanted: dict[tuple[str, str], dict[str, Any]] = {
            (pk, day): {"pk": pk, "sk": day, **dict(counter)}
            for (pk, day), counter in counts.days.items()
        }
        for pk, sk in counts.markers:
            wanted.setdefault((pk, sk), {"pk": pk, "sk": sk})
        existing = [
            (record["pk"], record["sk"])
            for pk in sorted(partitions)
            for record in self._query_all(pk, projection="pk, sk")
        ]
        requests = [{"PutRequest": {"Item": to_attrs(r)}} for r in wanted.values()]
        requests += [
            {"DeleteRequest": {"Key": to_attrs({"pk": pk, "sk": sk})}}
            for pk, sk in existing
            if (pk, sk) not in wanted
        ]
        for start_index in range(0, len(requests), 25):
            request: dict[str, Any] = {self.table: requests[start_index : start_index + 25]}
            while request:
                response = self.client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}

    def _delete_primary(self, record: Mapping[str, Any]) -> None:
        """Delete an item's primary record and uncount it, unless someone else already did."""
        step = {
            "Delete": {
                "TableName": self.table,
                "Key": to_attrs({"pk": record["pk"], "sk": record["sk"]}),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        self._transact([step, self._count_update(record, -1)])

    def _transact(self, steps: list[dict[str, Any]]) -> bool:
        """Run a transaction; False when its first step's condition failed (nothing written)."""
        codes = self._transact_codes(steps)
        if codes is None:
            return True
        if codes[0] == "ConditionalCheckFailed":
            return False
        raise errors.TransientError(f"index transaction cancelled: {codes}")

    def _transact_codes(self, steps: list[dict[str, Any]]) -> list[str] | None:
        """Run a transaction; None once written, else the reason code of each step."""
        try:
            self.client.transact_write_items(TransactItems=steps)
            return None
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or [{}]
            codes = [str(reason.get("Code", "None")) for reason in reasons]
            return codes + ["None"] * (len(steps) - len(codes))

    def _apply(self, delta: IndexDelta) -> None:
        """Merge tile extents first, then summaries: a listed cell always has its record."""
        for (collection_id, cell), extents in sorted(delta.cells.items()):
            self._merge_cell(collection_id, cell, extents)
        for collection_id, summary in sorted(delta.summaries.items()):
            self._merge_summary(collection_id, summary)

    def _merge_cell(self, collection_id: str, cell: str, addition: TileExtents) -> None:
        """Grow the tile extents of one cell with an optimistic, conditional update."""
        key = to_attrs({"pk": f"{CELLS_PREFIX}{collection_id}", "sk": cell})
        for _ in range(MAX_SUMMARY_ATTEMPTS):
            response = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            record = from_attrs(response.get("Item") or {})
            current = extents_from_record(record)
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
        key = to_attrs({"pk": COLLECTION_PK, "sk": collection_id})
        for _ in range(MAX_SUMMARY_ATTEMPTS):
            response = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            current = summary_from_record(from_attrs(response.get("Item") or {}))
            wanted = current.union(addition)
            if wanted == current:
                return
            try:
                self.client.update_item(
                    TableName=self.table, Key=key, **summary_update(current, wanted)
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise errors.TransientError(f"collection {collection_id!r} summary kept changing")
