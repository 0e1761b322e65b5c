"""Benchmark of the catalog index at scale: records read per search, and handler latency.

Indexes N synthetic Items (Sentinel-2 every 5 days and Landsat-8 every 16 days on a grid of
1-degree tiles, year after year, bulk-written with `Catalog.put_items`) in an in-process moto
DynamoDB table with the template's key schema, then runs typical searches through the real API
handler and prints, for each, the records read from the index against the Items returned, the
DynamoDB requests of the page, the handler's latency (wall clock) and its CPU time split in two
(CPU time of the handler's thread, so that other processes on a shared machine do not blur it):

- ``ddb``: time inside moto's DynamoDB (from the request leaving botocore to its response).
  Not DynamoDB's. moto's Query walks every item of the table; here a table Query is patched to
  read its partition only (`speed_up_moto`), as DynamoDB does, so that a 100,000 Item run
  ends in minutes; a Query of the `by_id` index (ids searches) still walks the table, and
  moto's check of the 400 KB item size (which sums the whole item at every attribute set) is
  left out of the load;
- ``own``: the rest, our code plus botocore's request and response handling, which is what the
  handler costs on Lambda besides DynamoDB's own latency.

Run it at several sizes to see whether the cost of a page depends on the size of the catalog:

    .venv/bin/python bench/search_scale.py --items 1000 10000 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber
from moto.dynamodb.models.dynamo_type import LimitedSizeDict
from moto.dynamodb.models.table import Table

from sansnuages.api.stac import ApiConfig, make_resolver
from sansnuages.stores.catalog import Catalog, SearchPage
from sansnuages.tools.local.http_front import LocalContext, build_event

S2, L8 = "sentinel2-l2a", "landsat8-l2a"
COLUMNS, ROWS = 12, 10
"""A 12 x 10 grid of 1-degree tiles over France (lon -5..7, lat 42..52)."""
START = datetime(2016, 1, 1, 10, 30, tzinfo=UTC)
REPEATS = 5


@dataclass
class DynamoDbMeter:
    """Time and requests spent inside moto, measured around its botocore `before-send` hook."""

    seconds: float = 0.0
    cpu: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)

    def install(self) -> None:
        original = BotocoreStubber.__call__
        meter = self

        def timed(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(stubber, event_name, request, **kwargs)
            finally:
                meter.seconds += time.perf_counter() - started
                meter.cpu += time.thread_time() - cpu
                target = request.headers.get("X-Amz-Target", b"")
                name = target.decode() if isinstance(target, bytes) else str(target)
                meter.requests[name.rsplit(".", 1)[-1]] += 1

        setattr(BotocoreStubber, "__call__", timed)  # noqa: B010 - a class attribute, on purpose

    def reset(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.requests.clear()


METER = DynamoDbMeter()


def speed_up_moto() -> None:
    """Make moto's table Query read the queried partition only, and skip its size check."""
    original = Table.query

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original(self, hash_key, *args, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        self.all_items = lambda: partition  # type: ignore[method-assign]
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    setattr(Table, "query", query)  # noqa: B010 - a class attribute, on purpose
    setattr(LimitedSizeDict, "__setitem__", dict.__setitem__)  # noqa: B010 - same


class CountingCatalog(Catalog):
    """The catalog, remembering the records the last search read."""

    last: SearchPage | None = None

    def search(self, *args: Any, **kwargs: Any) -> SearchPage:
        self.last = super().search(*args, **kwargs)
        return self.last


def tile_code(column: int, row: int) -> str:
    return f"MGRS-T{column:02d}{row:02d}"


def tile_bbox(column: int, row: int) -> list[float]:
    """Tiles overlap their neighbours by 0.1 degree, as Sentinel-2 tiles do."""
    x, y = -5.0 + column, 42.0 + row
    return [x - 0.05, y - 0.05, x + 1.05, y + 1.05]


def make_item(collection: str, column: int, row: int, when: datetime) -> dict[str, Any]:
    xmin, ymin, xmax, ymax = tile_bbox(column, row)
    code = tile_code(column, row)
    item_id = f"{collection}_{code}_{when:%Y%m%dT%H%M%S}"
    ring = [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [xmin, ymin, xmax, ymax],
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "grid:code": code,
            "eo:cloud_cover": (column * 37 + row * 11 + when.toordinal()) % 100,
        },
        "assets": {
            "B4": {"href": f"s3://data/l2a/{collection}/{code}/{item_id}_B4.tif", "roles": ["data"]}
        },
        "links": [],
    }


def synthetic_items(count: int) -> Iterator[dict[str, Any]]:
    """Day after day from 2016: every tile seen by S2 every 5 days and by L8 every 16 days."""
    made, day = 0, 0
    while True:
        when = START + timedelta(days=day)
        collections = [c for c, every in ((S2, 5), (L8, 16)) if day % every == 0]
        for collection in collections:
            for column in range(COLUMNS):
                for row in range(ROWS):
                    yield make_item(collection, column, row, when + timedelta(minutes=column))
                    made += 1
                    if made == count:
                        return
        day += 1


