"""Performance of one tile's synthesis from COGs on the local S3 endpoint (a moto process).

Inputs: `--s2` Sentinel-2 dates (4 bands at 10 m, 6 at 20 m, CLM / EDG / ATB per group) and
`--l8` Landsat-8 dates (6 bands at 30 m and XS masks), COGs written with the ingest's codec.
Three distinct dates are simulated (fields with noise, blob-shaped clouds with ragged edges
and their shadows) and uploaded; the other dates are server-side copies of them under their
own keys, which makes a full tile's inputs in minutes rather than the better part of an hour
(reading does not care that two dates hold the same pixels; GDAL's cache does not either,
since the keys differ). Each route runs in a fresh process; its wall time, CPU time and peak
resident memory (VmHWM), the load average, and the CPU time the local S3 server spent serving
it (it shares the cores here; on AWS it costs the function nothing) are reported side by side:

- `synthesis`: `synthesize_group` for R1 and R2, outputs written as COGs to the local S3;
- `floor`: the I/O floor: read every input file whole, block by block in one pass, and write
  outputs of the same number, size and codec (the first input copied), no computation;
- `floor_windows`: the same floor read as the synthesis reads: window by window of the
  output grid, every observation's rasters of a group over each window, in as many threads
  as the synthesis reads with; outputs written window by window. The gap between the two
  floors is the window access pattern's, the rest of the synthesis's is its computation;
- `xarray`: the route a user takes without this project: odc-stac lazy load of the same COGs
  (Landsat-8 resampled to 10 / 20 m), cloud mask applied, dask median over time, COGs written
  with odc-geo.

    .venv/bin/python bench/composite_perf.py                       # full tile: long
    .venv/bin/python bench/composite_perf.py --size 2748
    .venv/bin/python bench/composite_perf.py --size 546 --routes synthesis,floor   # seconds
    .venv/bin/python bench/composite_perf.py --size 2748 --routes synthesis \
        --threads 1 --cachemax 64 --block 1024                     # the settings' effects

The time on Lambda is estimated from the template's memory for the composite function (CPU
in proportion, one vCPU at 1,769 MB): the synthesis process's CPU time over those vCPUs (S3
serves the reads there; here the local S3 server's CPU is not the synthesis'), and, as a
ceiling, the wall time here scaled by the cores here over those vCPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import rasterio
from affine import Affine

from sansnuages.formats.bands import LANDSAT8_TO_SENTINEL2, SENTINEL2_GROUPS
from sansnuages.processing.synthesis import SYNTHESIS_GDAL_OPTIONS
from sansnuages.raster import cog
from sansnuages.settings import Settings
from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS, MotoServer

TILE_M = 109800.0
ULX, ULY, EPSG = 600000.0, 5700000.0, 32631
CENTRE = date(2018, 7, 15)
BUCKET = "perf"
VARIANTS = 3
"""Distinct input contents, cycled over the dates (generation costs time, reading does not
care that two dates hold the same pixels)."""
LANDSAT_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7")
TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
LAMBDA_MB_PER_VCPU = 1769
CLOUD_COVER = 0.3


@dataclass(frozen=True)
class Spec:
    endpoint: str
    size: int
    s2: int
    l8: int
    block: int
    threads: int = 4
    cachemax: int | None = None
    gdal_threads: str | None = None
    gdal_extra: tuple[tuple[str, str], ...] = ()

    def settings(self) -> Settings:
        return Settings(data_bucket=BUCKET, region="us-east-1", endpoint_url=self.endpoint)

    def gdal(self) -> dict[str, str | int]:
        """The same GDAL configuration for every route (the composite function's)."""
        options: dict[str, str | int] = {**self.settings().gdal_options(), **SYNTHESIS_GDAL_OPTIONS}
        if self.cachemax is not None:
            options["GDAL_CACHEMAX"] = self.cachemax * 2**20  # rasterio: bytes
        if self.gdal_threads is not None:
            options["GDAL_NUM_THREADS"] = self.gdal_threads
        options.update(dict(self.gdal_extra))
        return options


# --- inputs ------------------------------------------------------------------------------------


def _field(size: int, rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    """Fields of ~600 m with noise: compresses like real reflectance (about 2 to 3 times)."""
    cells = max(1, size // 60)
    coarse = rng.integers(low, high, (cells, cells)).astype(np.int16)
    reps = -(-size // cells)
    data = np.repeat(np.repeat(coarse, reps, axis=0), reps, axis=1)[:size, :size]
    return (data + rng.integers(-40, 40, (size, size), dtype=np.int16)).astype(np.int16)


def _smooth(size: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1): coarse noise, bilinear-upsampled (float32)."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    pos = np.linspace(0, cells, size, endpoint=False, dtype=np.float32)
    low = np.minimum(pos.astype(np.intp), cells - 1)
    frac = pos - low
    rows = coarse[low] * (1 - frac)[:, None] + coarse[low + 1] * frac[:, None]
    return rows[:, low] * (1 - frac)[None, :] + rows[:, low + 1] * frac[None, :]


def _clouds(size: int, rng: np.random.Generator, cover: float) -> np.ndarray:
    """CLM: blob-shaped clouds of a few km with ragged edges (bits 0, 1, 3), their shadows
    (bits 0, 5) offset by about 1.5 km, and thin clouds (bit 4 only, clear) here and there."""
    field = _smooth(size, rng, max(2, size // 400)) + 0.35 * _smooth(size, rng, max(4, size // 40))
    field += 0.1 * rng.random((size, size), dtype=np.float32)
    sample = field[:: max(1, size // 500), :: max(1, size // 500)]
    cloud = field > np.quantile(sample, 1 - cover)
    shift = max(1, size // 70)
    shadow = np.zeros_like(cloud)
    shadow[shift:, shift:] = cloud[:-shift, :-shift]
    shadow &= ~cloud
    thin = (field > np.quantile(sample, 1 - cover * 1.3)) & ~cloud & ~shadow
    clm = np.where(cloud, 1 | 2 | 8, 0) | np.where(shadow, 1 | 32, 0) | np.where(thin, 16, 0)
    return clm.astype(np.uint8)


def _grid(pixels: int) -> Affine:
    pixel = TILE_M / pixels
    return Affine(pixel, 0, ULX, 0, -pixel, ULY)


def _write(folder: Path, name: str, data: np.ndarray, nodata: float | None) -> Path:
    path = folder / f"{name}.tif"
    cog.write_cog(
        str(path), data, crs=f"EPSG:{EPSG}", transform=_grid(data.shape[-1]), nodata=nodata
    )
    return path


def make_variant(folder: Path, variant: int, size: int, sensor: str) -> dict[str, Path]:
    """One date's files of `sensor` (S2 or L8); keys like `S2/FRE_B2`, `L8/CLM_XS`."""
    rng = np.random.default_rng(variant + (100 if sensor == "L8" else 0))
    files: dict[str, Path] = {}
    if sensor == "L8":
        return _landsat_variant(folder, variant, size, rng)
    for group, bands in SENTINEL2_GROUPS.items():
        n = size if group == "R1" else size // 2
        for band in bands:
            files[f"S2/FRE_{band}"] = _write(
                folder, f"v{variant}_S2_{band}", _field(n, rng, 200, 3500), -10000
            )
        files[f"S2/CLM_{group}"] = _write(
            folder, f"v{variant}_S2_CLM_{group}", _clouds(n, rng, CLOUD_COVER), None
        )
        files[f"S2/EDG_{group}"] = _write(
            folder, f"v{variant}_S2_EDG_{group}", np.zeros((n, n), np.uint8), None
        )
        atb = np.stack(
            [np.full((n, n), 40, np.uint8), rng.integers(10, 80, (n, n), dtype=np.uint8)]
        )
        files[f"S2/ATB_{group}"] = _write(folder, f"v{variant}_S2_ATB_{group}", atb, 0)
    return files


def _landsat_variant(
    folder: Path, variant: int, size: int, rng: np.random.Generator
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    n = size // 3
    for band in LANDSAT_BANDS:
        files[f"L8/FRE_{band}"] = _write(
            folder, f"v{variant}_L8_{band}", _field(n, rng, 200, 3500), -10000
        )
    files["L8/CLM_XS"] = _write(folder, f"v{variant}_L8_CLM", _clouds(n, rng, CLOUD_COVER), None)
    files["L8/EDG_XS"] = _write(folder, f"v{variant}_L8_EDG", np.zeros((n, n), np.uint8), None)
    atb = np.stack([np.full((n, n), 40, np.uint8), rng.integers(10, 80, (n, n), dtype=np.uint8)])
    files["L8/ATB_XS"] = _write(folder, f"v{variant}_L8_ATB", atb, 0)
    return files


def dates(spec: Spec) -> list[tuple[str, datetime, int]]:
    """(sensor, acquisition, variant) of every input date, spread over the window."""
    out = []
    for i in range(spec.s2):
        day = CENTRE + timedelta(days=round(-22 + 44 * i / max(1, spec.s2 - 1)))
        out.append(("S2", datetime.combine(day, datetime.min.time(), UTC), i % VARIANTS))
    for i in range(spec.l8):
        day = CENTRE + timedelta(days=-16 + 16 * i)
        out.append(("L8", datetime.combine(day, datetime.min.time(), UTC), i % VARIANTS))
    return out


def key_of(sensor: str, index: int, name: str) -> str:
    return f"inputs/{sensor}{index:02d}/{name}.tif"


def upload(spec: Spec, folder: Path) -> float:
    """Make and upload the inputs; a date whose variant is already uploaded is a server-side
    copy of it. Returns the MB of COGs the bucket holds."""
    s3 = boto3.client("s3", endpoint_url=spec.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    uploaded: dict[tuple[str, int, str], str] = {}
    total = 0
    for index, (sensor, _, variant) in enumerate(dates(spec)):
        if not any(key[:2] == (sensor, variant) for key in uploaded):
            files = make_variant(folder, variant, spec.size, sensor)
            for name, path in files.items():
                key = key_of(sensor, index, name.split("/", 1)[1])
                s3.upload_file(str(path), BUCKET, key)
                uploaded[(sensor, variant, name)] = key
                path.unlink()
        for (sensor_, variant_, name), source in list(uploaded.items()):
            if (sensor_, variant_) != (sensor, variant):
                continue
            key = key_of(sensor, index, name.split("/", 1)[1])
            if key != source:
                s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": source})
            total += s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    return total / 2**20


# --- the routes (each in its own process) ------------------------------------------------------


def _vsi(key: str) -> str:
    return f"/vsis3/{BUCKET}/{key}"


def observations(spec: Spec) -> list[Any]:
    from sansnuages.processing.synthesis import Observation, RasterRef

    result = []
    for index, (sensor, when, _) in enumerate(dates(spec)):
        landsat = sensor == "L8"
        refl, cloud, edge, aot = {}, {}, {}, {}
        for group, bands in SENTINEL2_GROUPS.items():
            mask_group = "XS" if landsat else group
            for band in bands:
                source = LANDSAT8_TO_SENTINEL2.get(band) if landsat else band
                if source is None:
                    continue
                refl[band] = RasterRef(_vsi(key_of(sensor, index, f"FRE_{source}")), scale=1e-4)
                cloud[band] = RasterRef(_vsi(key_of(sensor, index, f"CLM_{mask_group}")))
                edge[band] = RasterRef(_vsi(key_of(sensor, index, f"EDG_{mask_group}")))
                aot[band] = RasterRef(_vsi(key_of(sensor, index, f"ATB_{mask_group}")), 2, 1 / 200)
        weight = 0.33 if landsat else 1.0
        result.append(Observation(f"{sensor}{index}", sensor, when, weight, refl, cloud, edge, aot))
    return result


def output_grid(spec: Spec, group: str) -> Any:
    from sansnuages.processing.synthesis import OutputGrid

    n = spec.size if group == "R1" else spec.size // 2
    return OutputGrid(f"EPSG:{EPSG}", _grid(n), n, n)


def outputs(group: str, route: str) -> Any:
    from sansnuages.processing.synthesis import GroupOutputs

    prefix = f"outputs/{route}"
    return GroupOutputs(
        frc={b: _vsi(f"{prefix}/FRC_{b}.tif") for b in SENTINEL2_GROUPS[group]},
        flags=_vsi(f"{prefix}/FLG_{group}.tif"),
        weights=_vsi(f"{prefix}/WGT_{group}.tif"),
        dates=_vsi(f"{prefix}/DTS_{group}.tif"),
    )


def route_synthesis(spec: Spec) -> None:
    from sansnuages.processing.synthesis import synthesize_group

    obs = observations(spec)
    with rasterio.Env(**spec.gdal()):
        for group, bands in SENTINEL2_GROUPS.items():
            synthesize_group(
                obs,
                bands,
                output_grid(spec, group),
                CENTRE,
                23,
                outputs(group, "synthesis"),
                block_size=spec.block,
                read_threads=spec.threads,
            )


def route_floor(spec: Spec) -> None:
    """Read every input file in blocks, write as many outputs of the same size and codec."""
    s3 = boto3.client("s3", endpoint_url=spec.endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="inputs/")["Contents"]]
    with rasterio.Env(**spec.gdal()):
        first: dict[int, str] = {}
        for key in keys:
            with rasterio.open(_vsi(key)) as src:
                first.setdefault(src.width, _vsi(key))
                for _, window in src.block_windows(1):
                    src.read(window=window)
        for group, bands in SENTINEL2_GROUPS.items():
            grid = output_grid(spec, group)
            paths = outputs(group, "floor")
            layers = [(paths.frc[b], "int16") for b in bands]
            layers += [(paths.flags, "uint8"), (paths.weights, "int16"), (paths.dates, "int16")]
            with rasterio.open(first[grid.width]) as source:
                for path, dtype in layers:
                    with cog.cog_writer(
                        path, width=grid.width, height=grid.height, count=1, dtype=dtype,
                        crs=grid.crs, transform=grid.transform, nodata=None,
                    ) as dst:  # fmt: skip
                        for _, window in dst.block_windows(1):
                            dst.write(source.read(1, window=window).astype(dtype), 1, window=window)


def route_floor_windows(spec: Spec) -> None:
    """The floor read as the synthesis reads: window by window of the output grid (the
    synthesis's windows), every observation's rasters of the group over each window (its
    reflectances, masks and AOT band, on their own grids), observations read by
    `spec.threads` threads at once; the outputs written window by window through the same
    COG writer, their values those of the first observation. No computation."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from rasterio.windows import Window

    obs = observations(spec)
    with rasterio.Env(**spec.gdal()), ThreadPoolExecutor(spec.threads) as pool:
        for group, bands in SENTINEL2_GROUPS.items():
            grid = output_grid(spec, group)
            with ExitStack() as stack:
                rasters = [
                    {
                        (ref.path, ref.band): stack.enter_context(rasterio.open(ref.path))
                        for refs in (o.reflectance, o.cloud, o.edge, o.aot)
                        for band, ref in refs.items()
                        if band in bands
                    }
                    for o in obs
                ]

                paths = outputs(group, "floor_windows")
                layers = [(paths.frc[b], "int16") for b in bands]
                layers += [(paths.flags, "uint8"), (paths.weights, "int16"), (paths.dates, "int16")]
                writers = [
                    stack.enter_context(
                        cog.cog_writer(
                            path,
                            width=grid.width,
                            height=grid.height,
                            count=1,
                            dtype=dtype,
                            crs=grid.crs,
                            transform=grid.transform,
                            nodata=None,
                        )  # fmt: skip
                    )
                    for path, dtype in layers
                ]
                for row in range(0, grid.height, spec.block):
                    for col in range(0, grid.width, spec.block):
                        window = Window(
                            col, row, min(spec.block, grid.width - col),
                            min(spec.block, grid.height - row),
                        )  # fmt: skip
                        # every read finished before the next window's (one thread a dataset)
                        reads = pool.map(_read_over, rasters, repeat(window), repeat(grid.width))
                        first = list(reads)[0][0]
                        for writer, (_, dtype) in zip(writers, layers, strict=True):
                            values = first[: window.height, : window.width].astype(dtype)
                            writer.write(values, 1, window=window)


def _read_over(sources: dict[tuple[str, int], Any], window: Any, width: int) -> list[np.ndarray]:
    """Each raster's band over `window` of a grid `width` pixels wide, on its own grid."""
    from rasterio.windows import Window

    out = []
    for (_, band), src in sources.items():
        scale = src.width / width
        part = Window(
            window.col_off * scale, window.row_off * scale, window.width * scale,
            window.height * scale,
        ).round_offsets().round_lengths()  # fmt: skip
        out.append(src.read(band, window=part.intersection(Window(0, 0, src.width, src.height))))
    return out


def route_xarray(spec: Spec) -> None:
    """odc-stac + dask median of the clear observations, then COGs through odc-geo."""
    import dask
    import odc.stac
    import pystac

    options = spec.gdal()
    odc.stac.configure_rio(cloud_defaults=False, **options)
    from odc.geo.geobox import GeoBox
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    footprint = transform_geom(
        f"EPSG:{EPSG}", "EPSG:4326", mapping(box(ULX, ULY - TILE_M, ULX + TILE_M, ULY))
    )
    items = []
    for index, (sensor, when, _) in enumerate(dates(spec)):
        item = pystac.Item(f"{sensor}{index}", footprint, list(shape(footprint).bounds), when, {})
        for group, bands in SENTINEL2_GROUPS.items():
            mask_group = "XS" if sensor == "L8" else group
            n = spec.size // {"R1": 1, "R2": 2, "XS": 3}[mask_group]
            for band in (*bands, f"CLM_{group}"):
                source = band if sensor == "S2" else LANDSAT8_TO_SENTINEL2.get(band, None)
                if band.startswith("CLM"):
                    name = f"CLM_{mask_group}"
                elif source is None:
                    continue
                else:
                    name = f"FRE_{source}"
                asset = pystac.Asset(f"s3://{BUCKET}/{key_of(sensor, index, name)}")
                asset.extra_fields.update(
                    {"proj:epsg": EPSG, "proj:shape": [n, n], "proj:transform": list(_grid(n))[:6]}
                )
                item.add_asset(band, asset)
        items.append(item)
    dask.config.set(scheduler="threads", num_workers=os.cpu_count())
    for group, bands in SENTINEL2_GROUPS.items():
        grid = output_grid(spec, group)
        data = odc.stac.load(
            items,
            bands=[*bands, f"CLM_{group}"],
            geobox=GeoBox((grid.height, grid.width), grid.transform, grid.crs),
            chunks={"x": 2048, "y": 2048},
            resampling="bilinear",
            groupby="id",
            patch_url=lambda url: url.replace("s3://", "/vsis3/", 1),
        )
        clear = (data[f"CLM_{group}"].fillna(1).astype("uint8") & 1) == 0
        for band in bands:
            values = data[band].where(clear & (data[band] != -10000))
            median = values.median("time", skipna=True).fillna(-10000).astype("int16")
            path = f"/tmp/perf-xarray-{os.getpid()}-{band}.tif"
            median.odc.write_cog(
                path, overwrite=True, nodata=-10000, compress="DEFLATE", predictor=2
            )
            boto3.client("s3", endpoint_url=spec.endpoint, region_name="us-east-1").upload_file(
                path, BUCKET, f"outputs/xarray/FRC_{band}.tif"
            )
            os.remove(path)


ROUTES = {
    "synthesis": route_synthesis,
    "floor": route_floor,
    "floor_windows": route_floor_windows,
    "xarray": route_xarray,
}


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    """User + system seconds of the route's process (not the local S3 server's)."""
    rss_mb: float
    code: int
    load: float
    """One-minute load average of the machine at the end of the run."""
    s3_cpu: float = 0.0
    """CPU seconds the local S3 server spent meanwhile (serving the route)."""

    @property
    def total_cpu(self) -> float:
        return self.cpu + self.s3_cpu


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_route(route: str, spec: Spec) -> Run:
    """A fresh process running `route`: its wall and CPU time, peak RSS and exit status."""
    env = {**os.environ, **LOCAL_CREDENTIALS}
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        command = [sys.executable, __file__, "--child", route, "--spec", json.dumps(asdict(spec))]
        started = time.monotonic()
        process = subprocess.Popen([*command, "--peak-file", peak.name], env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        rss_mb = float(peak.read() or "nan")
    return Run(
        time.monotonic() - started,
        usage.ru_utime + usage.ru_stime,
        rss_mb,
        process.returncode,
        os.getloadavg()[0],
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), GDAL's included. Not `ru_maxrss`: Linux
    carries the parent's size at the fork into the child's `ru_maxrss`, and the parent here
    holds the simulated inputs (4.2 GB at full size) when it starts a route."""
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else float("nan")


def composite_memory_mb(template: Path = TEMPLATE) -> int:
    """MemorySize of CompositeFunction in template.yaml."""
    text = template.read_text()
    found = re.search(r"\n  CompositeFunction:\n(?:    .*\n|\s*\n)*?      MemorySize: (\d+)", text)
    if found is None:
        raise ValueError(f"no MemorySize for CompositeFunction in {template}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> dict[str, Run]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10980, help="R1 pixels per side (10980: 10 m)")
    parser.add_argument("--s2", type=int, default=12)
    parser.add_argument("--l8", type=int, default=3)
    parser.add_argument("--block", type=int, default=512, help="synthesis window size")
    parser.add_argument("--threads", type=int, default=4, help="synthesis reading threads")
    parser.add_argument("--cachemax", type=int, default=None, help="GDAL_CACHEMAX (MB)")
    parser.add_argument("--gdal-threads", default=None, help="GDAL_NUM_THREADS (decoding)")
    parser.add_argument(
        "--gdal", action="append", default=[], metavar="KEY=VALUE",
        help="another GDAL option for every route (repeatable)",
    )  # fmt: skip
    parser.add_argument("--routes", default="floor,synthesis,xarray")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peak-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        ROUTES[args.child](Spec(**json.loads(args.spec)))
        Path(args.peak_file).write_text(f"{peak_rss_mb():.1f}")
        return {}
    if args.size % 6:
        parser.error("--size must be a multiple of 6 (20 m and 30 m grids divide it)")
    os.environ.update(LOCAL_CREDENTIALS)
    server = MotoServer.start()
    results: dict[str, Run] = {}
    try:
        spec = Spec(
            server.url,
            args.size,
            args.s2,
            args.l8,
            args.block,
            args.threads,
            args.cachemax,
            args.gdal_threads,
            tuple(tuple(option.split("=", 1)) for option in args.gdal),  # type: ignore[misc]
        )
        with tempfile.TemporaryDirectory() as folder:
            started = time.monotonic()
            size_mb = upload(spec, Path(folder))
            print(
                f"inputs: {args.s2} Sentinel-2 + {args.l8} Landsat-8 dates at {args.size} px, "
                f"{size_mb:.0f} MB of COGs ({time.monotonic() - started:.0f} s to make)",
                flush=True,
            )
        for route in args.routes.split(","):
            load, served = os.getloadavg()[0], process_cpu(server.process.pid)
            run = run_route(route, spec)
            results[route] = run = replace(run, s3_cpu=process_cpu(server.process.pid) - served)
            print(
                f"{route:<13} {run.wall:8.1f} s  CPU {run.cpu:7.1f} s  peak RSS {run.rss_mb:7.0f} MB"
                f"  exit {run.code}  load {load:.1f} -> {run.load:.1f}"
                f"  (local S3 server CPU {run.s3_cpu:.1f} s)",
                flush=True,
            )
    finally:
        server.stop()
    report(results)
    return results


def report(results: dict[str, Run]) -> None:
    run = results.get("synthesis")
    if run is None or run.code != 0:
        return
    for name in ("floor", "floor_windows"):
        floor = results.get(name)
        if floor is not None and floor.code == 0:
            print(
                f"synthesis / {name}: {run.wall / floor.wall:.2f}x the wall time, "
                f"{run.cpu / floor.cpu:.2f}x the process's CPU, "
                f"{run.total_cpu / floor.total_cpu:.2f}x the CPU with the S3 server's"
            )
    xarray = results.get("xarray")
    if xarray is not None and xarray.code == 0:
        print(f"xarray route / synthesis: {xarray.wall / run.wall:.2f}x")
    memory = composite_memory_mb()
    vcpus = memory / LAMBDA_MB_PER_VCPU
    cores = min(os.cpu_count() or 1, 2)
    print(
        f"peak RSS {run.rss_mb:.0f} MB of the {memory} MB the template gives the composite "
        f"function; at {memory} MB Lambda has {vcpus:.2f} vCPU: about {run.cpu / vcpus:.0f} s "
        f"of CPU there, at most {run.wall * cores / vcpus:.0f} s (wall here x {cores} cores / "
        f"{vcpus:.2f} vCPU)"
    )


if __name__ == "__main__":
    main()
