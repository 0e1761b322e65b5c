"""Benchmark of the catalog index at scale: records read per search, and handler latency.

Indexes N synthetic Items (Sentinel-2 every 5 days and Landsat-8 every 16 days on a grid of
1-degree tiles, year after year, bulk-written) in an in-process moto DynamoDB table with the
template's key schema, then runs typical searches through the real API handler and prints, for
each, the records read from the index against the Items returned and the handler's latency.
Run it at two sizes to see whether the cost of a page depends on the size of the catalog:

    .venv/bin/python bench/search_scale.py --items 10000 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto import mock_aws

from sansnuages.catalog import Catalog, SearchPage
from sansnuages.local.http_front import LocalContext, build_event
from sansnuages.stac_api import ApiConfig, make_resolver

S2, L8 = "sentinel2-l2a", "landsat8-l2a"
COLUMNS, ROWS = 12, 10
"""A 12 x 10 grid of 1-degree tiles over France (lon -5..7, lat 42..52)."""
START = datetime(2016, 1, 1, 10, 30, tzinfo=UTC)
REPEATS = 3


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


SEARCHES = [
    Search("collection + month", "GET", {"collections": S2, "datetime": "2016-03-01T00:00:00Z/2016-03-31T23:59:59Z", "limit": 100}, True),
    Search("tile + year (CQL2 grid:code)", "POST", {"collections": [S2], "datetime": "2016-01-01T00:00:00Z/2016-12-31T23:59:59Z", "filter": {"op": "=", "args": [{"property": "grid:code"}, tile_code(3, 4)]}, "limit": 100}, True),
    Search("small bbox + month, 2 collections", "GET", {"bbox": "-1.6,46.2,-1.4,46.4", "datetime": "2016-02-01T00:00:00Z/2016-02-29T23:59:59Z", "limit": 100}, True),
    Search("intersects point + month", "POST", {"intersects": {"type": "Point", "coordinates": [2.5, 48.5]}, "collections": [S2], "datetime": "2016-02-01T00:00:00Z/2016-02-29T23:59:59Z", "limit": 100}, True),
    Search("ids (5)", "POST", {"collections": [S2], "ids": [make_item(S2, c, 2, START + timedelta(minutes=c))["id"] for c in range(5)]}, True),
    Search("newest 10 (sortby -datetime)", "GET", {"collections": S2, "sortby": "-datetime", "limit": 10}, True),
    Search("first page, no filter", "GET", {"limit": 10}, True),
    Search("cloud cover < 10 + month (post-filter)", "GET", {"collections": S2, "datetime": "2016-03-01T00:00:00Z/2016-03-31T23:59:59Z", "filter": "eo:cloud_cover < 10", "limit": 100}, False),
    Search("country bbox + month", "GET", {"bbox": "-5,42,7,52", "collections": S2, "datetime": "2016-02-01T00:00:00Z/2016-02-29T23:59:59Z", "limit": 100}, True),
]  # fmt: skip


def event(search: Search) -> dict[str, Any]:
    if search.method == "GET":
        from urllib.parse import urlencode

        target = f"/search?{urlencode(search.query)}"
        return build_event("GET", target, [("Host", "bench")], b"", "127.0.0.1")
    body = json.dumps(search.query).encode()
    headers = [("Host", "bench"), ("Content-Type", "application/json")]
    return build_event("POST", "/search", headers, body, "127.0.0.1")


def run(resolver: Any, catalog: CountingCatalog, search: Search) -> tuple[int, int, float]:
    times = []
    returned = 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = resolver.resolve(event(search), LocalContext())
        times.append(time.perf_counter() - started)
        assert response["statusCode"] == 200, response["body"][:300]
        returned = json.loads(response["body"])["numberReturned"]
    read = catalog.last.records_read if catalog.last else 0
    return read, returned, statistics.median(times) * 1000


def bench(count: int) -> dict[str, tuple[int, int, float]]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "catalog")
        catalog = CountingCatalog("catalog", client=client)
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        for item in synthetic_items(count):
            batch.append(item)
            if len(batch) == 5000:
                catalog.put_items(batch)
                batch = []
        catalog.put_items(batch)
        for collection_id in (S2, L8):
            catalog.put_collection({"type": "Collection", "id": collection_id})
        loaded = time.perf_counter() - started
        rate = count / loaded
        print(f"indexed {count:,} items in {loaded:.0f} s ({rate:,.0f} items/s)", flush=True)
        resolver = make_resolver(catalog, config=ApiConfig())
        results = {}
        for search in SEARCHES:
            results[search.name] = read, returned, ms = run(resolver, catalog, search)
            print(f"  {search.name:<40} {read:>6} / {returned:<6} {ms:8.1f} ms", flush=True)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    results = {count: bench(count) for count in args.items}
    sizes = list(results)
    header = "".join(f" | {n:>7,}: read/returned  ratio  ms/page" for n in sizes)
    print(f"\n{'search':<40}{header}")
    for search in SEARCHES:
        cells = []
        for count in sizes:
            read, returned, ms = results[count][search.name]
            ratio = read / returned if returned else float("inf")
            cells.append(f" | {read:>7} / {returned:<7} {ratio:>5.2f}x {ms:>8.1f}")
        mark = "" if search.selective else " *"
        print(f"{search.name + mark:<40}{''.join(cells)}")
    print("* not selective in the index: the post-filter rejects most of the records it reads")


if __name__ == "__main__":
    main()
