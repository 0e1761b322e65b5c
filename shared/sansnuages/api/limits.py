"""What one request may ask of the API: sizes, counts and nesting, and how much of the index a
search may read. Each limit is a 400 that names it; the OpenAPI document, the `/api.html` page
and the README quote these numbers.

Nesting is checked on the text before anything recursive reads it: Python's `json` raises
`RecursionError` on deep arrays, and the CQL2 text parser overflows the stack on deep parentheses
or long runs of signs (a crash of the process, not an exception). CQL2 size bounds the work of
evaluating a filter on each Item a search reads; the read budget bounds how many it reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from sansnuages import errors


@dataclass(frozen=True)
class RequestLimits:
    """The limits of one request; `documented()` lists them for the API's documents."""

    body_bytes: int = 1_048_576
    """POST /search body: a 10,000-vertex polygon written at full precision is about 400 KB."""
    json_depth: int = 64
    """Nesting of any JSON the API parses (a CQL2 JSON operation takes two levels)."""
    cql2_chars: int = 10_000
    """A CQL2 filter given as text (cql2-text, or cql2-json in a query string)."""
    cql2_depth: int = 20
    """Operations nested in a CQL2 filter or in the query extension's object."""
    cql2_nodes: int = 1_000
    """Values of a CQL2 expression (operations, properties, literals, coordinates), each
    evaluated on every Item a search reads."""
    intersects_vertices: int = 10_000
    """Positions of the `intersects` geometry."""
    ids: int = 100
    collections: int = 50
    fields: int = 50
    """Names in `fields`, include and exclude together."""
    sortby: int = 2
    """Sort terms (datetime, then id)."""
    id_chars: int = 200
    """An Item or collection id, in a path, `ids` or `collections` (DynamoDB keys stop at
    1,024 bytes)."""
    token_chars: int = 1_024
    read_records: int = 2_000
    """Index records one search may read (every page of up to 1,000 Items fits)."""
    read_queries: int = 200
    """Index queries one search may make: each is one round trip to DynamoDB."""
    series_days: int = 1_096
    """Days of a time series' date range (three years; a range must have both ends)."""
    series_products: int = 400
    """Products a time series reads (a year of one tile is about 90)."""
    series_pixels: int = 10_000
    """Pixels of a product's grid under a time series polygon (1 km² at 10 m)."""
    series_vertices: int = 1_000
    """Vertices of a time series polygon."""
    season_pixels: int = 40_000
    """Pixels of the 20 m grid under a season plot's polygon (16 km²): each snow map of the
    season (about 150) is read over the polygon's window."""
    stats_days: int = 3_660
    """Days of a production statistics range (one index record a day)."""

    def documented(self) -> list[tuple[str, int, str]]:
        """(parameter, limit, what is limited) for each limit, in the documents' order."""
        return [
            ("body", self.body_bytes, "bytes of a POST /search body"),
            ("JSON", self.json_depth, "levels of nesting of any JSON (body, intersects, query)"),
            ("filter", self.cql2_chars, "characters of a CQL2 filter given as text"),
            ("filter", self.cql2_depth, "nested operations of a CQL2 filter or a query object"),
            ("filter", self.cql2_nodes, "values of a CQL2 filter or a query object"),
            ("intersects", self.intersects_vertices, "vertices of the intersects geometry"),
            ("ids", self.ids, "Item ids"),
            ("collections", self.collections, "collection ids"),
            ("fields", self.fields, "field names, included and excluded"),
            ("sortby", self.sortby, "sort terms"),
            ("ids, collections", self.id_chars, "characters of one id (also in paths)"),
            ("token", self.token_chars, "characters of a paging token"),
            ("search", self.read_records, "index records read per request (then a next link)"),
            ("search", self.read_queries, "index queries per request (then a next link)"),
            ("timeseries", self.series_days, "days of a time series range"),
            ("timeseries", self.series_products, "products read by a time series"),
            ("timeseries", self.series_pixels, "pixels of a product under a polygon"),
            ("timeseries", self.series_vertices, "vertices of a time series polygon"),
            ("seasons", self.season_pixels, "pixels of the 20 m grid under a season's polygon"),
            ("stats", self.stats_days, "days of a production statistics range"),
        ]


