"""Quality of the Level-3A synthesis against ground truth and other compositing methods.

Simulates a month of one tile (Sentinel-2A/2B every 5 days, Landsat-8 every 16) at three
cloudiness levels. The simulator knows the truth: the surface on the 15th, which the
observations miss through phenology over the window, haze growing with AOT, clouds and
shadows, thin cloud edges the mask does not flag and noise. The synthesis and the baselines
(`sansnuages.baselines`) get the same inputs; per band the RMSE against the truth is taken over
the pixels that have at least one clear view, and the share of those pixels each method leaves
cloudy or empty is reported.

    .venv/bin/python bench/quality.py                      # 150 m pixels, about 2 minutes
    .venv/bin/python bench/quality.py --resolution 300 --levels typical   # a quick look
    .venv/bin/python bench/quality.py --directional        # + BRDF: nadir normalisation off/on
    .venv/bin/python bench/quality.py --failures           # masks and skies that fail as real ones

With `--directional` the simulated views see the surface through the Ross-Thick/Li-Sparse
kernels (view zenith across the swath, sun of the day) and the table gets a row
`synthesis-nadir`: the same synthesis with each observation normalised to nadir view
(`sansnuages.brdf`, angles from the products' metadata and 5 km angle grids). The baselines
get the inputs as they are, as their users would.

The row `synthesis-haze` is the synthesis with the haze weight on (`haze_scale` 0.02, off by
default). With `--failures` the products fail as real ones do (`simulate.REALISTIC_FAILURES`:
an unflagged thin cloud layer of opacity up to 0.1 on 15 % of the products, cloud flagged from
opacity 0.4 rather than 0.3, 30 % of the shadows unflagged and 70 % deep, and smoke of AOT up
to 0.25, 30 % of it reported, on the three dates from 11 to 3 days before the 15th). Each
table ends with the methods ranked on B4, B8 and B11, the bands of the real-imagery
benchmark (`bench/quality_real.py`), to set beside its ranking.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from sansnuages.formats.bands import LANDSAT8_TO_SENTINEL2, SENTINEL2_GROUPS, is_landsat
from sansnuages.formats.muscate import parse_metadata, view_angle_grid
from sansnuages.processing.synthesis import (
    DEFAULT_HAZE_SCALE,
    FLAG_CLEAR,
    FLAG_SNOW,
    FLAG_WATER,
    HAZE_BLUE_SCALE,
    LANDSAT8_WEIGHT,
    SENTINEL2_WEIGHT,
    GroupOutputs,
    Observation,
    OutputGrid,
    RasterRef,
    band_sets,
    read_stack,
    subset_path,
    synthesize_group,
)
from sansnuages.raster.brdf import NadirNormalisation, ViewGeometry
from sansnuages.tools import baselines
from sansnuages.tools.simulate import (
    LANDSAT_PLATFORM,
    REALISTIC_FAILURES,
    Failures,
    group_geometries,
    overpass_time,
    simulate_product,
    truth_reflectance,
)

LEVELS = ("light", "typical", "heavy")
HAZE = [DEFAULT_HAZE_SCALE]
METHODS = ("synthesis", "median", "bap", "geomedian", "min-blue", "recent")
BASELINES = METHODS[1:]
NADIR = "synthesis-nadir"
HAZE_ROW = "synthesis-haze"
SMOKE_DAYS = (-11, -3)
"""The smoke event of `--failures`, in days from the 15th."""


def cloud_covers(level: str, count: int, rng: np.random.Generator) -> list[float]:
    """Per-date cloud cover: light skies, the simulator's usual mix, or a wet month."""
    if level == "light":
        covers = rng.uniform(0.0, 0.3, count)
    elif level == "heavy":
        covers = rng.uniform(0.55, 0.98, count)
        covers[rng.integers(count)] = 0.35  # one half-clear day, as heavy months have
    else:
        kind = rng.random(count)
        covers = np.where(
            kind < 0.3,
            rng.uniform(0.0, 0.05, count),
            np.where(kind > 0.8, rng.uniform(0.9, 0.99, count), rng.uniform(0.1, 0.8, count)),
        )
    return [float(c) for c in covers]


