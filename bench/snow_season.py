"""Performance of one tile's snow season (`season_tile`) from snow-map COGs on local disk.

Inputs: `--s2` Sentinel-2 maps (20 m, on the tile's grid) and `--l8` Landsat-8 maps (30 m, on
a grid shifted by a fraction of a pixel, its footprint stopping short of the right-hand side),
spread over the hydrological year and its margins, some on the same days. They are made like
`tools/simulate_snow`'s (the same truth: snow periods along an elevation gradient, an early
snowfall in mid rows, glaciers), cheaply enough for a full tile: truth computed by row
strips, blob-shaped clouds instead of per-pixel ones (what real maps look like, and what
compresses like them), a third of the maps fractional, both no-data conventions. They are
kept in `--workdir` and reused by later runs with the same figures.

Each route runs in a fresh process; its wall time, CPU time and peak resident memory (VmHWM)
are reported:

- `season`: `season_tile` writing the five layers as COGs;
- `floor` (after `season`): the I/O floor: every input read once, block by block, in as many
  threads as the season reads with, and the five outputs written again through the same COG
  writer with the same type, no data and overview resampling, their values copied block by
  block from the season's (compressing a season's layers costs more than compressing a
  snow map's flat classes would: the content has to be the same), no computation;
- `cube` (at `--compare-size` only): a straightforward numpy implementation that loads all the
  maps into one array, fuses each day's, fills the whole daily series (days x pixels) by plain
  linear interpolation, and takes the five layers from it by plain array operations. Its
  outputs must equal the season's, pixel for pixel.

    nice -n 10 .venv/bin/python bench/snow_season.py --workdir /tmp/snow-bench   # full tile
    .venv/bin/python bench/snow_season.py --size 1098 --compare-size 1098 --workdir /tmp/sb
    .venv/bin/python bench/snow_season.py --size 240 --s2 12 --l8 4 --compare-size 120

The time on Lambda is estimated with CPU in proportion to memory (one vCPU at 1,769 MB):
the season's CPU time over those vCPUs (all of them busy), and, as a ceiling, the wall time
here scaled by the cores here over those vCPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from sansnuages.formats.snow import CLOUD, NO_SNOW, NODATA_V1, NODATA_V2, SNOW
from sansnuages.period import HydrologicalYear
from sansnuages.processing.snow_season import FRACTION_SNOW_FROM, LONGEST_MORE_THAN, NODATA
from sansnuages.raster import cog
from sansnuages.tools.simulate_snow import snow_periods

EPSG = "EPSG:32631"
ULX, ULY = 600000.0, 5100000.0
PIXEL = 20.0
L8_PIXEL = 30.0
L8_SHIFT = (5.0, -7.0)  # metres: no 20 m pixel centre on a 30 m pixel edge
YEAR = HydrologicalYear(2019)
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MB = 4096
"""The memory of the function that runs a tile's season (the composite function's)."""
CLOUD_MAX = 0.7
FRACTIONAL_SHARE = 0.3
EDGE_SHARE = 0.2
SEED = 7
DTYPES = {"SCD": "uint16", "SOD": "uint16", "SMOD": "uint16", "NOBS": "uint16", "NSP": "uint8"}


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapFile:
    path: str
    day: int
    rank: int
    nodata: int


def grid_transform(size: int) -> Affine:
    return Affine(PIXEL, 0, ULX, 0, -PIXEL, ULY)


def l8_transform() -> Affine:
    return Affine(L8_PIXEL, 0, ULX + L8_SHIFT[0], 0, -L8_PIXEL, ULY + L8_SHIFT[1])


def acquisition_days(s2: int, l8: int) -> list[tuple[int, int]]:
    """(day, rank) of every map, spread evenly over the year and its margins; every third
    Landsat-8 map falls on a Sentinel-2 day, so that the fusion has work."""
    first, last = -YEAR.margin_days, YEAR.n_days + YEAR.margin_days - 1
    s2_days = sorted({round(d) for d in np.linspace(first, last, s2)}) if s2 else []
    found = [(d, 0) for d in s2_days]
    for i, d in enumerate(np.linspace(first + 3, last - 3, l8) if l8 else []):
        day = s2_days[np.abs(np.array(s2_days) - d).argmin()] if i % 3 == 0 and s2_days else d
        found.append((round(day), 1))
    return found


def truth(size: int, rng: np.random.Generator, rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) snow days, (2, size, size) int16 each, made strip by strip (the
    simulator's `snow_periods` holds int64 temporaries a few times the grid otherwise)."""
    first = np.empty((2, size, size), np.int16)
    last = np.empty((2, size, size), np.int16)
    cols = np.linspace(0.0, 1.0, size)[None, :]
    heights = np.linspace(0.0, 1.0, size)
    for top in range(0, size, rows):
        height = 0.85 * heights[top : top + rows, None] + 0.15 * cols
        f, la = snow_periods(height, rng)
        first[:, top : top + rows], last[:, top : top + rows] = f, la
    return first, last


