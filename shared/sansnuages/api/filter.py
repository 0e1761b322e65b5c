"""Item predicates of the STAC API: CQL2 filters, the query extension and `intersects`.

All three become one CQL2 JSON expression. What the index can answer is read off the
expression's top-level conjuncts (collections, ids, tile, time range, bbox), so that a filter
narrows the partitions a search reads instead of post-filtering the whole catalog. On each
candidate Item the filter and the query are evaluated by the `cql2` package (the same parser for
CQL2 text and JSON), `intersects` by a prepared shapely geometry: cql2 converts a geometry literal
for every Item it checks, which costs about 1 µs a vertex each time.

Every parameter is held to `RequestLimits` before anything evaluates it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cql2
import shapely
from shapely.geometry import shape
from shapely.prepared import PreparedGeometry, prep

from sansnuages import errors
from sansnuages.api.limits import (
    LIMITS,
    RequestLimits,
    check_cql2_text,
    check_cql2_tree,
    loads,
    refuse,
)
from sansnuages.stac.extents import Bbox, DatetimeRange, parse_datetime
from sansnuages.stores.catalog.records import TILE_PROPERTY

CQL2_TEXT, CQL2_JSON = "cql2-text", "cql2-json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOMETRY_TYPES = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
"""GeoJSON geometry types and the nesting depth of their coordinate positions."""
BOOLEAN_OPS = frozenset(
    {"and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "like", "between", "in", "isNull"}
    | {"s_intersects", "s_equals", "s_disjoint", "s_touches", "s_within", "s_overlaps"}
    | {"s_crosses", "s_contains", "a_equals", "a_contains", "a_containedBy", "a_overlaps"}
    | {"t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals"}
    | {"t_finishedBy", "t_finishes", "t_intersects", "t_meets", "t_metBy"}
    | {"t_overlappedBy", "t_overlaps", "t_startedBy", "t_starts"}
)
VALUE_OPS = frozenset({"casei", "accenti", "+", "-", "*", "/", "%", "^", "div"})
QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


@dataclass(frozen=True)
class Predicate:
    """A search's item predicate and what the index can use of it."""

    expression: dict[str, Any] | None = None
    collections: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    tile: str | None = None
    datetime_range: DatetimeRange | None = None
    bbox: Bbox | None = None
    _compiled: Any = field(default=None, compare=False, repr=False)
    _area: PreparedGeometry | None = field(default=None, compare=False, repr=False)

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether an Item satisfies the expression; one lacking a compared property does not."""
        if self._area is not None and not _intersects(self._area, item):
            return False
        if self._compiled is None:
            return True
        try:
            return bool(self._compiled.matches(dict(item)))
        except Exception:  # noqa: BLE001 - cql2 raises bare Exceptions for missing properties
            return False


def _intersects(area: PreparedGeometry, item: Mapping[str, Any]) -> bool:
    try:
        return bool(area.intersects(shape(item.get("geometry"))))
    except (shapely.errors.ShapelyError, AttributeError, KeyError, TypeError, ValueError):
        return False  # no geometry, or not one shapely reads: nothing to intersect


# --- parsing --------------------------------------------------------------------------------


def parse_filter(
    value: Any, lang: str | None, crs: str | None = None, limits: RequestLimits = LIMITS
) -> dict[str, Any] | None:
    """CQL2 JSON of a `filter` parameter, text (the GET default) or JSON (the POST default).

    Size and nesting are checked before the filter is validated: validation takes time that
    grows fast with nesting (13 s at 200 levels), and the text parser overflows the stack."""
    if value is None or value == "":
        return None
    if crs not in (None, "", CRS84):
        raise errors.InvalidRequest(f"filter-crs must be {CRS84}")
    lang = lang or (CQL2_JSON if isinstance(value, dict) else CQL2_TEXT)
    try:
        if lang == CQL2_TEXT:
            if not isinstance(value, str):
                raise errors.InvalidRequest("a cql2-text filter is a string")
            check_cql2_text(value, limits)
            expression = cql2.parse_text(value).to_json()
        elif lang == CQL2_JSON:
            if isinstance(value, str):
                if len(value) > limits.cql2_chars:
                    raise refuse("the CQL2 filter", limits.cql2_chars, "characters", len(value))
                value = loads(value, "the CQL2 filter", limits)
            check_cql2_tree(value, "the CQL2 filter", limits)
            expression = _upgraded(value)
        else:
            raise errors.InvalidRequest(f"filter-lang must be {CQL2_TEXT} or {CQL2_JSON}")
        check_cql2_tree(expression, "the CQL2 filter", limits)
        expression = json.loads(_validated(json.dumps(expression)))
    except (cql2.ParseError, cql2.ValidationError, ValueError, TypeError) as exc:
        raise errors.InvalidRequest(f"unparseable CQL2 filter: {_first_line(exc)}") from exc
    check_expression(expression)
    return dict(expression)


@functools.lru_cache(maxsize=256)
def _validated(text: str) -> str:
    """CQL2 JSON text of a valid filter. Validation builds a JSON Schema validator each time
    (about 30 ms), so it is cached: every page of a filtered search repeats the filter."""
    parsed = cql2.parse_json(text)
    parsed.validate()
    return json.dumps(parsed.to_json())


def _upgraded(node: Any) -> Any:
    """CQL2 JSON as drafts wrote it (`between` with a `[low, high]` list) in the 1.0 form."""
    if isinstance(node, list):
        return [_upgraded(n) for n in node]
    if not isinstance(node, dict):
        return node
    args = node.get("args")
    if node.get("op") == "between" and isinstance(args, list) and len(args) == 2:
        if isinstance(args[1], list) and len(args[1]) == 2:
            args = [args[0], *args[1]]
    if isinstance(args, list):
        return {**node, "args": [_upgraded(a) for a in args]}
    return node


def check_expression(expression: Any) -> None:
    """Refuse what is not a boolean CQL2 expression made of the operators this API evaluates."""
    if not isinstance(expression, dict) or expression.get("op") not in BOOLEAN_OPS:
        raise errors.InvalidRequest("a CQL2 filter must be a boolean expression")
    for node in _nodes(expression):
        op = node.get("op")
        if op is not None and op not in BOOLEAN_OPS | VALUE_OPS:
            raise errors.InvalidRequest(f"unsupported CQL2 operator or function: {op!r}")


def _json_parameter(value: Any, name: str, error: str, limits: RequestLimits) -> Any:
    """A parameter given as JSON (POST) or as its JSON text (GET); None when absent or empty."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        try:
            return loads(value, name, limits)
        except ValueError as exc:
            raise errors.InvalidRequest(error) from exc
    return value