def acquisitions(centre: dt.date, half: int) -> list[tuple[str, dt.date]]:
    plan = []
    for offset in range(-half, half + 1):
        day = centre + dt.timedelta(days=offset)
        if offset % 10 == 2:
            plan.append(("SENTINEL2A", day))
        if offset % 10 == 7:
            plan.append(("SENTINEL2B", day))
        if offset % 16 == 5:
            plan.append((LANDSAT_PLATFORM, day))
    return plan


def observation_from_zip(path: Path, nadir: bool = False) -> Observation:
    """A simulated MUSCATE zip as the synthesis' input, read in place through /vsizip/;
    `nadir` asks for the directional normalisation from the product's angles."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        mtd = next(n for n in names if n.endswith("_MTD_ALL.xml"))
        xml = archive.read(mtd)
        meta = parse_metadata(xml)
    normalisation = None
    if nadir:
        assert meta.sun_zenith is not None and meta.sun_azimuth is not None
        geometry = ViewGeometry(
            meta.sun_zenith,
            meta.sun_azimuth,
            meta.view_zenith or 0.0,
            meta.view_azimuth or 0.0,
            view_angle_grid(xml) if GRIDS[0] else None,
        )
        normalisation = NadirNormalisation(geometry)
    root = f"/vsizip/{path}/{mtd.split('/')[0]}"
    pid = meta.product_id
    landsat = is_landsat(meta.platform)
    refl, cloud, edge, aot = {}, {}, {}, {}
    for group, bands in SENTINEL2_GROUPS.items():
        for band in bands:
            source = LANDSAT8_TO_SENTINEL2.get(band) if landsat else band
            if source is None:
                continue
            mask_group = "XS" if landsat else group
            refl[band] = RasterRef(
                f"{root}/{pid}_FRE_{source}.tif", scale=meta.reflectance_scale, nodata=-10000
            )
            cloud[band] = RasterRef(f"{root}/MASKS/{pid}_CLM_{mask_group}.tif")
            edge[band] = RasterRef(f"{root}/MASKS/{pid}_EDG_{mask_group}.tif")
            aot[band] = RasterRef(f"{root}/{pid}_ATB_{mask_group}.tif", 2, meta.aot_scale, 0)
    return Observation(
        pid,
        meta.platform,
        meta.acquired,
        LANDSAT8_WEIGHT if landsat else SENTINEL2_WEIGHT,
        refl,
        cloud,
        edge,
        aot,
        nadir=normalisation,
    )


GRIDS = [True]
"""Use the products' angle grids (per-pixel view angles); False: the mean angles only."""


@dataclass
class Scores:
    rmse: dict[str, dict[str, float]]
    """method -> band -> RMSE x 10000."""
    left: dict[str, float]
    """method -> share (%) of pixels with a clear view left cloudy or empty."""
    pixels: int


