"""Benchmark of the reflectance time series at a point: a year of one tile (70 Sentinel-2 and
20 Landsat-8 products of full-size COGs), through the API function warm and cold, against the
obvious route (find the same Items, then open each COG with rasterio and read the pixel, one
product after another).

The COGs have the full size and layout of ingest's (10980 x 10980 px at 10 m for Sentinel-2,
3660 x 3660 at 30 m for Landsat-8, 512 px blocks, DEFLATE with predictor, overviews), so their
headers and the block under the point are what a reader meets; only the blocks around the
point hold varied values (the rest is one value, so that 720 COGs fit in the embedded S3).
One COG per asset kind is written and copied under each product's keys; the Items are indexed
as ingest indexes them.

    .venv/bin/python bench/timeseries.py            # 70 + 20 products, 5 warm requests
    .venv/bin/python bench/timeseries.py --sentinel2 10 --landsat8 3 --json   # quick

Each measured run is a fresh process: its first request is the cold figure (GDAL, boto3 and
the HTTP connections set up), the next ones the warm figures. Requests to the embedded AWS are
counted from the moto server's call log; each request's CPU time is reported for the process
asking (HTTP front and function) and for the moto server answering (it shares the cores here;
on AWS it costs the function nothing), figures that hold better than wall times on a machine
shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TILE = "31UFS"
POINT_M = (47_310.0, 52_110.0)
"""The point, in metres east and south of the tile's upper-left corner."""
OTHER_POINT_DX = 6_000.0
"""The second point, this far east of the first: other blocks of every COG."""
S2_ASSETS = {"FRE_B2": "int16", "FRE_B3": "int16", "FRE_B4": "int16", "FRE_B8": "int16",
             "CLM_R1": "uint8", "MG2_R1": "uint8", "EDG_R1": "uint8", "ATB_R1": "uint8"}  # fmt: skip
L8_ASSETS = {"FRE_B2": "int16", "FRE_B3": "int16", "FRE_B4": "int16", "FRE_B5": "int16",
             "CLM_XS": "uint8", "MG2_XS": "uint8", "EDG_XS": "uint8", "ATB_XS": "uint8"}  # fmt: skip


def _template(folder: Path, name: str, dtype: str, pixel: float, seed: int) -> Path:
    """One full-size COG with varied values around the two points (512 px around each)."""
    from affine import Affine

    from sansnuages.formats import grid
    from sansnuages.raster.cog import cog_writer

    path = folder / f"{name}-{int(pixel)}.tif"
    if path.exists():
        return path
    tile = grid.tile(TILE)
    size = round(109_800 / pixel)
    transform = Affine(pixel, 0, tile.ulx, 0, -pixel, tile.uly)
    count = 2 if name.startswith("ATB") else 1
    col, row = int(POINT_M[0] / pixel), int(POINT_M[1] / pixel)
    rng = np.random.default_rng(seed)
    nodata = -10000 if dtype == "int16" else (0 if name.startswith("ATB") else None)
    with cog_writer(str(path), width=size, height=size, count=count, dtype=dtype,
                    crs=f"EPSG:{tile.epsg}", transform=transform, nodata=nodata) as dst:  # fmt: skip
        base = {"int16": 900, "uint8": 0}[dtype] if not name.startswith("ATB") else 30
        step = 2048
        for r0 in range(0, size, step):
            for c0 in range(0, size, step):
                h, w = min(step, size - r0), min(step, size - c0)
                block = np.full((count, h, w), base, dtype=dtype)
                near = slice(max(0, row - 512 - r0), max(0, min(h, row + 512 - r0)))
                east = col + round(OTHER_POINT_DX / pixel) + 512
                across = slice(max(0, col - 512 - c0), max(0, min(w, east - c0)))
                if near.stop > near.start and across.stop > across.start:
                    shape = (count, near.stop - near.start, across.stop - across.start)
                    if dtype == "int16":
                        block[:, near, across] = rng.integers(200, 4000, shape)
                    elif name.startswith("ATB"):
                        block[:, near, across] = rng.integers(1, 60, shape)
                    elif name.startswith("CLM"):
                        block[:, near, across] = rng.choice([0, 0, 0, 3, 35], shape)
                from rasterio.windows import Window

                dst.write(block, window=Window(c0, r0, w, h))
    return path


