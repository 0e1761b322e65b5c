"""Benchmark of ingest: one simulated Sentinel-2 L2A product, sansnuages vs GDAL alone.

Both runs read the same zip from the same S3 endpoint (a moto server process), convert the
same rasters with the same COG options and the same number of threads, and upload the COGs;
GDAL alone reads through `/vsizip//vsis3/` and does nothing else (no checks, footprint,
checksums, Item, index). sansnuages takes its own route: an upload of at most
`DOWNLOAD_LIMIT_BYTES` is downloaded whole and read locally, a larger one is streamed. When the
product is small enough to be downloaded, the streamed route is measured too
(`sansnuages-streamed`), and `--both-routes` measures the downloaded route above the bound as
well (`sansnuages-downloaded`): the cross-over that chose the bound.

Each run is a fresh process, measured for wall time, CPU time and peak resident memory
(`ru_maxrss` of the process and its children, GDAL's memory included), and for the S3
server's CPU time meanwhile (the server shares the machine's cores: requests saved are CPU
saved). Every run starts from compiled bytecode, as an installed package does: the runs write
it to a cache in the bench's folder (`PYTHONPYCACHEPREFIX`, whatever `PYTHONDONTWRITEBYTECODE`
says), and a product of at most `WARM_UP_BYTES` is first ingested once by each mode, untimed.
Without that, a host that writes no bytecode compiles every module in every run (1.4 s of CPU
a process), the same for both modes and more than a small product's whole ingest.

    .venv/bin/python bench/ingest.py                       # full size: 10980 px at 10 m
    .venv/bin/python bench/ingest.py --resolution 1098 --json   # 100 px, seconds (the test)
    .venv/bin/python bench/ingest.py --resolution 610      # 180 px, the demo's products
    .venv/bin/python bench/ingest.py --resolution 30 --both-routes  # 3660 px, both routes
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
WARM_UP_BYTES = 16 * 1024**2
"""Products up to this size are ingested once, untimed, by each mode before being timed: the
bytecode then compiled is a second of a run of seconds, and nothing in a run of minutes."""


def _settings_env(endpoint: str, stack_name: str) -> dict[str, str]:
    from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS
    from sansnuages.tools.local.provision import local_environment, provision
    from sansnuages.tools.local.template import load_stack

    stack = load_stack(ROOT / "template.yaml", stack_name=stack_name, endpoint_url=endpoint)
    provision(stack, endpoint_url=endpoint)
    return {**LOCAL_CREDENTIALS, **local_environment(stack, "IngestFunction", endpoint)}


def run_sansnuages(key: str, route: str = "auto") -> None:
    """The ingest function's core, as a worker runs it; `route` forces one ("streamed":
    nothing downloaded; "downloaded": the whole upload, whatever its size)."""
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.settings import Settings
    from sansnuages.stages.ingest import Ingestor, Outcome

    settings = Settings.from_env()
    use_gdal(settings)
    ingestor = Ingestor.from_settings(settings)
    if route == "streamed":
        ingestor.download_limit = 0
    elif route == "downloaded":
        ingestor.download_limit = max(ingestor.download_limit, ingestor.bucket.size(key))
    result = ingestor.ingest(key)
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


def server_cpu_s(pid: int) -> float | None:
    """CPU time of the S3 server process so far (Linux's /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, key: str, env: dict[str, str], server_pid: int) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of one fresh process (a wrapper reads its children's
    rusage), and the S3 server's CPU time meanwhile."""
    wrapper = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.monotonic()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall_s': time.monotonic() - t, 'peak_rss_mb': r.ru_maxrss / 1024,"
        " 'cpu_s': r.ru_utime + r.ru_stime}))\n"
    )
    command = [sys.executable, "-c", wrapper, sys.executable, __file__, "--run", mode, key]
    before = server_cpu_s(server_pid)
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    after = server_cpu_s(server_pid)
    figures["server_cpu_s"] = None if before is None or after is None else after - before
    return figures


def modes_for(size: int, both_routes: bool) -> list[str]:
    """GDAL alone, sansnuages by its own route, and the other route where it applies."""
    from sansnuages.stages.ingest import DOWNLOAD_LIMIT_BYTES

    if size <= DOWNLOAD_LIMIT_BYTES:
        return ["gdal", "sansnuages", "sansnuages-streamed"]
    return ["gdal", "sansnuages", *(["sansnuages-downloaded"] if both_routes else [])]


def bench(
    resolution: float, workdir: Path, product: Path | None = None, both_routes: bool = False
) -> dict[str, Any]:
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
        settings_env = _settings_env(server.url, f"bench-{os.getpid()}")
        bucket = DataBucket(Settings.from_env(settings_env))
        env = {**os.environ, **settings_env, "PYTHONPYCACHEPREFIX": str(workdir / "bytecode")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        figures: dict[str, Any] = {
            "load_average": os.getloadavg()[0],
            "resolution_m": resolution,
            "zip_mb": product.stat().st_size / 2**20,
            "simulate_s": simulated_s,
        }
        figures["modes"] = modes = modes_for(product.stat().st_size, both_routes)
        warm = ["warm"] if product.stat().st_size <= WARM_UP_BYTES else []
        for run, mode in [(run, mode) for run in [*warm, "timed"] for mode in modes]:
            key = f"incoming/{run}-{mode}/{product.name}"
            bucket.client.upload_file(str(product), bucket.name, key)
            # each route publishes the same Item: the one before is removed, not replaced
            for old in bucket.list_keys("l2a/"):
                bucket.delete(old)
            figures[mode] = measure(mode, key, env, server.process.pid)
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
    parser.add_argument(
        "--both-routes",
        action="store_true",
        help="above the download bound, also measure the downloaded route",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--run", nargs=2, metavar=("MODE", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        mode, key = args.run
        if mode == "gdal":
            run_gdal(key)
        else:
            run_sansnuages(key, mode.removeprefix("sansnuages").lstrip("-") or "auto")
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        figures = bench(args.resolution, Path(folder), args.product, args.both_routes)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"product: {figures['zip_mb']:.2f} MB zip at {args.resolution:g} m (R1)")
    print(f"{'':22} {'wall s':>8} {'cpu s':>8} {'server cpu s':>13} {'peak RSS MB':>12}")
    for mode in figures["modes"]:
        run = figures[mode]
        server = "" if run["server_cpu_s"] is None else f"{run['server_cpu_s']:.2f}"
        print(
            f"{mode:22} {run['wall_s']:8.2f} {run['cpu_s']:8.2f} {server:>13}"
            f" {run['peak_rss_mb']:12.0f}"
        )
    print(
        f"ratio (sansnuages/gdal) {figures['time_ratio']:7.2f} {'':22} {figures['memory_ratio']:12.2f}"
    )
    print(f"load average {figures['load_average']:.1f} -> {figures['load_average_end']:.1f}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
