"""Benchmark of ingest: one simulated Sentinel-2 L2A product, sansnuages vs GDAL alone.

Both runs read the same zip from the same S3 endpoint (a moto server process) through
`/vsizip//vsis3/`, convert the same rasters with the same COG options and the same number of
threads, and upload the COGs; GDAL alone does nothing else (no checks, footprint, checksums,
Item, index). Each run is a fresh process, measured for wall time and peak resident memory
(`ru_maxrss` of the process and its children, GDAL's memory included).

    .venv/bin/python bench/ingest.py                       # full size: 10980 px at 10 m
    .venv/bin/python bench/ingest.py --resolution 1098 --json   # 100 px, seconds (the test)
    .venv/bin/python bench/ingest.py --product /tmp/p.zip  # keep (or reuse) the product

The S3 endpoint is the embedded local AWS, whose moto server reads only the bytes of each
ranged GET (see `sansnuages.tools.local.moto_process`): moto alone reads the whole 1.7 GB object
for every range, which made the server, not the conversion, the measure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEN = datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=UTC)


def _settings_env(endpoint: str, stack_name: str) -> dict[str, str]:
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS
    from sansnuages.tools.local.provision import local_environment, provision
    from sansnuages.tools.local.template import load_stack

    stack = load_stack(ROOT / "template.yaml", stack_name=stack_name, endpoint_url=endpoint)
    provision(stack, endpoint_url=endpoint)
    return {**LOCAL_CREDENTIALS, **local_environment(stack, "IngestFunction", endpoint)}


def run_sansnuages(key: str) -> None:
    """The ingest function's core, as a worker runs it."""
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.settings import Settings
    from sansnuages.stages.ingest import Ingestor, Outcome

    settings = Settings.from_env()
    use_gdal(settings)
    result = Ingestor.from_settings(settings).ingest(key)
    if result.outcome != Outcome.INGESTED:
        raise SystemExit(f"ingest failed: {result}")


def run_gdal(key: str) -> None:
    """GDAL alone: every raster of the zip to a COG (same options), uploaded."""
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    import rasterio.shutil
    import s3fs

    from sansnuages.raster import cog
    from sansnuages.settings import Settings
    from sansnuages.stages.ingest import CONVERSION_THREADS
    from sansnuages.stores import aws

    settings = Settings.from_env()
    fs = s3fs.S3FileSystem(endpoint_url=settings.endpoint_url)
    with fs.open(f"{settings.data_bucket}/{key}", "rb") as handle:
        members = [m for m in zipfile.ZipFile(handle).namelist() if m.endswith(".tif")]
    s3 = aws.client("s3", settings)

    def convert(member: str) -> None:
        src = f"/vsizip//vsis3/{settings.data_bucket}/{key}/{member}"
        with rasterio.Env(**settings.gdal_options()), tempfile.TemporaryDirectory() as scratch:
            with rasterio.open(src) as dataset:
                local = os.path.join(scratch, "cog.tif")
                options = cog.cog_options(dataset.dtypes[0])
                rasterio.shutil.copy(dataset, local, driver="COG", **options)
            s3.upload_file(local, settings.data_bucket, f"gdal/{member}")

    with ThreadPoolExecutor(CONVERSION_THREADS) as pool:
        list(pool.map(convert, members))


def measure(mode: str, key: str, env: dict[str, str]) -> dict[str, float]:
    """Wall time and peak RSS of one fresh process (a wrapper reads its children's rusage)."""
    wrapper = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.monotonic()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall_s': time.monotonic() - t, 'peak_rss_mb': r.ru_maxrss / 1024,"
        " 'cpu_s': r.ru_utime + r.ru_stime}))\n"
    )
    command = [sys.executable, "-c", wrapper, sys.executable, __file__, "--run", mode, key]
    output = subprocess.run(
        command, env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def bench(resolution: float, workdir: Path, product: Path | None = None) -> dict[str, Any]:
    from sansnuages.settings import Settings
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS, MotoServer
    from sansnuages.tools.simulate import simulate_product

    started = time.monotonic()
    if product is None or not product.exists():
        made = simulate_product("31UFS", WHEN, "SENTINEL2B", workdir, resolution, seed=5)
        product = made.replace(product) if product is not None else made
    simulated_s = time.monotonic() - started
    os.environ.update(LOCAL_CREDENTIALS)
    server = MotoServer.start()
    try:
        env = _settings_env(server.url, f"bench-{os.getpid()}")
        bucket = DataBucket(Settings.from_env(env))
        figures: dict[str, Any] = {
            "load_average": os.getloadavg()[0],
            "resolution_m": resolution,
            "zip_mb": product.stat().st_size / 2**20,
            "simulate_s": simulated_s,
        }
        for mode in ("gdal", "sansnuages"):
            key = f"incoming/{mode}/{product.name}"
            bucket.client.upload_file(str(product), bucket.name, key)
            figures[mode] = measure(mode, key, env)
        figures["load_average_end"] = os.getloadavg()[0]
        figures["time_ratio"] = figures["sansnuages"]["wall_s"] / figures["gdal"]["wall_s"]
        figures["memory_ratio"] = (
            figures["sansnuages"]["peak_rss_mb"] / figures["gdal"]["peak_rss_mb"]
        )
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=float, default=10.0, help="R1 pixel size (m)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the product is written")
    parser.add_argument(
        "--product", type=Path, default=None, help="product zip to reuse, or where to keep it"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--run", nargs=2, metavar=("MODE", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        mode, key = args.run
        (run_gdal if mode == "gdal" else run_sansnuages)(key)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        figures = bench(args.resolution, Path(folder), args.product)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"product: {figures['zip_mb']:.0f} MB zip at {args.resolution:g} m (R1)")
    print(f"{'':12} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}")
    for mode in ("gdal", "sansnuages"):
        run = figures[mode]
        print(f"{mode:12} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} {run['peak_rss_mb']:12.0f}")
    print(f"ratio        {figures['time_ratio']:8.2f} {'':8} {figures['memory_ratio']:12.2f}")
    print(f"load average {figures['load_average']:.1f} -> {figures['load_average_end']:.1f}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