def _smooth(shape: tuple[int, int], rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1): coarse noise, bilinear-upsampled (float32)."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.linspace(0, cells, n, endpoint=False, dtype=np.float32)
        low = np.minimum(pos.astype(np.intp), cells - 1)
        return low, pos - low

    (r0, fr), (c0, fc) = axis(shape[0]), axis(shape[1])
    rows = coarse[r0] * (1 - fr)[:, None] + coarse[r0 + 1] * fr[:, None]
    return rows[:, c0] * (1 - fc)[None, :] + rows[:, c0 + 1] * fc[None, :]


def snow_map(snow: np.ndarray, rng: np.random.Generator, rank: int, nodata: int) -> np.ndarray:
    """L2B-SNOW codes of the true snow of a day: binary or fractional (on the right side of
    50 %), blob-shaped clouds over a random share, swath edge or Landsat-8 footprint edge."""
    shape = snow.shape
    if rng.random() < FRACTIONAL_SHARE:
        snowy = rng.integers(FRACTION_SNOW_FROM, SNOW + 1, size=shape, dtype=np.uint8)
        patchy = rng.integers(0, FRACTION_SNOW_FROM, size=shape, dtype=np.uint8)
        patchy[rng.random(shape, dtype=np.float32) < 0.5] = NO_SNOW
        codes = np.where(snow, snowy, patchy)
    else:
        codes = np.where(snow, SNOW, NO_SNOW).astype(np.uint8)
    cells = max(2, shape[0] // 150)
    field = _smooth(shape, rng, cells) + 0.3 * _smooth(shape, rng, cells * 8)
    codes[field > np.quantile(field[::7, ::7], 1 - rng.uniform(0.0, CLOUD_MAX))] = CLOUD
    if rank == 1:
        codes[:, int(shape[1] * rng.uniform(0.5, 0.9)) :] = nodata
    elif rng.random() < EDGE_SHARE:
        codes[:, : int(shape[1] * rng.uniform(0.1, 0.4))] = nodata
    return codes


def make_inputs(folder: Path, size: int, s2: int, l8: int) -> list[MapFile]:
    """The maps as COGs in `folder` (written once: a manifest lists them for later runs)."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return [MapFile(**m) for m in json.loads(manifest.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    first, last = truth(size, rng)
    l8_size = size * 2 // 3 + 1
    centres = (np.arange(l8_size) + 0.5) * L8_PIXEL
    l8_cols = np.clip(((centres + L8_SHIFT[0]) // PIXEL).astype(int), 0, size - 1)
    l8_rows = np.clip(((centres - L8_SHIFT[1]) // PIXEL).astype(int), 0, size - 1)
    maps = []
    for number, (day, rank) in enumerate(sorted(acquisition_days(s2, l8))):
        snow: np.ndarray = np.asarray(((first <= day) & (day <= last)).any(axis=0))
        if rank == 1:
            snow = snow[l8_rows][:, l8_cols]
        nodata = NODATA_V1 if rng.random() < 0.5 else NODATA_V2
        path = folder / f"map{number:03d}_{'L8' if rank else 'S2'}.tif"
        transform = l8_transform() if rank else grid_transform(size)
        cog.write_cog(
            str(path), snow_map(snow, rng, rank, nodata), crs=EPSG, transform=transform,
            nodata=nodata, overview_resampling="NEAREST",
        )  # fmt: skip
        maps.append(MapFile(str(path), day, rank, nodata))
    manifest.write_text(json.dumps([asdict(m) for m in maps]))
    return maps


def inputs_of(maps: list[MapFile]) -> list[Any]:
    from sansnuages.processing.snow_season_tile import SnowMapInput

    return [
        SnowMapInput(
            m.path,
            YEAR.date_of(m.day),
            m.rank,
            Path(m.path).stem,
            "landsat-8" if m.rank else "sentinel-2a",
            m.nodata,
        )
        for m in maps
    ]


def output_grid(size: int) -> Any:
    from sansnuages.processing.synthesis import OutputGrid

    return OutputGrid(EPSG, grid_transform(size), size, size)


def outputs(folder: Path, route: str) -> dict[str, str]:
    out = folder / f"out-{route}"
    out.mkdir(exist_ok=True)
    return {name: str(out / f"{name}.tif") for name in NODATA}


# --- the routes (each in its own process) ------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    folder: str
    size: int


def gdal_options() -> dict[str, int]:
    from sansnuages.processing.snow_season_tile import SEASON_GDAL_OPTIONS

    return dict(SEASON_GDAL_OPTIONS)


def route_season(spec: Spec) -> dict[str, Any]:
    from sansnuages.processing.snow_season_tile import season_tile

    folder = Path(spec.folder)
    maps = [MapFile(**m) for m in json.loads((folder / "manifest.json").read_text())]
    with rasterio.Env(**gdal_options()):
        summary = season_tile(
            inputs_of(maps),
            YEAR,
            output_grid(spec.size),
            outputs(folder, "season"),
            scratch_dir=str(folder),
        )
    return {"pixels": summary.pixels, "snow_days": sum(summary.daily_snow)}


def route_floor(spec: Spec) -> dict[str, Any]:
    """Read every input by blocks (the season's reading threads), write the season's five
    outputs again (their blocks read from the season's COGs: 7 % of the bytes read)."""
    from sansnuages.formats.snow_season_product import LAYERS
    from sansnuages.processing.snow_season_tile import READ_THREADS

    folder = Path(spec.folder)
    maps = [MapFile(**m) for m in json.loads((folder / "manifest.json").read_text())]

    def read_all(path: str) -> None:
        with rasterio.open(path, driver="GTiff") as src:
            for _, window in src.block_windows(1):
                src.read(1, window=window)

    with rasterio.Env(**gdal_options()):
        with ThreadPoolExecutor(READ_THREADS) as pool:
            list(pool.map(read_all, [m.path for m in maps]))
        grid = output_grid(spec.size)
        season = outputs(folder, "season")
        for name, path in outputs(folder, "floor").items():
            with rasterio.open(season[name], driver="GTiff") as source, cog.cog_writer(
                path, width=grid.width, height=grid.height, count=1, dtype=DTYPES[name],
                crs=grid.crs, transform=grid.transform, nodata=NODATA[name],
                scratch_dir=str(folder), overview_resampling=LAYERS[name].overview_resampling,
            ) as dst:  # fmt: skip
                for _, window in dst.block_windows(1):
                    dst.write(source.read(1, window=window), 1, window=window)
    return {}


def route_cube(spec: Spec) -> dict[str, Any]:
    """The whole year's cube in memory, the daily series in full, plain array operations."""
    folder = Path(spec.folder)
    maps = [MapFile(**m) for m in json.loads((folder / "manifest.json").read_text())]
    maps = sorted(
        (m for m in maps if YEAR.takes(YEAR.date_of(m.day))), key=lambda m: (m.day, m.rank)
    )
    grid = output_grid(spec.size)
    cube = np.empty((len(maps), spec.size, spec.size), np.uint8)
    for i, m in enumerate(maps):
        with rasterio.open(m.path, driver="GTiff") as src:
            if m.rank == 0:
                src.read(1, out=cube[i])
            else:
                with WarpedVRT(
                    src, crs=grid.crs, transform=grid.transform, width=grid.width,
                    height=grid.height, resampling=Resampling.nearest, src_nodata=m.nodata,
                    nodata=m.nodata,
                ) as vrt:  # fmt: skip
                    vrt.read(1, out=cube[i])
    days = sorted({m.day for m in maps})
    fused = np.empty((len(days), spec.size, spec.size), np.uint8)
    for t, day in enumerate(days):
        todays = [cube[i] for i, m in enumerate(maps) if m.day == day]  # by rank
        fused[t] = todays[-1]
        for codes in reversed(todays[:-1]):
            fused[t] = np.where(codes <= 100, codes, fused[t])
    del cube
    clear = fused <= 100
    snow = clear & (fused >= FRACTION_SNOW_FROM)
    del fused
    series = daily_series(np.array(days), snow, clear, YEAR.n_days)
    layers = layers_of_series(series, clear.sum(axis=0))
    with rasterio.Env(**gdal_options()):
        for name, path in outputs(folder, "cube").items():
            cog.write_cog(
                path, layers[name], crs=grid.crs, transform=grid.transform, nodata=NODATA[name]
            )
    return {}


def daily_series(days: np.ndarray, snow: np.ndarray, clear: np.ndarray, n_days: int) -> np.ndarray:
    """(n_days, rows, cols) bool: each day's own clear observation, else the linear
    interpolation between the clear observations around it at least 1/2, else the nearest one
    held; no snow where never clear."""
    count = len(days)
    index = np.arange(count, dtype=np.int16)[:, None, None]  # int16: the cube is big
    previous = np.maximum.accumulate(np.where(clear, index, -1), axis=0)  # last clear up to t
    following = np.where(clear, index, count)[::-1]
    following = np.minimum.accumulate(following, axis=0)[::-1]  # first clear from t on
    snow_at = np.concatenate([snow, np.zeros((1, *snow.shape[1:]), bool)])
    day_at = np.append(days, 0)
    series = np.zeros((n_days, *snow.shape[1:]), bool)
    for day in range(n_days):
        k = np.searchsorted(days, day, side="right")  # observations on or before `day`
        before = previous[k - 1] if k > 0 else np.full(snow.shape[1:], -1, np.int16)
        after = following[k] if k < count else np.full(snow.shape[1:], count, np.int16)
        has_before, has_after = before >= 0, after < count
        b, a = np.where(has_before, before, count), np.where(has_after, after, count)
        s0, s1 = (
            np.take_along_axis(snow_at, b[None], 0)[0],
            np.take_along_axis(snow_at, a[None], 0)[0],
        )
        t0, t1 = day_at[b], day_at[a]
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (s0 * (t1 - day) + s1 * (day - t0)) / (t1 - t0)
        inner = has_before & has_after & (t1 > t0)
        series[day] = np.where(
            inner, value >= 0.5, np.where(has_before, s0, np.where(has_after, s1, False))
        )
    return series


def layers_of_series(series: np.ndarray, nobs: np.ndarray) -> dict[str, np.ndarray]:
    """SCD, SOD, SMOD, NOBS, NSP of a full daily series, day by day."""
    shape = series.shape[1:]
    run = np.zeros(shape, np.int32)
    best = np.zeros(shape, np.int32)
    best_end = np.zeros(shape, np.int32)
    periods = series[0].astype(np.int32)
    for day in range(len(series)):
        run = np.where(series[day], run + 1, 0)
        longer = run > best  # strictly: the first of equally long periods stays
        best = np.where(longer, run, best)
        best_end = np.where(longer, day, best_end)
        if day:
            periods += series[day] & ~series[day - 1]
    never = nobs == 0
    dated = ~never & (best > LONGEST_MORE_THAN)
    days_nodata = NODATA["SCD"]
    assert days_nodata is not None and NODATA["NSP"] is not None
    return {
        "SCD": np.where(never, days_nodata, series.sum(axis=0)).astype(np.uint16),
        "SOD": np.where(dated, best_end - best + 1, days_nodata).astype(np.uint16),
        "SMOD": np.where(dated, best_end, days_nodata).astype(np.uint16),
        "NOBS": nobs.astype(np.uint16),
        "NSP": np.where(never, NODATA["NSP"], periods).astype(np.uint8),
    }


ROUTES = {"season": route_season, "floor": route_floor, "cube": route_cube}


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mb: float
    code: int


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), GDAL's included."""
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else float("nan")


def run_route(route: str, spec: Spec) -> Run:
    """A fresh process running `route`: wall and CPU time, peak RSS, exit status."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        command = [sys.executable, __file__, "--child", route, "--spec", json.dumps(asdict(spec))]
        started = time.monotonic()
        process = subprocess.Popen([*command, "--peak-file", peak.name])
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        rss_mb = float(peak.read() or "nan")
    return Run(wall, usage.ru_utime + usage.ru_stime, rss_mb, os.waitstatus_to_exitcode(status))


def floor_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("map*.tif")) / 2**20


def same_outputs(folder: Path, a: str, b: str) -> dict[str, bool]:
    """Layer by layer, whether two routes wrote the same values, types and no data."""
    found = {}
    for name in NODATA:
        with rasterio.open(folder / f"out-{a}" / f"{name}.tif") as x:
            with rasterio.open(folder / f"out-{b}" / f"{name}.tif") as y:
                found[name] = bool(
                    x.dtypes == y.dtypes
                    and x.nodata == y.nodata
                    and np.array_equal(x.read(1), y.read(1))
                )
    return found


def measure(folder: Path, size: int, routes: list[str]) -> dict[str, Run]:
    results = {}
    for route in routes:
        results[route] = run = run_route(route, Spec(str(folder), size))
        print(
            f"{size:>5} px {route:<7} {run.wall:8.1f} s  CPU {run.cpu:7.1f} s  "
            f"peak RSS {run.rss_mb:7.0f} MB  exit {run.code}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return results


def prepare(workdir: Path, size: int, s2: int, l8: int) -> tuple[Path, list[MapFile]]:
    folder = workdir / f"snow-{size}px-{s2}s2-{l8}l8-seed{SEED}"
    started = time.monotonic()
    made = not (folder / "manifest.json").exists()
    maps = make_inputs(folder, size, s2, l8)
    took = f"{time.monotonic() - started:.0f} s to make" if made else "reused"
    print(
        f"inputs: {sum(m.rank == 0 for m in maps)} Sentinel-2 + {sum(m.rank == 1 for m in maps)} "
        f"Landsat-8 maps at {size} px, {floor_mb(folder):.0f} MB of COGs ({took})",
        flush=True,
    )
    return folder, maps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=5490, help="pixels a side (5490: a tile)")
    parser.add_argument("--s2", type=int, default=100, help="Sentinel-2 maps")
    parser.add_argument("--l8", type=int, default=30, help="Landsat-8 maps")
    parser.add_argument("--compare-size", type=int, default=1098, help="0: no comparison")
    parser.add_argument("--workdir", type=Path, default=None, help="inputs kept here")
    parser.add_argument("--lambda-mb", type=int, default=LAMBDA_MB)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peak-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        ROUTES[args.child](Spec(**json.loads(args.spec)))
        Path(args.peak_file).write_text(f"{peak_rss_mb():.1f}")
        return {}
    if args.size % 3 or args.compare_size % 3:
        parser.error("sizes must be multiples of 3 (the 30 m grid)")
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        workdir = args.workdir or Path(scratch)
        figures = bench(workdir, args)
    print(json.dumps(figures))
    return figures


def bench(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"size": args.size, "lambda_mb": args.lambda_mb}
    folder, maps = prepare(workdir, args.size, args.s2, args.l8)
    figures.update(s2=sum(m.rank == 0 for m in maps), l8=sum(m.rank == 1 for m in maps))
    figures["inputs_mb"] = floor_mb(folder)
    full = measure(folder, args.size, ["season", "floor"])  # the floor writes the season's
    figures.update({route: asdict(run) for route, run in full.items()})
    season, floor = full["season"], full["floor"]
    vcpus = args.lambda_mb / LAMBDA_MB_PER_VCPU
    cores = min(os.cpu_count() or 1, len(os.sched_getaffinity(0)))
    figures.update(
        floor_ratio=season.wall / floor.wall,
        floor_cpu_ratio=season.cpu / floor.cpu,
        lambda_vcpu=vcpus,
        lambda_cpu_bound_s=season.cpu / vcpus,
        lambda_wall_ceiling_s=season.wall * cores / vcpus,
    )
    print(
        f"season / I/O floor: {figures['floor_ratio']:.2f}x the wall time, "
        f"{figures['floor_cpu_ratio']:.2f}x the CPU time (the wall time's ratio holds on an "
        f"idle machine only: with other work on the cores, each route gets a share of them)"
    )
    print(
        f"on Lambda at {args.lambda_mb} MB ({vcpus:.2f} vCPU, one at {LAMBDA_MB_PER_VCPU} MB): "
        f"about {figures['lambda_cpu_bound_s']:.0f} s with every vCPU busy, at most "
        f"{figures['lambda_wall_ceiling_s']:.0f} s (wall here x {cores} cores / {vcpus:.2f}); "
        f"peak RSS {season.rss_mb:.0f} MB of {args.lambda_mb} MB"
    )
    if args.compare_size:
        small, _ = prepare(workdir, args.compare_size, args.s2, args.l8)
        compared = measure(small, args.compare_size, ["season", "cube"])
        identical = same_outputs(small, "season", "cube")
        figures["compare"] = {
            "size": args.compare_size,
            **{route: asdict(run) for route, run in compared.items()},
            "identical": identical,
        }
        c, s = compared["cube"], compared["season"]
        print(
            f"at {args.compare_size} px, whole cube / season: {c.wall / s.wall:.2f}x the time, "
            f"{c.rss_mb / s.rss_mb:.2f}x the peak memory; outputs identical: "
            + ", ".join(f"{name} {'yes' if same else 'NO'}" for name, same in identical.items())
        )
    return figures


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