def _items(bucket: str, sentinel2: int, landsat8: int) -> list[dict[str, Any]]:
    from pyproj import Transformer
    from shapely.geometry import Polygon, mapping

    from sansnuages.formats import grid

    tile = grid.tile(TILE)
    to_lonlat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform
    corners = [(0, 0), (109_800, 0), (109_800, 109_800), (0, 109_800), (0, 0)]
    square = Polygon([to_lonlat(tile.ulx + x, tile.uly - y) for x, y in corners])
    geometry = mapping(square)
    start = datetime(2018, 1, 3, 10, 56, 26, tzinfo=UTC)
    items = []
    for kind, count, every, assets, pixel in (
        ("S2", sentinel2, 365 / max(sentinel2, 1), S2_ASSETS, 10.0),
        ("L8", landsat8, 365 / max(landsat8, 1), L8_ASSETS, 30.0),
    ):
        for n in range(count):
            when = start + timedelta(days=n * every, minutes=0 if kind == "S2" else -26)
            platform = (
                ("SENTINEL2A", "SENTINEL2B")[n % 2] if kind == "S2" else "LANDSAT8-OLITIRS-XS"
            )
            pid = f"{platform}_{when:%Y%m%d-%H%M%S}-000_L2A_T{TILE}_C_V2-2"
            collection = "sentinel2-l2a" if kind == "S2" else "landsat8-l2a"
            prefix = f"l2a/{collection}/{TILE}/{when:%Y/%m}/{pid}/"
            size = round(109_800 / pixel)
            documents = {}
            for key, dtype in assets.items():
                bands = [{"nodata": -10000, "scale": 0.0001 if kind == "S2" else 0.001}]
                if not key.startswith("FRE"):
                    bands = [{"data_type": dtype}]
                if key.startswith("ATB"):
                    bands = [{"scale": 0.05, "nodata": 0}, {"scale": 0.005, "nodata": 0}]
                documents[key] = {
                    "href": f"s3://{bucket}/{prefix}{pid}_{key}.tif",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "proj:code": f"EPSG:{tile.epsg}",
                    "proj:shape": [size, size],
                    "proj:transform": [pixel, 0, tile.ulx, 0, -pixel, tile.uly],
                    "raster:bands": bands,
                    "file:checksum": f"{key}-{int(pixel)}",  # as ingest records each file's
                }
            items.append({
                "type": "Feature", "stac_version": "1.1.0", "id": pid, "collection": collection,
                "geometry": geometry, "bbox": list(square.bounds),
                "properties": {
                    "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "platform": "landsat-8" if kind == "L8" else f"sentinel-2{platform[-1].lower()}",
                    "grid:code": f"MGRS-{TILE}", "deprecated": False,
                    "view:sun_elevation": 40.0, "view:sun_azimuth": 160.0,
                    "view:incidence_angle": 5.0, "view:azimuth": 100.0,
                    "sansnuages:cloudy": False, "eo:cloud_cover": 20.0,
                },
                "links": [], "assets": documents,
            })  # fmt: skip
    return items