def parse_query(value: Any, limits: RequestLimits = LIMITS) -> dict[str, Any] | None:
    """The query extension (`{"eo:cloud_cover": {"lt": 10}}`) as CQL2 JSON, held to the size
    and nesting limits of a CQL2 filter."""
    value = _json_parameter(value, "query", "query must be a JSON object", limits)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidRequest("query must be a JSON object")
    check_cql2_tree(value, "the query object", limits)
    terms = [term for name, ops in value.items() for term in _query_terms(name, ops)]
    expression = _conjunction(terms)
    check_cql2_tree(expression, "the query object", limits)
    return expression


def _query_terms(name: str, ops: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(ops, dict) or not ops:
        raise errors.InvalidRequest(f"query for {name!r} must map operators to values")
    prop = {"property": name}
    for op, operand in ops.items():
        if op in QUERY_OPS:
            yield {"op": QUERY_OPS[op], "args": [prop, _ordered(op, _scalar(name, operand))]}
        elif op in ("startsWith", "endsWith", "contains"):
            if not isinstance(operand, str):
                raise errors.InvalidRequest(f"query {op} on {name!r} takes a string")
            escaped = operand.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}[op]
            yield {"op": "like", "args": [prop, pattern.format(escaped)]}
        elif op == "in":
            if not isinstance(operand, list) or not operand:
                raise errors.InvalidRequest(f"query in on {name!r} takes a non-empty list")
            yield {"op": "in", "args": [prop, [_scalar(name, v) for v in operand]]}
        else:
            raise errors.InvalidRequest(f"unknown query operator {op!r}")


