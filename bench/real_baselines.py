"""Compositing methods for the real-imagery benchmark (bench/quality_real.py), in numpy.

The baselines of `sansnuages.baselines` (median, geometric median, FORCE-style best available
pixel, minimum blue, most recent) are reused as they are; this module adds what the real
series need and what the benchmark wants to judge before the core changes:

- `closest_clear`: the clear view nearest to the 15th (the rule of thumb of single-date users);
- `force_bap`: FORCE's scoring, falling back to day of year + cloud distance where the series
  has no blue band (FORCE's haze score needs blue and red);
- `wasp`: the synthesis' weighted average re-implemented on arrays, with switches for each
  weight (cloud distance, date, haze) and a robust temporal outlier test (`robust_factor`).
  With every switch at the synthesis' setting it gives `synthesize_group`'s output (the
  benchmark checks it to 1e-3 on every month), so a variant can be measured on exactly the
  inputs the synthesis gets before anything in the core is touched.

Arrays are (n_obs, h, w), observations in acquisition order, reflectance NaN where missing;
every method returns band -> (h, w) float32, NaN where it has nothing to give.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sansnuages.processing import synthesis
from sansnuages.tools import baselines

Stacks = Mapping[str, np.ndarray]
MAD_TO_SIGMA = 1.4826
"""A normal distribution's standard deviation per median absolute deviation."""
ROBUST_SIGMA_FLOOR = 0.005
"""Smallest spread (reflectance) the outlier test assumes: identical views would otherwise make
any view that differs by a DN an outlier."""


def _argbest(score: np.ndarray, usable: np.ndarray) -> np.ndarray:
    masked = np.where(usable, score, -np.inf)
    return np.where(usable.any(axis=0), masked.argmax(axis=0), -1)


def _usable(stacks: Stacks, clear: np.ndarray) -> np.ndarray:
    finite = np.logical_and.reduce([np.isfinite(s) for s in stacks.values()])
    return np.asarray(clear & finite)


def closest_clear(stacks: Stacks, clear: np.ndarray, days: np.ndarray) -> dict[str, np.ndarray]:
    """The clear view nearest to the centre date (the earlier one on a tie)."""
    usable = _usable(stacks, clear)
    d = np.asarray(days, np.float64)
    score = -np.abs(d) - 1e-3 * (d > 0)  # ties: before the centre wins
    full = np.broadcast_to(score[:, None, None], usable.shape)
    return dict(baselines.pick(stacks, _argbest(full, usable)))


def force_bap(
    stacks: Stacks,
    clear: np.ndarray,
    valid: np.ndarray,
    days: np.ndarray,
    pixel_m: float,
) -> dict[str, np.ndarray]:
    """FORCE's best available pixel; without B2 and B4 its haze score is left out (weight 0)
    rather than computed on another band, and the day-of-year and cloud-distance scores
    decide."""
    if "B2" in stacks and "B4" in stacks:
        return dict(baselines.best_available_pixel(stacks, clear, valid, days, pixel_m))
    usable = _usable(stacks, clear)
    d = np.asarray(days, np.float64)[:, None, None]
    s_doy = np.exp(-0.5 * (d / baselines.FORCE_DOY_SIGMA_DAYS) ** 2)
    distance = np.stack([baselines.distance_to_mask(m, pixel_m) for m in valid & ~clear])
    reach = baselines.FORCE_CLOUD_DISTANCE_M
    with np.errstate(over="ignore"):
        s_cloud = 1.0 / (1.0 + np.exp(-10.0 / reach * (distance - reach / 2)))
    weights = baselines.FORCE_WEIGHTS
    score = weights["doy"] * s_doy + weights["cloud"] * s_cloud
    return dict(baselines.pick(stacks, _argbest(score, usable)))


def min_blue(stacks: Stacks, clear: np.ndarray) -> dict[str, np.ndarray] | None:
    """The clear view with the lowest blue; None where the series has no blue band."""
    if "B2" not in stacks:
        return None
    return dict(baselines.minimum_blue(stacks, clear, blue="B2"))


# --- the synthesis' weighted average, in numpy ---------------------------------------------------


@dataclass(frozen=True)
class WaspOptions:
    """Which weights the numpy synthesis applies."""

    haze_scale: float = 0.0
    """The haze weight's blue scale (`synthesize_group`'s `haze_scale`); 0: off (WASP v1.0)."""
    cloud: bool = True
    """The cloud-distance weight W_cld; False: 1 for every clear view."""
    date: bool = True
    """The date weight (1 at the centre, 0.5 at the window's edge); False: 1 for every view."""
    robust_k: float | None = None
    """The robust temporal outlier test: a view whose blue lies more than k robust standard
    deviations above the per-pixel median of the averaged views loses weight (`robust_factor`);
    None: off."""


