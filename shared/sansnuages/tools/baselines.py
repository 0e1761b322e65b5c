"""Other ways to composite a month, to measure the synthesis against (bench/quality.py).

Each is the usual recipe of its community, run on exactly the inputs the synthesis gets:
stacks (n_obs, h, w) of reflectance per band (NaN where missing), the `clear` mask the
synthesis uses (CLM bit 0 unset, EDG == 0), and acquisition days relative to the 15th. Each
returns band -> (h, w) composite, NaN where it has nothing to give.

- `clear_median`: per-band median of the clear observations (Earth Engine's usual recipe);
- `best_available_pixel`: FORCE's parametric scoring (day of year, distance to the next
  cloud with a 3 km sigmoid, haze from `blue - 0.5 * red`), the best clear observation wins;
- `geometric_median`: the spectral geometric median of the clear observations (Weiszfeld
  iterations, as odc-algo's `geomedian`);
- `minimum_blue`: the clear observation with the lowest blue;
- `most_recent_clear`: the latest clear observation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

Stacks = Mapping[str, np.ndarray]

FORCE_DOY_SIGMA_DAYS = 20.0
FORCE_CLOUD_DISTANCE_M = 3000.0
FORCE_HAZE_MAX = 0.08
FORCE_WEIGHTS = {"doy": 1.0, "cloud": 0.4, "haze": 0.3}
"""FORCE's SCORE_WEIGHT defaults for the scores used here (year, correlation and view
zenith have weight 0 by default)."""


def _usable(stacks: Stacks, clear: np.ndarray) -> np.ndarray:
    finite = np.logical_and.reduce([np.isfinite(s) for s in stacks.values()])
    return np.asarray(clear & finite)


def pick(stacks: Stacks, index: np.ndarray) -> dict[str, np.ndarray]:
    """Each band's value of the observation `index` (h, w) picks, NaN where index is -1."""
    out = {}
    for band, stack in stacks.items():
        chosen = np.take_along_axis(stack, np.clip(index, 0, None)[np.newaxis], axis=0)[0]
        out[band] = np.where(index >= 0, chosen, np.nan).astype(np.float32)
    return out


def _best(score: np.ndarray, usable: np.ndarray) -> np.ndarray:
    masked = np.where(usable, score, -np.inf)
    return np.where(usable.any(axis=0), masked.argmax(axis=0), -1)


def clear_median(stacks: Stacks, clear: np.ndarray) -> dict[str, np.ndarray]:
    usable = _usable(stacks, clear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels give NaN, as wanted
        return {
            band: np.nanmedian(np.where(usable, stack, np.nan), axis=0).astype(np.float32)
            for band, stack in stacks.items()
        }


def minimum_blue(stacks: Stacks, clear: np.ndarray, blue: str = "B2") -> dict[str, np.ndarray]:
    usable = _usable(stacks, clear)
    return pick(stacks, _best(-np.nan_to_num(stacks[blue], nan=np.inf), usable))


def most_recent_clear(stacks: Stacks, clear: np.ndarray, days: np.ndarray) -> dict[str, np.ndarray]:
    usable = _usable(stacks, clear)
    score = np.broadcast_to(np.asarray(days, np.float64)[:, None, None], usable.shape)
    return pick(stacks, _best(score, usable))


def distance_to_mask(mask: np.ndarray, pixel_m: float) -> np.ndarray:
    """Chamfer (1, sqrt 2) distance in metres from every pixel to the nearest True of `mask`
    (infinite where there is none), in two sweeps whose inner loop along a row is a running
    minimum, so numpy does the work."""
    h, w = mask.shape
    big = float(h + w) * 2
    dist = np.where(mask, 0.0, big)
    cols = np.arange(w, dtype=np.float64)
    diagonal = math.sqrt(2.0)

    def sweep_row(row: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        candidate = row.copy()
        if previous is not None:
            candidate = np.minimum(candidate, previous + 1.0)
            candidate[1:] = np.minimum(candidate[1:], previous[:-1] + diagonal)
            candidate[:-1] = np.minimum(candidate[:-1], previous[1:] + diagonal)
        forward = np.minimum.accumulate(candidate - cols) + cols
        backward = (np.minimum.accumulate((candidate + cols)[::-1]) - cols[::-1])[::-1]
        return np.minimum(forward, backward)

    for order in (range(h), range(h - 1, -1, -1)):
        previous = None
        for i in order:
            dist[i] = sweep_row(dist[i], previous)
            previous = dist[i]
    return np.where(dist >= big, np.inf, dist * pixel_m)


def best_available_pixel(
    stacks: Stacks,
    clear: np.ndarray,
    valid: np.ndarray,
    days: np.ndarray,
    pixel_m: float,
    blue: str = "B2",
    red: str = "B4",
) -> dict[str, np.ndarray]:
    """FORCE-style: per observation a score, the clear observation with the best one wins."""
    usable = _usable(stacks, clear)
    d = np.asarray(days, np.float64)[:, None, None]
    s_doy = np.exp(-0.5 * (d / FORCE_DOY_SIGMA_DAYS) ** 2)
    not_clear = valid & ~clear
    distance = np.stack([distance_to_mask(m, pixel_m) for m in not_clear])
    half = FORCE_CLOUD_DISTANCE_M / 2
    with np.errstate(over="ignore"):
        s_cloud = 1.0 / (1.0 + np.exp(-10.0 / FORCE_CLOUD_DISTANCE_M * (distance - half)))
        haze = np.nan_to_num(stacks[blue] - 0.5 * stacks[red], nan=1.0)
        s_haze = 1.0 / (1.0 + np.exp(10.0 / FORCE_HAZE_MAX * (haze - FORCE_HAZE_MAX / 2)))
    score = (
        FORCE_WEIGHTS["doy"] * s_doy
        + FORCE_WEIGHTS["cloud"] * s_cloud
        + FORCE_WEIGHTS["haze"] * s_haze
    )
    return pick(stacks, _best(score, usable))


def geometric_median(
    stacks: Stacks, clear: np.ndarray, iterations: int = 30, eps: float = 1e-7
) -> dict[str, np.ndarray]:
    """Weiszfeld's iterations per pixel over the clear observations, all bands at once."""
    bands = list(stacks)
    usable = _usable(stacks, clear)
    data = np.stack([np.where(usable, stacks[b], 0.0) for b in bands]).astype(np.float64)
    weight = usable.astype(np.float64)
    count = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = (data * weight).sum(axis=1) / count
        for _ in range(iterations):
            distance = np.sqrt(((data - estimate[:, None]) ** 2).sum(axis=0))
            inverse = weight / np.maximum(distance, eps)
            estimate = (data * inverse).sum(axis=1) / inverse.sum(axis=0)
    result = np.where(count > 0, estimate, np.nan).astype(np.float32)
    return {band: result[i] for i, band in enumerate(bands)}
