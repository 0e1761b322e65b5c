"""The records of the catalog index: their keys, the collection summaries and the codecs that
turn them into DynamoDB attributes. Pure: the writer and the searcher share them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from sansnuages import errors
from sansnuages.stac.extents import (
    Bbox,
    _bbox_union,
    _x_ranges,
    iso,
    item_bbox,
    item_interval,
)

COLLECTION_PK = "collection"


GSI_NAME = "by_id"


TILE_PROPERTY = "grid:code"


CELL_DEGREES = 10
"""Side of the lon/lat cells that shard tile extents (a Sentinel-2 tile is about 1 degree)."""


CELLS_PREFIX = "cells#"


COUNT_PREFIX = "count#"


_serializer = TypeSerializer()


_deserializer = TypeDeserializer()


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


def extents_union(a: Mapping[str, Bbox], b: Mapping[str, Bbox]) -> TileExtents:
    union = dict(a)
    for code, extent in b.items():
        union[code] = _bbox_union(union.get(code), extent)  # type: ignore[assignment]
    return union


def month_of(sort_key: str) -> str:
    return sort_key[:7]


def item_sort_key(when: datetime, item_id: str) -> str:
    return f"{iso(when)}#{item_id}"


def month_start(month: str) -> datetime:
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)


def month_end(month: str) -> datetime:
    """The last microsecond of a month."""
    start = month_start(month)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return following - timedelta(microseconds=1)


def to_attrs(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in record.items() if v is not None}


def from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in attrs.items()}


def summary_from_record(record: Mapping[str, Any]) -> Summary:
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


def extents_from_record(record: Mapping[str, Any]) -> TileExtents:
    return {
        code: tuple(float(v) for v in extent)  # type: ignore[misc]
        for code, extent in (record.get("tiles") or {}).items()
    }


def cell_attributes(extents: Mapping[str, Bbox]) -> Any:
    """The DynamoDB value of a cell record's tile extents."""
    return {
        "M": {
            code: {"L": [{"N": number_text(v)} for v in extent]} for code, extent in extents.items()
        }
    }


def with_extent(collection: dict[str, Any], summary: Summary) -> dict[str, Any]:
    """The Collection JSON with the extent of the items actually indexed, when there are any."""
    if summary.bbox is None or summary.start is None:
        return collection
    extent = {
        "spatial": {"bbox": [list(summary.bbox)]},
        "temporal": {"interval": [[summary.start, summary.end]]},
    }
    return {**collection, "extent": extent}


def index_keys(item: Mapping[str, Any]) -> tuple[str, str, datetime, datetime, str, Any]:
    """What indexing an Item needs: collection, id, interval, sort key and tile."""
    collection_id, item_id = item.get("collection"), item.get("id")
    if not collection_id or not item_id:
        raise errors.InvalidRequest("an indexed item needs an id and a collection")
    start, end = item_interval(item)
    tile = (item.get("properties") or {}).get(TILE_PROPERTY)
    return str(collection_id), str(item_id), start, end, item_sort_key(start, item_id), tile


SUMMARY_SETS = ("months", "cells")
"""Set attributes of a summary, grown with ADD so that concurrent writers never lose a member."""


def summary_attributes(summary: Summary) -> dict[str, Any]:
    """The DynamoDB attributes of a collection record that describe its items."""
    attrs: dict[str, Any] = {}
    if summary.bbox is not None:
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), summary.bbox, strict=True):
            attrs[name] = {"N": number_text(value)}
    for name, text in (("tmin", summary.start), ("tmax", summary.end)):
        if text is not None:
            attrs[name] = {"S": text}
    if summary.untiled:
        attrs["untiled"] = {"BOOL": True}
    for name, members in (("months", summary.months), ("cells", summary.cells)):
        if members:
            attrs[name] = {"SS": sorted(members)}
    return attrs


def summary_update(current: Summary, wanted: Summary) -> dict[str, Any]:
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


def compact_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def number_text(value: float) -> str:
    return repr(float(value))


def decimal_of(value: float) -> Decimal:
    """DynamoDB numbers go through Decimal; repr keeps the float's exact shortest form."""
    return Decimal(number_text(value))


def item_records(item: Mapping[str, Any], sort_key: str, tile: str | None) -> list[dict[str, Any]]:
    collection_id, item_id = item["collection"], item["id"]
    box = item_bbox(item)
    common: dict[str, Any] = {
        "sk": sort_key,
        "item": compact_json(item),
        "collection": collection_id,
        "item_id": item_id,
        "tile": tile,
    }
    if box is not None:
        common.update(zip(("xmin", "ymin", "xmax", "ymax"), map(decimal_of, box), strict=True))
    primary = {
        **common,
        "pk": f"item#{collection_id}#{month_of(sort_key)}",
        "item_key": f"{collection_id}/{item_id}",
    }
    if tile is None:
        return [primary]
    return [primary, {**common, "pk": f"tile#{collection_id}#{tile}"}]