@dataclass(frozen=True)
class WaspInputs:
    """What the synthesis reads of one group, on the whole (small) grid."""

    reflectance: dict[str, np.ndarray]
    blue: np.ndarray
    """B2 where the series has it; else the group's first band, as the synthesis reads it."""
    aot: np.ndarray
    state: object
    """`PixelState`: valid, clear, water, snow (n_obs, h, w)."""
    days: np.ndarray
    """Days from the centre date, (n_obs,)."""
    sensor_weights: np.ndarray
    cloud_weight: np.ndarray
    """W_cld (n_obs, h, w), `synthesis.cloud_weights`."""
    half_window: int


def wasp_inputs(
    observations: Sequence[object],
    bands: Sequence[str],
    grid: object,
    centre: object,
    half_window: int,
) -> WaspInputs:
    """Read `observations` (already within the window) as the synthesis does: in acquisition
    order, through `read_stack` and `cloud_weights`."""
    usable = sorted(observations, key=lambda o: (o.acquired, o.product_id))  # type: ignore[attr-defined]
    stack = synthesis.read_stack(usable, bands, grid)
    days = np.array(
        [(o.acquired.date() - centre).days for o in usable],  # type: ignore[attr-defined]
        np.float32,
    )
    return WaspInputs(
        reflectance={b: stack.reflectance[b] for b in bands},
        blue=stack.blue,
        aot=stack.aot,
        state=stack.state,
        days=days,
        sensor_weights=np.array([o.sensor_weight for o in usable], np.float32),  # type: ignore[attr-defined]
        cloud_weight=synthesis.cloud_weights(usable, bands, grid),
        half_window=half_window,
    )


def robust_factor(
    blue: np.ndarray, averaged: np.ndarray, k: float, floor: float = ROBUST_SIGMA_FLOOR
) -> np.ndarray:
    """Per view and pixel, `exp(-(z - k))` where `z = (blue - median) / sigma > k`, else 1.

    The median and sigma (1.4826 MAD, at least `floor`) are those of the views `averaged` at the
    pixel: a view much brighter in blue than the pixel's typical clear view (a missed thin
    cloud, haze, smoke) counts less, and the more the further out it lies. Unlike the haze
    weight, a pixel whose views are all alike loses nothing, whatever its darkest view. With
    one or two views z never exceeds 0.68, so the test only acts from three views on."""
    values = np.where(averaged & np.isfinite(blue), blue, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without views: NaN, no weight
        median = np.nanmedian(values, axis=0)
        mad = np.nanmedian(np.abs(values - median[np.newaxis]), axis=0)
    sigma = np.maximum(MAD_TO_SIGMA * np.nan_to_num(mad, nan=0.0), floor)
    z = (values - median[np.newaxis]) / sigma[np.newaxis]
    excess = np.clip(np.nan_to_num(z, nan=0.0) - k, 0.0, None)
    return np.exp(-excess).astype(np.float32)


def wasp(inputs: WaspInputs, options: WaspOptions) -> dict[str, np.ndarray]:
    """The synthesis of the group's bands (`synthesize_group`'s FRC, before rounding to DN),
    with the weights `options` asks for."""
    state = inputs.state
    choice = synthesis.choose(state, inputs.blue)
    if options.date:
        dated = [synthesis.date_weight(float(d), inputs.half_window) for d in inputs.days]
    else:
        dated = [1.0] * len(inputs.days)
    static = np.asarray(dated, np.float32) * inputs.sensor_weights
    weights = synthesis.aot_weight(inputs.aot) * static[:, None, None]
    if options.cloud:
        weights = weights * inputs.cloud_weight
    base = np.where(choice.clear_land, weights, np.float32(0))
    if options.robust_k is not None:
        base = base * robust_factor(inputs.blue, choice.clear_land, options.robust_k)
    excess = synthesis.blue_excess(inputs.blue, state.clear)  # type: ignore[attr-defined]
    out = {}
    for band, stack in inputs.reflectance.items():
        band_scale = synthesis.band_haze_scale(band, options.haze_scale)
        w = base if band_scale <= 0 else base * np.exp(excess * np.float32(-1 / band_scale))
        total = w.sum(axis=0, dtype=np.float32)
        mean = synthesis.weighted_mean(stack, choice.clear_land, w, total)
        out[band] = np.where(np.isnan(mean), synthesis.take(stack, choice.fallback), mean)
    return out