def prepare(
    endpoint: str, stack_name: str, sentinel2: int, landsat8: int, cache: Path
) -> dict[str, str]:
    """Provision the stack, write the template COGs, copy them under every product, index."""
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.settings import Settings
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.stores.catalog import Catalog
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS
    from sansnuages.tools.local.provision import local_environment, provision
    from sansnuages.tools.local.template import load_stack

    stack = load_stack(ROOT / "template.yaml", stack_name=stack_name, endpoint_url=endpoint)
    provision(stack, endpoint_url=endpoint)
    env = {**LOCAL_CREDENTIALS, **local_environment(stack, "ApiFunction", endpoint)}
    os.environ.update(env)
    settings = Settings.from_env(env)
    use_gdal(settings)
    bucket = DataBucket(settings)
    cache.mkdir(parents=True, exist_ok=True)
    templates: dict[tuple[str, float], str] = {}
    for pixel, assets in ((10.0, S2_ASSETS), (30.0, L8_ASSETS)):
        for n, (name, dtype) in enumerate(assets.items()):
            path = _template(cache, name, dtype, pixel, seed=n)
            key = f"bench/templates/{path.name}"
            bucket.client.upload_file(str(path), bucket.name, key)
            templates[name, pixel] = key
    catalog = Catalog(settings.catalog_table, settings=settings)
    items = _items(bucket.name, sentinel2, landsat8)
    for item in items:
        pixel = 10.0 if item["collection"] == "sentinel2-l2a" else 30.0
        for name, asset in item["assets"].items():
            key = asset["href"].split("/", 3)[3]
            source = {"Bucket": bucket.name, "Key": templates[name, pixel]}
            bucket.client.copy_object(Bucket=bucket.name, Key=key, CopySource=source)
        catalog.put_item(item)
    return env


MEASURE = r"""
import importlib.util, json, os, sys, time, urllib.request
from pathlib import Path
mode, url_query, repeats, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
queries = [url_query] * repeats + [sys.argv[5]]
server_stat = Path(f"/proc/{sys.argv[6]}/stat")
def lines():
    return sum(1 for _ in open(log))
def server_cpu():
    if not server_stat.exists():
        return 0.0
    fields = server_stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def timed_run(run):
    before = lines(); server = server_cpu(); cpu = time.process_time()
    start = time.perf_counter()
    count = run()
    return {"seconds": time.perf_counter() - start, "observations": count,
            "cpu_seconds": time.process_time() - cpu,
            "server_cpu_seconds": server_cpu() - server, "first_call": before}
out = []
if mode == "api":
    from sansnuages.tools.local.http_front import HttpFront
    spec = importlib.util.spec_from_file_location("api_app", "functions/api/app.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    handler_seconds = []
    def timed(event, context):
        start = time.perf_counter()
        try:
            return module.handler(event, context)
        finally:
            handler_seconds.append(time.perf_counter() - start)
    with HttpFront(timed) as front:
        def ask(url_query=None):
            with urllib.request.urlopen(f"{front.url}/timeseries?{url_query}", timeout=600) as r:
                return json.loads(r.read())["count"]
        for url_query in queries:
            run = timed_run(lambda: ask(url_query))
            out.append({**run, "handler_seconds": handler_seconds[-1]})
else:
    import rasterio
    from pyproj import Transformer
    from sansnuages.api.timeseries_routes import parse_series
    from sansnuages.raster.cog import s3_to_vsi
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.settings import Settings
    from sansnuages.stores.catalog import Catalog
    from sansnuages.stores.timeseries import find_products
    from urllib.parse import parse_qsl
    settings = Settings.from_env(); use_gdal(settings)
    catalog = Catalog(settings.catalog_table, settings=settings)
    def one_by_one(query):
        lon, lat = query.geometry["coordinates"]
        count = 0
        for item in find_products(catalog, query):
            values = {}
            for key, asset in item["assets"].items():
                if not key.startswith(("FRE_B2", "FRE_B3", "FRE_B4", "FRE_B8", "FRE_B5", "CLM", "MG2", "EDG", "ATB")):
                    continue
                with rasterio.open(s3_to_vsi(asset["href"])) as dataset:
                    x, y = Transformer.from_crs(4326, dataset.crs, always_xy=True).transform(lon, lat)
                    row, col = dataset.index(x, y)
                    band = 2 if key.startswith("ATB") else 1
                    values[key] = dataset.read(band, window=((row, row + 1), (col, col + 1)))[0, 0]
            count += 1
        return count
    for url_query in queries:
        query, _ = parse_series(dict(parse_qsl(url_query)))
        out.append(timed_run(lambda: one_by_one(query)))
print(json.dumps({"runs": out, "end_call": lines()}))
"""