def _read(path: str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def run_group(
    observations: list[Observation],
    group: str,
    grid: OutputGrid,
    truth: Callable[[str], np.ndarray],
    centre: dt.date,
    half: int,
    out: Path,
    nadir: list[Observation] | None = None,
) -> Scores:
    """Scores of the synthesis and the baselines on one group; with `nadir` (the same
    observations with nadir normalisation) also of the normalised synthesis."""
    bands = SENTINEL2_GROUPS[group]
    runs = {"synthesis": observations, HAZE_ROW: observations} | ({NADIR: nadir} if nadir else {})
    scales = {HAZE_ROW: HAZE_BLUE_SCALE}
    methods = [*runs, *BASELINES]
    outputs = {}
    for name, inputs in runs.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        outputs[name] = GroupOutputs(
            frc={b: str(folder / f"FRC_{b}.tif") for b in bands},
            flags=str(folder / f"FLG_{group}.tif"),
            weights=str(folder / f"WGT_{group}.tif"),
            dates=str(folder / f"DTS_{group}.tif"),
        )
        scale = scales.get(name, HAZE[0])
        synthesize_group(inputs, bands, grid, centre, half, outputs[name], haze_scale=scale)
    usable = sorted(observations, key=lambda o: (o.acquired, o.product_id))
    stack = read_stack(usable, bands, grid)
    days = np.array([(o.acquired.date() - centre).days for o in usable], np.float32)
    results: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    left_masks: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    rmse: dict[str, dict[str, float]] = {m: {} for m in methods}
    main_seen = None
    for number, subset in enumerate(band_sets(usable, bands)):
        index = list(subset.observations)
        stacks = {b: stack.reflectance[b][index] for b in subset.bands}
        clear, valid = stack.state.clear[index], stack.state.valid[index]
        seen = clear.any(axis=0)
        main_seen = seen if number == 0 else main_seen
        for name, written in outputs.items():
            flags_path = written.flags if number == 0 else subset_path(written.flags, subset.bands)
            flags = _read(flags_path)
            for band in subset.bands:
                frc = _read(written.frc[band]).astype(np.float32)
                results[name][band] = np.where(frc == -10000, np.nan, frc / 10000)
            kept = np.isin(flags, (FLAG_CLEAR, FLAG_WATER, FLAG_SNOW))
            left_masks[name].append(seen & ~kept)
        pixel_m = abs(grid.transform.a)
        for method, values in {
            "median": baselines.clear_median(stacks, clear),
            "bap": _bap(stacks, clear, valid, days[index], pixel_m, subset.bands),
            "geomedian": baselines.geometric_median(stacks, clear),
            "min-blue": _min_blue(stacks, clear, stack, index),
            "recent": baselines.most_recent_clear(stacks, clear, days[index]),
        }.items():
            results[method].update(values)
            left_masks[method].append(seen & ~np.isfinite(next(iter(values.values()))))
        for band in subset.bands:
            expected = truth(band)
            for method in methods:
                error = results[method][band][seen] - expected[seen]
                rmse[method][band] = float(np.sqrt(np.nanmean(error**2)) * 10000)
    assert main_seen is not None
    left = {
        m: 100.0 * float(np.mean([x.sum() for x in v])) / main_seen.sum()
        for m, v in left_masks.items()
    }
    return Scores(rmse, left, int(main_seen.sum()))


def _bap(stacks, clear, valid, days, pixel_m, bands):  # type: ignore[no-untyped-def]
    """FORCE scoring needs blue and red: groups without them score on the 10 m pair."""
    if "B2" in bands and "B4" in bands:
        return baselines.best_available_pixel(stacks, clear, valid, days, pixel_m)
    proxy = dict(stacks, B2=stacks[bands[0]], B4=stacks[bands[0]] * 0)
    picked = baselines.best_available_pixel(proxy, clear, valid, days, pixel_m)
    return {b: picked[b] for b in bands}


def _min_blue(stacks, clear, stack, index):  # type: ignore[no-untyped-def]
    """Lowest blue of the clear observations; the blue of the R2 group is B2 read at 20 m."""
    with_blue = dict(stacks, _blue=stack.blue[index])
    picked = baselines.minimum_blue(with_blue, clear, blue="_blue")
    return {b: picked[b] for b in stacks}


def run_level(
    level: str,
    tile: str,
    resolution: float,
    seed: int,
    folder: Path,
    directional: bool = False,
    failures: Failures | None = None,
) -> dict[str, Scores]:
    """Scores of one cloudiness level; `failures` (smoke days set here, `SMOKE_DAYS`)."""
    centre, half = dt.date(2018, 7, 15), 23
    plan = acquisitions(centre, half)
    failing: Failures | None = None
    if failures is not None:
        smoke = tuple(centre + dt.timedelta(days=d) for d in SMOKE_DAYS)
        failing = replace(failures, smoke_days=smoke)  # type: ignore[arg-type]
    rng = np.random.default_rng([seed, LEVELS.index(level)])
    products = folder / level
    paths = [
        simulate_product(
            tile,
            overpass_time(tile, day, platform),
            platform,
            products,
            resolution=resolution,
            seed=seed * 1000 + i,
            cloud_cover=cover,
            directional=directional,
            failures=failing,
        )
        for i, ((platform, day), cover) in enumerate(
            zip(plan, cloud_covers(level, len(plan), rng), strict=True)
        )
    ]
    observations = [observation_from_zip(p) for p in paths]
    nadir = [observation_from_zip(p, nadir=True) for p in paths] if directional else None
    geometries = group_geometries(tile, "SENTINEL2A", resolution)
    from sansnuages.formats import grid as s2grid

    epsg = s2grid.tile(tile).epsg
    scores = {}
    for group in SENTINEL2_GROUPS:
        geom = geometries[group]
        grid = OutputGrid(f"EPSG:{epsg}", Affine(*geom.transform[:6]), geom.ncols, geom.nrows)
        out = folder / f"{level}-{group}"
        out.mkdir()
        scores[group] = run_group(
            observations,
            group,
            grid,
            lambda band, g=geom: truth_reflectance(tile, band, centre, g),
            centre,
            half,
            out,
            nadir,
        )
    return scores


def print_table(level: str, scores: dict[str, Scores]) -> None:
    bands = [b for g in SENTINEL2_GROUPS for b in SENTINEL2_GROUPS[g]]
    print(
        f"\n### {level} (pixels with a clear view: {scores['R1'].pixels} at 10 m-equivalent grid)"
    )
    print("| method | " + " | ".join(bands) + " | left cloudy/empty R1 % |")
    print("|---" * (len(bands) + 2) + "|")
    methods = list(scores["R1"].rmse)
    best = {
        b: min(scores[g].rmse[m][b] for m in methods)
        for g in SENTINEL2_GROUPS
        for b in SENTINEL2_GROUPS[g]
    }
    for method in methods:
        cells = []
        for group in SENTINEL2_GROUPS:
            for band in SENTINEL2_GROUPS[group]:
                value = scores[group].rmse[method][band]
                cells.append(f"**{value:.0f}**" if value == best[band] else f"{value:.0f}")
        print(f"| {method} | " + " | ".join(cells) + f" | {scores['R1'].left[method]:.2f} |")


REAL_BANDS = ("B4", "B8", "B11")
"""The bands the real-imagery benchmark scores (its series has no blue)."""


def print_ranking(scores: dict[str, Scores]) -> None:
    """Methods by mean RMSE over the real series' bands, to set beside its ranking."""
    rmse = {g: scores[g].rmse for g in SENTINEL2_GROUPS}
    group_of = {b: g for g in SENTINEL2_GROUPS for b in SENTINEL2_GROUPS[g]}
    mean = {m: float(np.mean([rmse[group_of[b]][m][b] for b in REAL_BANDS])) for m in rmse["R1"]}
    ranked = sorted(mean, key=lambda m: mean[m])
    print(
        "ranking on "
        + ", ".join(REAL_BANDS)
        + ": "
        + ", ".join(f"{m} {mean[m]:.0f}" for m in ranked)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tile", default="31UFS")
    parser.add_argument("--resolution", type=float, default=150.0, help="R1 pixel size (m)")
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--haze-scale",
        type=float,
        default=DEFAULT_HAZE_SCALE,
        help="the synthesis row's haze scale (default 0: WASP v1.0 weights)",
    )
    parser.add_argument(
        "--failures",
        action="store_true",
        help="masks that miss thin cloud, edges and shadows, and a smoke event (as real data)",
    )
    parser.add_argument(
        "--directional",
        action="store_true",
        help="simulate directional (BRDF) effects and add the nadir-normalised synthesis",
    )
    parser.add_argument(
        "--mean-angles",
        action="store_true",
        help="normalise with the products' mean view angles only, not their angle grids",
    )
    args = parser.parse_args()
    HAZE[0] = args.haze_scale
    GRIDS[0] = not args.mean_angles
    print("RMSE against the truth on the 15th, reflectance x 10000 (lower is better; best in bold)")
    syntheses = ["synthesis", HAZE_ROW, *([NADIR] if args.directional else [])]
    wins = dict.fromkeys(syntheses, 0)
    cells = 0
    for level in args.levels.split(","):
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            scores = run_level(
                level,
                args.tile,
                args.resolution,
                args.seed,
                Path(folder),
                args.directional,
                REALISTIC_FAILURES if args.failures else None,
            )
        print_table(level, scores)
        print_ranking(scores)
        for group in SENTINEL2_GROUPS:
            for band in SENTINEL2_GROUPS[group]:
                cells += 1
                rmse = scores[group].rmse
                for name in syntheses:
                    others = [m for m in rmse if m not in syntheses or m == name]
                    wins[name] += rmse[name][band] <= min(rmse[m][band] for m in others)
        if args.directional:
            ratio = [
                scores[g].rmse[NADIR][b] / scores[g].rmse["synthesis"][b]
                for g in SENTINEL2_GROUPS
                for b in SENTINEL2_GROUPS[g]
            ]
            print(
                f"nadir / plain RMSE: mean {np.mean(ratio):.3f}, "
                f"min {min(ratio):.3f}, max {max(ratio):.3f}"
            )
        print(f"({time.monotonic() - started:.0f} s)")
    for name in syntheses:
        print(f"\n{name} best of the baselines in {wins[name]} of {cells} band x level cells")


if __name__ == "__main__":
    main()