def _ordered(op: str, value: Any) -> Any:
    """`lt: "30"` (how pystac-client sends `eo:cloud_cover<30`) compares as a number."""
    if op in ("lt", "lte", "gt", "gte") and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def _scalar(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise errors.InvalidRequest(f"query on {name!r} compares with a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise errors.InvalidRequest(f"query on {name!r} compares with a finite number")
    return value


def parse_intersects(value: Any, limits: RequestLimits = LIMITS) -> dict[str, Any] | None:
    """A GeoJSON geometry (object or, for GET, its JSON text), checked before it is used."""
    value = _json_parameter(value, "intersects", "intersects must be a GeoJSON geometry", limits)
    if value is None:
        return None
    most = limits.intersects_vertices
    for count, _ in enumerate(_all_positions(value), start=1):
        if count > most:
            raise refuse("the intersects geometry", most, "vertices")
    check_geometry(value)
    return _without_bbox(value)


def _without_bbox(geometry: Mapping[str, Any]) -> dict[str, Any]:
    """The geometry without its optional `bbox` members: nothing checks them, and CQL2 JSON
    would read an object with a `bbox` as a bbox literal instead of the geometry."""
    kept = {k: v for k, v in geometry.items() if k != "bbox"}
    if kept.get("type") == "GeometryCollection":
        kept["geometries"] = [_without_bbox(part) for part in kept["geometries"]]
    return kept


def check_geometry(geometry: Any, depth: int = 0) -> None:
    if not isinstance(geometry, dict) or depth > 2:
        raise errors.InvalidRequest("intersects must be a GeoJSON geometry")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list) or not parts:
            raise errors.InvalidRequest("a GeometryCollection needs a list of geometries")
        for part in parts:
            check_geometry(part, depth + 1)
        return
    if kind not in GEOMETRY_TYPES:
        raise errors.InvalidRequest(f"unknown GeoJSON geometry type {kind!r}")
    positions = list(_positions(geometry.get("coordinates"), GEOMETRY_TYPES[kind], kind))
    if not positions:
        raise errors.InvalidRequest(f"{kind} has no coordinates")
    for lon, lat in positions:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise errors.InvalidRequest("intersects coordinates must be longitude, latitude")


def _positions(coordinates: Any, depth: int, kind: str) -> Iterator[tuple[float, float]]:
    if depth == 0:
        if (
            not isinstance(coordinates, list)
            or len(coordinates) not in (2, 3)
            or not all(_is_number(c) for c in coordinates)
        ):
            raise errors.InvalidRequest(f"malformed {kind} coordinates")
        yield float(coordinates[0]), float(coordinates[1])
        return
    if not isinstance(coordinates, list):
        raise errors.InvalidRequest(f"malformed {kind} coordinates")
    for part in coordinates:
        yield from _positions(part, depth - 1, kind)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- combining and reading off what the index can use --------------------------------------


def predicate(
    *expressions: dict[str, Any] | None, intersects: dict[str, Any] | None = None
) -> Predicate:
    """One predicate from the filter and query expressions and the intersects geometry (all
    must hold)."""
    terms = [e for e in expressions if e is not None]
    evaluated = _conjunction(terms)
    spatial = intersects_expression(intersects)
    expression = _conjunction([*terms, spatial] if spatial is not None else terms)
    if expression is None:
        return Predicate()
    compiled = None
    try:
        if evaluated is not None:
            compiled = cql2.parse_json(json.dumps(evaluated))
        area = prep(shape(intersects)) if intersects is not None else None
    except (cql2.ParseError, cql2.ValidationError, shapely.errors.ShapelyError, ValueError) as exc:
        raise errors.InvalidRequest(f"unusable filter: {_first_line(exc)}") from exc
    conjuncts = list(_conjuncts(expression))
    return Predicate(
        expression=expression,
        collections=_equalities(conjuncts, "collection"),
        ids=_equalities(conjuncts, "id"),
        tile=_single(_equalities(conjuncts, TILE_PROPERTY)),
        datetime_range=_time_range(conjuncts),
        bbox=_spatial_bbox(conjuncts),
        _compiled=compiled,
        _area=area,
    )


def intersects_expression(geometry: dict[str, Any] | None) -> dict[str, Any] | None:
    if geometry is None:
        return None
    return {"op": "s_intersects", "args": [{"property": "geometry"}, geometry]}


def _conjunction(terms: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"op": "and", "args": list(terms)}


def _conjuncts(expression: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if expression.get("op") == "and":
        for arg in expression.get("args", []):
            if isinstance(arg, dict):
                yield from _conjuncts(arg)
    else:
        yield expression


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for arg in node.get("args", []) if isinstance(node.get("args"), list) else []:
            yield from _nodes(arg)
    elif isinstance(node, list):
        for arg in node:
            yield from _nodes(arg)


def _property_args(term: dict[str, Any], name: str) -> list[Any] | None:
    args = term.get("args")
    if isinstance(args, list) and args and args[0] == {"property": name}:
        return args[1:]
    return None


def _equalities(conjuncts: list[dict[str, Any]], name: str) -> frozenset[str] | None:
    """Values a property must equal (`=` or `in` with string literals), intersected."""
    found: frozenset[str] | None = None
    for term in conjuncts:
        rest = _property_args(term, name)
        if rest is None or len(rest) != 1:
            continue
        if term["op"] == "=" and isinstance(rest[0], str):
            values = frozenset({rest[0]})
        elif term["op"] == "in" and isinstance(rest[0], list):
            if not all(isinstance(v, str) for v in rest[0]):
                continue
            values = frozenset(rest[0])
        else:
            continue
        found = values if found is None else found & values
    return found


def _single(values: frozenset[str] | None) -> str | None:
    return next(iter(values)) if values is not None and len(values) == 1 else None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, dict):
        text = value.get("timestamp") or value.get("date")
        if isinstance(text, str) and text != "..":
            try:
                return parse_datetime(text)
            except errors.InvalidRequest:
                return None
    return None


def _time_range(conjuncts: list[dict[str, Any]]) -> DatetimeRange | None:
    """The widest time range the filter allows, from comparisons of `datetime` with instants."""
    low: datetime | None = None
    high: datetime | None = None
    for term in conjuncts:
        rest = _property_args(term, "datetime")
        if rest is None or len(rest) != 1:
            continue
        bounds = _term_bounds(term["op"], rest[0])
        if bounds[0] is not None:
            low = bounds[0] if low is None else max(low, bounds[0])
        if bounds[1] is not None:
            high = bounds[1] if high is None else min(high, bounds[1])
    return None if low is None and high is None else (low, high)


def _term_bounds(op: str, operand: Any) -> tuple[datetime | None, datetime | None]:
    if op == "t_intersects" and isinstance(operand, dict) and "interval" in operand:
        interval = operand["interval"]
        if isinstance(interval, list) and len(interval) == 2:
            return tuple(_instant({"timestamp": v}) for v in interval)  # type: ignore[return-value]
    instant = _instant(operand)
    if instant is None:
        return None, None
    if op in (">", ">="):
        return instant, None
    if op in ("<", "<="):
        return None, instant
    if op in ("=", "t_equals", "t_intersects"):
        return instant, instant
    return None, None


def _spatial_bbox(conjuncts: list[dict[str, Any]]) -> Bbox | None:
    """The bbox of the first `s_intersects(geometry, literal)`: the index reads no wider."""
    for term in conjuncts:
        rest = _property_args(term, "geometry")
        if term.get("op") == "s_intersects" and rest and isinstance(rest[0], dict):
            return geometry_bbox(rest[0])
    return None


def geometry_bbox(geometry: Mapping[str, Any]) -> Bbox | None:
    """The bbox of a geometry's positions; a `bbox` member is not trusted (nothing checks it)."""
    points = list(_all_positions(geometry))
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def _all_positions(node: Any) -> Iterator[tuple[float, float]]:
    if isinstance(node, dict):
        if node.get("type") == "GeometryCollection":
            for part in node.get("geometries") or []:
                yield from _all_positions(part)
        else:
            yield from _all_positions(node.get("coordinates"))
    elif isinstance(node, list):
        if len(node) >= 2 and all(_is_number(v) for v in node):
            yield float(node[0]), float(node[1])
        else:
            for part in node:
                yield from _all_positions(part)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split())[:300] or type(exc).__name__