LIMITS = RequestLimits()


def refuse(what: str, most: int, unit: str, found: int | None = None) -> errors.InvalidRequest:
    """The 400 of a limit: what is over, its limit and, when known, how much was sent."""
    sent = f" (got {found:,})" if found is not None else ""
    return errors.InvalidRequest(f"{what} is over the limit of {most:,} {unit}{sent}")


def check_count(values: Sized | None, name: str, most: int, unit: str = "") -> None:
    if values is not None and len(values) > most:
        raise refuse(name, most, unit or name, len(values))


def check_ids(values: list[str] | None, name: str, limits: RequestLimits = LIMITS) -> None:
    """A list of ids: how many, and how long each may be."""
    check_count(values, name, getattr(limits, name))
    for value in values or ():
        check_id(value, name, limits)


def check_id(value: str, name: str = "id", limits: RequestLimits = LIMITS) -> None:
    if len(value) > limits.id_chars:
        raise refuse(f"one of {name}", limits.id_chars, "characters", len(value))


# --- JSON -----------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest, read without parsing it (strings
    are skipped; brackets of a malformed text are counted as they come)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = (1 if b in "[{" else -1 for b in brackets)
    return max(accumulate(steps), default=0)


def loads(text: str, what: str, limits: RequestLimits = LIMITS) -> Any:
    """JSON text parsed once its nesting is known to be within the limit."""
    depth = json_depth(text)
    if depth > limits.json_depth:
        raise refuse(f"the nesting of {what}", limits.json_depth, "levels", depth)
    return json.loads(text)


# --- CQL2 -----------------------------------------------------------------------------------

_CQL2_QUOTED = re.compile(r"'[^']*(?:''[^']*)*'|\"[^\"]*\"")
_NOT_PAREN = re.compile(r"[^()]+")
_SIGNS = re.compile(r"[+-](?:\s*[+-])*")


def check_cql2_text(text: str, limits: RequestLimits = LIMITS) -> None:
    """What the CQL2 text parser may be given: its length, and nesting it can parse.

    Parentheses (groups, calls, geometries) and runs of signs (`- -1`) each take a level of
    the parser's recursion; at most twice the operation depth of each is let through, and the
    parsed expression is then held to the depth limit itself.
    """
    if len(text) > limits.cql2_chars:
        raise refuse("the CQL2 filter", limits.cql2_chars, "characters", len(text))
    bare = _CQL2_QUOTED.sub("''", text)
    parens = _NOT_PAREN.sub("", bare)
    depth = max(accumulate(1 if p == "(" else -1 for p in parens), default=0)
    signs = max((len(re.sub(r"\s", "", run)) for run in _SIGNS.findall(bare)), default=0)
    if max(depth, signs) > 2 * limits.cql2_depth:
        raise refuse("the nesting of the CQL2 filter", limits.cql2_depth, "operations")


def check_cql2_tree(expression: Any, what: str, limits: RequestLimits = LIMITS) -> None:
    """Nested operations and values of a CQL2 JSON expression, counted without recursion (depth
    first, so that a deep chain is refused for its nesting before its size)."""
    for nodes, (_value, depth) in enumerate(_walk(expression), start=1):
        if depth > limits.cql2_depth:
            raise refuse(f"the nesting of {what}", limits.cql2_depth, "operations")
        if nodes > limits.cql2_nodes:
            raise refuse(f"the size of {what}", limits.cql2_nodes, "values")


def _walk(expression: Any) -> Iterator[tuple[Any, int]]:
    """Every value of a JSON tree, with the number of operations (`{"op": ...}`) it is in."""
    stack = [(expression, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            depth += 1 if "op" in value else 0
            stack.extend((v, depth) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth) for v in value)
        yield value, depth