def create_table(client: Any, name: str) -> None:
    """The key schema of template.yaml's CatalogTable."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "item_key")
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_id",
                "KeySchema": [{"AttributeName": "item_key", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@dataclass(frozen=True)
class Search:
    name: str
    method: str
    query: dict[str, Any]
    selective: bool


JANUARY = "2016-01-01T00:00:00Z/2016-01-30T23:59:59Z"
"""The searches look at the first 30 days, which every catalog size holds whole, so that each
returns the same Items at every size and only the catalog around them grows."""

SEARCHES = [
    Search("collection + month", "GET", {"collections": S2, "datetime": JANUARY, "limit": 100}, True),
    Search("tile + month (CQL2 grid:code)", "POST", {"datetime": JANUARY, "filter": {"op": "=", "args": [{"property": "grid:code"}, tile_code(3, 4)]}, "limit": 100}, True),
    Search("small bbox + month, 2 collections", "GET", {"bbox": "-1.6,46.2,-1.4,46.4", "datetime": JANUARY, "limit": 100}, True),
    Search("intersects point + month", "POST", {"intersects": {"type": "Point", "coordinates": [-2.5, 45.5]}, "collections": [S2], "datetime": JANUARY, "limit": 100}, True),
    Search("ids (5)", "POST", {"collections": [S2], "ids": [make_item(S2, c, 2, START + timedelta(minutes=c))["id"] for c in range(5)]}, True),
    Search("newest 10 (sortby -datetime)", "GET", {"collections": S2, "sortby": "-datetime", "limit": 10}, True),
    Search("first page, no filter", "GET", {"limit": 10}, True),
    Search("cloud cover < 10 + month (post-filter)", "GET", {"collections": S2, "datetime": JANUARY, "filter": "eo:cloud_cover < 10", "limit": 100}, False),
    Search("country bbox + month", "GET", {"bbox": "-5,42,7,52", "collections": S2, "datetime": JANUARY, "limit": 100}, True),
]  # fmt: skip


def event(search: Search) -> dict[str, Any]:
    if search.method == "GET":
        from urllib.parse import urlencode

        target = f"/search?{urlencode(search.query)}"
        return build_event("GET", target, [("Host", "bench")], b"", "127.0.0.1")
    body = json.dumps(search.query).encode()
    headers = [("Host", "bench"), ("Content-Type", "application/json")]
    return build_event("POST", "/search", headers, body, "127.0.0.1")


@dataclass(frozen=True)
class Figures:
    """One search at one catalog size: medians over REPEATS runs."""

    read: int
    returned: int
    requests: int
    wall_ms: float
    """Latency of the handler, moto included."""
    ddb_ms: float
    """CPU time inside moto."""
    own_ms: float
    """CPU time of the handler outside moto: our code and botocore."""


def run(resolver: Any, catalog: CountingCatalog, search: Search) -> Figures:
    walls, inside, own, requests = [], [], [], []
    returned = 0
    for _ in range(REPEATS):
        METER.reset()
        started, cpu = time.perf_counter(), time.thread_time()
        response = resolver.resolve(event(search), LocalContext())
        walls.append(time.perf_counter() - started)
        inside.append(METER.cpu)
        own.append(time.thread_time() - cpu - METER.cpu)
        requests.append(sum(METER.requests.values()))
        assert response["statusCode"] == 200, response["body"][:300]
        returned = json.loads(response["body"])["numberReturned"]
    read = catalog.last.records_read if catalog.last else 0
    wall, ddb, ours = (statistics.median(v) * 1000 for v in (walls, inside, own))
    return Figures(read, returned, max(requests), wall, ddb, ours)


def load(catalog: Catalog, count: int) -> None:
    """Bulk-index the Items, 5,000 at a time. The collector is frozen after each batch: the
    table's millions of long-lived objects would otherwise be walked again and again."""
    batch: list[dict[str, Any]] = []
    for item in synthetic_items(count):
        batch.append(item)
        if len(batch) == 5000:
            catalog.put_items(batch)
            batch = []
            gc.freeze()
    catalog.put_items(batch)
    for collection_id in (S2, L8):
        catalog.put_collection({"type": "Collection", "id": collection_id})


def bench(count: int) -> dict[str, Figures]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "catalog")
        catalog = CountingCatalog("catalog", client=client)
        METER.reset()
        started = time.perf_counter()
        load(catalog, count)
        loaded = time.perf_counter() - started
        rate = count / loaded
        moto_share = METER.seconds / loaded
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"indexed {count:,} items in {loaded:.0f} s ({rate:,.0f} items/s, {moto_share:.0%} "
            f"inside moto, {sum(METER.requests.values()):,} requests); process peak RSS so far {rss:,.0f} MB",
            flush=True,
        )
        resolver = make_resolver(catalog, config=ApiConfig())
        results = {}
        for search in SEARCHES:
            results[search.name] = f = run(resolver, catalog, search)
            print(
                f"  {search.name:<40} {f.read:>6} / {f.returned:<6} {f.requests:>3} requests "
                f"{f.wall_ms:8.1f} ms; CPU ms: ddb {f.ddb_ms:8.1f}, own {f.own_ms:6.1f}",
                flush=True,
            )
        gc.unfreeze()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    METER.install()
    speed_up_moto()
    results = {count: bench(count) for count in args.items}
    sizes = list(results)
    header = "".join(f" | {n:>7,}: read/ret  ratio req own ms  ddb ms" for n in sizes)
    print(f"\n{'search':<40}{header}")
    for search in SEARCHES:
        cells = []
        for count in sizes:
            f = results[count][search.name]
            ratio = f.read / f.returned if f.returned else float("inf")
            cells.append(
                f" | {f.read:>5} / {f.returned:<5} {ratio:>5.2f}x {f.requests:>3} "
                f"{f.own_ms:>6.1f} {f.ddb_ms:>7.1f}"
            )
        mark = "" if search.selective else " *"
        print(f"{search.name + mark:<40}{''.join(cells)}")
    print("* not selective in the index: the post-filter rejects most of the records it reads")
    print("CPU ms of a page: own, the handler outside moto (our code and botocore); ddb, moto's")


if __name__ == "__main__":
    main()