def measure(
    mode: str,
    env: dict[str, str],
    queries: tuple[str, str],
    repeats: int,
    log: Path,
    server_pid: int,
) -> dict[str, Any]:
    """`repeats` requests at the point (the first cold), then one at another point: wall time,
    CPU time of the process asking (HTTP front and function) and of the S3 server answering."""
    command = [sys.executable, "-c", MEASURE, mode, queries[0], str(repeats), str(log),
               queries[1], str(server_pid)]  # fmt: skip
    result = subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, check=True
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    runs = data["runs"]
    bounds = [r["first_call"] for r in runs] + [data["end_call"]]
    for run, (a, b) in zip(runs, zip(bounds, bounds[1:], strict=False), strict=False):
        kinds = Counter(f"{c['service']} {c['method']}" for c in calls[a:b])
        run["requests"] = dict(kinds)
        del run["first_call"]
    return {"cold": runs[0], "warm": runs[1:-1], "warm_other_point": runs[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentinel2", type=int, default=70)
    parser.add_argument("--landsat8", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="requests per run (1 cold)")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "sansnuages-bench-ts"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "shared"))
    from pyproj import Transformer

    from sansnuages.formats import grid
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS, MotoServer

    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    log = args.cache / "calls.jsonl"
    args.cache.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    server = MotoServer.start(call_log=log)
    try:
        started = time.perf_counter()
        env = prepare(server.url, f"bench-{os.getpid()}", args.sentinel2, args.landsat8, args.cache)
        tile = grid.tile(TILE)
        to_lonlat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform
        queries = []
        for dx in (0.0, OTHER_POINT_DX):
            lon, lat = to_lonlat(tile.ulx + POINT_M[0] + dx, tile.uly - POINT_M[1])
            queries.append(f"lon={lon:.6f}&lat={lat:.6f}&datetime=2018-01-01/2018-12-31")
        pair = (queries[0], queries[1])
        prepared = time.perf_counter() - started
        report = {
            "products": args.sentinel2 + args.landsat8,
            "prepare_seconds": round(prepared, 1),
            "load_average": os.getloadavg(),
            "sansnuages": measure("api", env, pair, args.repeats, log, server.process.pid),
            "rasterio_one_by_one": measure(
                "serial", env, pair, min(args.repeats, 2), log, server.process.pid
            ),
        }
    finally:
        server.stop()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name in ("sansnuages", "rasterio_one_by_one"):
        runs = report[name]
        warm = [r["seconds"] for r in runs["warm"]]
        other = runs["warm_other_point"]
        if "handler_seconds" in other:
            inside = [r["handler_seconds"] for r in [runs["cold"], *runs["warm"], other]]
            print(
                f"{name} handler time: cold {inside[0]:.2f} s, warm "
                f"{min(inside[1:-1]):.2f}-{max(inside[1:-1]):.2f} s, another point {inside[-1]:.2f} s"
            )
        print(f"{name}: cold {runs['cold']['seconds']:.2f} s, {runs['cold']['requests']}; "
              f"warm {min(warm):.2f}-{max(warm):.2f} s, {runs['warm'][-1]['requests']}; "
              f"warm at another point {other['seconds']:.2f} s, {other['requests']}; "
              f"{runs['cold']['observations']} observations")  # fmt: skip
        cpu = [
            f"{label} {r['cpu_seconds']:.2f} + {r['server_cpu_seconds']:.2f} s"
            for label, r in (("cold", runs["cold"]), ("warm", runs["warm"][-1]),
                             ("another point", other))
        ]  # fmt: skip
        print(f"{name} CPU (asking process + S3 server): {', '.join(cpu)}")
    print(f"load average at the start: {', '.join(f'{x:.1f}' for x in report['load_average'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
