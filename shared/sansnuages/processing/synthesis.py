"""Level-3A weighted-average synthesis of one tile and one resolution group (WASP method).

For each pixel, the clear observations of the window (CLM bit 0 unset, EDG == 0, reflectance
present) are averaged with weights from cloud distance, aerosol optical thickness, date and
sensor (FORMATS.md section 2). Where no observation is clear: the first snow or water
observation; else the cloudy observation with the lowest blue reflectance; else no data.

Inputs are plain raster references, not STAC: the caller maps Items (and Landsat-8 bands onto
their Sentinel-2 twins) to `Observation`s. Inputs are read onto the output grid window by
window, so memory stays bounded whatever the tile size: a raster already on the grid is read
directly; another one (Landsat-8 at 30 m, the 10 m blue for the 20 m group) has the source
window under the output window read once and warped in memory by GDAL's warper, which gives
the pixels a `WarpedVRT` would give at a quarter of its cost. Observations are read by a few
threads (reads wait on the network, and GDAL releases the GIL), the next window while the
current one is computed. The pure array functions at the top carry the method and are
unit-tested on tiny arrays; `synthesize_group` only adds the reading and writing around them.
"""

from __future__ import annotations

import contextlib
import math
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeAlias, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window

from sansnuages.errors import NoInputs
from sansnuages.formats.bands import SENTINEL2_BANDS
from sansnuages.raster import cog, resample
from sansnuages.raster.brdf import NadirNormalisation
from sansnuages.raster.thread_env import in_thread_env

# --- constants of the method (WASP v1.0 defaults) ----------------------------------------------

AOT_MAX = 0.8
AOT_MIN_WEIGHT = 0.33
DATE_MIN_WEIGHT = 0.5
SENTINEL2_WEIGHT = 1.0
LANDSAT8_WEIGHT = 0.33
CLOUD_CELL_M = 240.0
"""Cloud masks are reduced to cells of this size before blurring (WASP's coarse grid)."""
CLOUD_SIGMAS_CELLS = (2.0, 10.0)
"""Gaussian blurs of the coarse cloud fraction: 480 m and 2.4 km."""
HAZE_BLUE_SCALE = 0.02
"""Blue reflectance above the darkest clear view of a pixel at which an observation's weight
in the blue band falls by e (`haze_weight`), when the haze weight is asked for."""
DEFAULT_HAZE_SCALE = 0.0
"""`synthesize_group`'s haze scale by default: 0, the haze weight off (WASP v1.0 weights).
On real Landsat series with the producer's masks the haze weight was never significantly
better than WASP's own weights in more than one period, and significantly worse in one
(README, "Synthesis quality on real imagery"): the simulator's residual haze, which it
removes, is not what real masks let through."""
ANGSTROM_EXPONENT = 1.3
"""Aerosol scattering falls with wavelength as lambda^-1.3 (a typical continental Angstrom
exponent): the haze weight of a band is milder in proportion (`band_haze_scale`)."""
BLUE_UM = 0.490
CLOUD_MIN_WEIGHT = 0.01
"""Floor of W_cld: a clear pixel deep inside a cloudy area still counts, just very little,
rather than vanishing from the average (and the output) altogether."""

SYNTHESIS_GDAL_OPTIONS: dict[str, int] = {
    "GDAL_CACHEMAX": 32 * 2**20,
    "CPL_VSIL_CURL_CACHE_SIZE": 128 * 2**20,
    "GDAL_INGESTED_BYTES_AT_OPEN": 64 * 2**10,
}
"""GDAL settings of a synthesis (rasterio hands integers to GDAL as bytes, not megabytes).

- `GDAL_CACHEMAX`, the decoded block cache: each input block is read once per pass, so a big
  cache buys nothing (at 1098 px, 256 MB cost 246 MB more peak memory for the same CPU time as
  a cache of a few bytes); its default (5 % of RAM) would grow with the machine, not the work.
- `CPL_VSIL_CURL_CACHE_SIZE`, the cache of bytes downloaded from S3 (16 MB by default): reading
  a file's blocks in order, GDAL downloads ahead (up to 2 MB), but a window visits some 80
  files in turn, and 16 MB could not keep their read-ahead until the next window came back to
  them. With 128 MB, at 2748 px, the reads come in fewer, larger requests (the local S3
  server spent 9 s of CPU serving them instead of 17) for about 140 MB more peak memory.
- `GDAL_INGESTED_BYTES_AT_OPEN`, the bytes of a file's first GET (16 kB by default): a small
  tile's COG (a few tens of kB at 610 m) then comes whole with its header, one request where
  it took two; a full tile's header and tile index fit in it too, for 48 kB more a file.
"""
READ_THREADS = 4
"""Threads reading observations at once: reads mostly wait on S3, so a few threads overlap the
waits (and the decoding, which GDAL does without the GIL) even on one vCPU."""

FLAG_NO_DATA, FLAG_CLOUD, FLAG_SNOW, FLAG_WATER, FLAG_CLEAR = 0, 1, 2, 3, 4
FLAG_NAMES = {
    FLAG_NO_DATA: "no_data",
    FLAG_CLOUD: "cloud",
    FLAG_SNOW: "snow",
    FLAG_WATER: "water",
    FLAG_CLEAR: "clear",
}
FRC_SCALE = 10000
FRC_NODATA = -10000
DTS_NODATA = -32768
CLM_NOT_CLEAR_BIT = 0
MG2_WATER_BIT = 0
MG2_SNOW_BIT = 2
_REFLECTANCE_NODATA_DEFAULT = -10000.0
_T = TypeVar("_T")
_R = TypeVar("_R")


# --- inputs and outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterRef:
    path: str
    band: int = 1
    scale: float = 1.0
    """Physical value = DN * scale (reflectance 1e-4 for Sentinel-2; AOT 1/200)."""
    nodata: float | None = None
    """Overrides the file's own nodata value when set."""


@dataclass(frozen=True)
class Observation:
    product_id: str
    platform: str
    acquired: datetime
    sensor_weight: float
    """SENTINEL2_WEIGHT or LANDSAT8_WEIGHT."""
    reflectance: dict[str, RasterRef]
    """Sentinel-2 band name -> FRE raster; Landsat-8 bands already mapped (B8 <- B5 ...)."""
    cloud: dict[str, RasterRef]
    """Band -> CLM raster of that band's group (bit 0 set = not clear)."""
    edge: dict[str, RasterRef]
    """Band -> EDG raster (1 = outside the image)."""
    aot: dict[str, RasterRef]
    """Band -> ATB raster, band 2, with the AOT scale."""
    water_snow: dict[str, RasterRef] | None = None
    """Band -> MG2 raster (bit 0 water, bit 2 snow); optional."""
    nadir: NadirNormalisation | None = None
    """When set, reflectance is brought to nadir view (BRDF c-factor) as it is read."""


@dataclass(frozen=True)
class OutputGrid:
    crs: str
    transform: Affine
    width: int
    height: int


@dataclass(frozen=True)
class GroupOutputs:
    """Destination paths (local or /vsis3/) of one group's layers."""

    frc: Mapping[str, str]
    """Band -> surface reflectance composite (int16, DN/10000, nodata -10000)."""
    flags: str
    weights: str
    dates: str


@dataclass(frozen=True)
class GroupStats:
    pixel_counts: dict[str, int]
    """Pixels per flag class: no_data, cloud, snow, water, clear (of the main band set)."""
    contributing: tuple[str, ...]
    """Products that gave at least one output pixel, in acquisition order."""
    band_subsets: tuple[tuple[str, ...], ...] = ()
    """Bands that got their own FLG / WGT / DTS layers (at `subset_path`) because fewer
    sensors observe them (Sentinel-2 B5 B6 B7 have no Landsat-8 twin)."""


def subset_path(path: str, bands: Sequence[str]) -> str:
    """Where the FLG / WGT / DTS layer of a band subset goes: `X_FLG_R2.tif` ->
    `X_FLG_R2_B5B6B7.tif`."""
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}_{''.join(bands)}{dot}{suffix}" if dot else f"{path}_{''.join(bands)}"


@dataclass(frozen=True)
class BandSet:
    """Bands observed by the same observations: they share one synthesis decision."""

    bands: tuple[str, ...]
    observations: tuple[int, ...]
    """Indices of the observations that carry these bands."""


def band_sets(observations: Sequence[Observation], bands: Sequence[str]) -> list[BandSet]:
    """Split a group's bands by which observations have them; the set observed by the most
    observations comes first (it gives the group's FLG / WGT / DTS layers)."""
    by_users: dict[tuple[int, ...], list[str]] = {}
    for band in bands:
        users = tuple(i for i, obs in enumerate(observations) if band in obs.reflectance)
        by_users.setdefault(users, []).append(band)
    sets = [BandSet(tuple(b), users) for users, b in by_users.items() if users]
    return sorted(sets, key=lambda s: (-len(s.observations), bands.index(s.bands[0])))


# --- the method on arrays ----------------------------------------------------------------------


def aot_weight(aot: np.ndarray) -> np.ndarray:
    """`0.33 + 0.67 * (1 - AOT / 0.8)` below AOT 0.8, else 0.33; unknown AOT (NaN) gets 0.33."""
    aot = np.asarray(aot, dtype=np.float32)
    hazy = ~(aot < AOT_MAX)  # NaN lands here too: an unknown atmosphere is trusted least
    weight = AOT_MIN_WEIGHT + (1.0 - AOT_MIN_WEIGHT) * (1.0 - np.clip(aot, 0.0, None) / AOT_MAX)
    return np.where(hazy, AOT_MIN_WEIGHT, weight).astype(np.float32)


def blue_excess(blue: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Blue reflectance above the darkest clear view of each pixel, (n_obs, h, w), >= 0 (0 where
    unknown)."""
    if blue.shape[0] == 0:
        return np.zeros(blue.shape, dtype=np.float32)
    usable = clear & np.isfinite(blue)
    darkest = np.min(np.where(usable, blue, np.inf), axis=0)
    excess = np.clip(blue - darkest[np.newaxis], 0.0, None)
    return np.nan_to_num(excess, nan=0.0, posinf=0.0).astype(np.float32)


def band_haze_scale(band: str, scale: float) -> float:
    """The haze weight's scale for `band`: the blue scale stretched by (lambda / blue)^1.3, since
    a given excess in blue means that much less haze at longer wavelengths."""
    info = SENTINEL2_BANDS.get(band)
    if info is None:
        return scale
    return float(scale * (info.center_wavelength / BLUE_UM) ** ANGSTROM_EXPONENT)


def haze_weight(blue: np.ndarray, clear: np.ndarray, scale: float | None = None) -> np.ndarray:
    """`exp(-(blue - darkest clear blue of the pixel) / scale)`, 1 where blue is unknown.

    Residual haze, thin cloud edges the mask misses and cloud adjacency all brighten the blue
    band; the darkest clear view of a pixel is the least contaminated (the minimum-blue rule's
    insight), so views much brighter than it count less, instead of being averaged in at
    full weight. Arrays are (n_obs, h, w).
    """
    scale = HAZE_BLUE_SCALE if scale is None else scale
    if scale <= 0 or blue.shape[0] == 0:
        return np.ones(blue.shape, dtype=np.float32)
    return np.exp(-blue_excess(blue, clear) / scale).astype(np.float32)


def date_weight(days_from_centre: float, half_window_days: int) -> float:
    """`1 - |dt| / half_window * (1 - 0.5)`: 1 at the centre, 0.5 at the window's edge.

    WASP divides integers here, which makes the weight 1 everywhere but at the very edge;
    this is the linear formula it intends. Outside the window the weight is 0.
    """
    if half_window_days <= 0:
        raise ValueError("half_window_days must be positive")
    distance = abs(days_from_centre)
    if distance > half_window_days:
        return 0.0
    return 1.0 - distance / half_window_days * (1.0 - DATE_MIN_WEIGHT)


def weighted_composite(
    reflectance: np.ndarray, clear: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean over observations (axis 0) of the clear values, and the sum of weights.

    Arrays are (n_obs, h, w); weights are >= 0. Returns (mean, weight_sum), each (h, w)
    float32; the mean is NaN where no observation is clear (or every clear weight is 0).
    """
    use = clear & np.isfinite(reflectance)
    w = np.where(use, weights, np.float32(0)).astype(np.float32, copy=False)
    total = w.sum(axis=0, dtype=np.float32)
    return weighted_mean(reflectance, use, w, total), total


def weighted_mean(
    values: np.ndarray, use: np.ndarray, weights: np.ndarray, total: np.ndarray
) -> np.ndarray:
    """`sum(weights * values) / total` over axis 0 where `use`, NaN where `total` is 0.

    `weights` must be 0 wherever `use` is False and sum to `total`: the synthesis masks each
    band's weights once and reuses them for the band's mean, its WGT and its DTS."""
    product = np.where(use, values, np.float32(0))
    product *= weights  # float32: sums of a few dozen terms lose < 1e-6
    weighted = product.sum(axis=0, dtype=np.float32)
    return _ratio(weighted, total)


def _ratio(numerator: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, numerator / np.where(total > 0, total, np.float32(1)), np.nan)
    return ratio.astype(np.float32, copy=False)


def first_index(candidates: np.ndarray) -> np.ndarray:
    """Index along axis 0 of the first True of each pixel, -1 where there is none."""
    if candidates.shape[0] == 0:
        return np.full(candidates.shape[1:], -1, dtype=np.int32)
    found = candidates.any(axis=0)
    return np.where(found, candidates.argmax(axis=0), -1).astype(np.int32)


def lowest_index(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index along axis 0 of the lowest candidate value of each pixel, -1 where none."""
    if values.shape[0] == 0:
        return np.full(values.shape[1:], -1, dtype=np.int32)
    masked = np.where(candidates & np.isfinite(values), values, np.inf)
    found = np.isfinite(masked).any(axis=0)
    return np.where(found, masked.argmin(axis=0), -1).astype(np.int32)


def take(stack: np.ndarray, index: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """`stack[index[y, x], y, x]`, or `fill` where index is -1."""
    if stack.shape[0] == 0:
        return np.full(index.shape, fill, dtype=np.float32)
    picked = np.take_along_axis(stack, np.clip(index, 0, None)[np.newaxis], axis=0)[0]
    return np.where(index >= 0, picked, fill).astype(np.float32)


@dataclass(frozen=True)
class PixelState:
    """Per observation and pixel, what the masks say (all arrays (n_obs, h, w) bool)."""

    valid: np.ndarray
    """Inside the image (EDG == 0) with every band of the group present."""
    clear: np.ndarray
    """Valid and CLM bit 0 unset."""
    water: np.ndarray
    snow: np.ndarray


@dataclass(frozen=True)
class Choice:
    """The synthesis decision of each pixel of a window."""

    flags: np.ndarray
    """uint8 (h, w), FLAG_* values."""
    clear_land: np.ndarray
    """(n_obs, h, w) bool: the observations averaged."""
    fallback: np.ndarray
    """(h, w) int: observation copied where nothing is averaged, -1 otherwise."""


def choose(state: PixelState, blue: np.ndarray) -> Choice:
    """Apply WASP's priority: clear land, else first snow/water, else lowest blue, else none.

    Observations must be in acquisition order ("first" is the earliest). `blue` is the blue
    reflectance (n_obs, h, w), NaN where missing.
    """
    clear_land = state.clear & ~state.water & ~state.snow
    has_land = clear_land.any(axis=0)
    wet = first_index(state.clear & (state.water | state.snow))
    cloudy = lowest_index(blue, state.valid)
    fallback = np.where(has_land, -1, np.where(wet >= 0, wet, cloudy)).astype(np.int32)
    snow_pick = take(state.snow.astype(np.float32), wet, fill=0.0) > 0
    flags = np.full(has_land.shape, FLAG_NO_DATA, dtype=np.uint8)
    flags[(fallback >= 0) & (wet < 0)] = FLAG_CLOUD
    flags[~has_land & (wet >= 0)] = np.where(snow_pick, FLAG_SNOW, FLAG_WATER)[
        ~has_land & (wet >= 0)
    ]
    flags[has_land] = FLAG_CLEAR
    return Choice(flags=flags, clear_land=clear_land, fallback=fallback)


# --- cloud-distance weight ---------------------------------------------------------------------


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges extended), numpy only: the coarse grids are small."""
    radius = max(1, int(math.ceil(4 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = np.zeros(out.shape)
        for tap, k in enumerate(kernel):  # one array operation per tap, not one per row
            out += k * (padded[tap : tap + length] if axis == 0 else padded[:, tap : tap + length])
    return out.astype(np.float32)


def cloud_weight_coarse(cloud_fraction: np.ndarray, cell_m: float = CLOUD_CELL_M) -> np.ndarray:
    """`W_cld = (1 - Gs) * (1 - Gl)` on the coarse grid (Gaussians of 480 m and 2.4 km)."""
    scale = CLOUD_CELL_M / cell_m
    small, large = (gaussian_blur(cloud_fraction, s * scale) for s in CLOUD_SIGMAS_CELLS)
    weight = (1.0 - small) * (1.0 - large)
    return np.clip(weight, CLOUD_MIN_WEIGHT, 1.0).astype(np.float32)


def upsample(coarse: np.ndarray, factor: int, rows: slice, cols: slice) -> np.ndarray:
    """Bilinear values of a coarse grid (cells of `factor` pixels) at the centres of a window.

    `coarse` may carry leading axes (one grid per observation): all are interpolated at once,
    along columns on the few coarse rows, then along rows.
    """

    def axis(s: slice, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(s.start, s.stop, dtype=np.float64) + 0.5) / factor - 0.5
        pos = np.clip(pos, 0, n - 1)
        low = np.floor(pos).astype(np.intp)
        return low, np.minimum(low + 1, n - 1), pos - low

    y0, y1, fy = axis(rows, coarse.shape[-2])
    x0, x1, fx = axis(cols, coarse.shape[-1])
    used = slice(int(y0.min()), int(y1.max()) + 1)  # the coarse rows the window needs
    grids = coarse.reshape(-1, *coarse.shape[-2:])
    out = np.empty((grids.shape[0], y0.size, x0.size), dtype=np.float32)
    fx, fy = fx.astype(np.float32), fy.astype(np.float32)[:, None]
    for grid, values in zip(grids, out, strict=True):
        band = grid[used].astype(np.float32)
        across = band[:, x0] * (1 - fx) + band[:, x1] * fx
        np.multiply(across[y0 - used.start], 1 - fy, out=values)
        values += across[y1 - used.start] * fy
    return out.reshape(*coarse.shape[:-2], y0.size, x0.size)


# --- reading onto the output grid --------------------------------------------------------------


Readable: TypeAlias = DatasetReader | WarpedVRT


class GridReader:
    """Reads raster references onto the output grid by windows; keeps datasets open.

    A raster on the grid is read directly. Another one is warped by a `WarpedVRT`, or, with
    `warp_by_window` and when it shares the grid's CRS, by `WindowWarp` (the same GDAL warper
    on the source window under each output window: a quarter of the VRT's cost). Reads may
    come from several threads: each dataset is used by one thread at a time. `masks` keeps
    masks read by one pass for the next (`MaskStore`).
    """

    def __init__(
        self,
        grid: OutputGrid,
        stack: contextlib.ExitStack,
        warp_by_window: bool = False,
        datasets: OpenDatasets | None = None,
    ) -> None:
        self._grid = grid
        self._stack = stack
        self._warp_by_window = warp_by_window
        self._sources = datasets if datasets is not None else OpenDatasets(stack)
        self._views: dict[
            tuple[str, str, float | None], tuple[Readable | WindowWarp, float | None]
        ] = {}
        self._lock = threading.Lock()
        self._path_locks: dict[str, threading.Lock] = {}
        self.masks = MaskStore()

    @property
    def grid(self) -> OutputGrid:
        return self._grid

    def read(
        self, ref: RasterRef, window: Window, resampling: Resampling, fill: float | None
    ) -> tuple[np.ndarray, float | None]:
        """Raw values of `ref` in `window` and its nodata value.

        Outside the source image, pixels hold the nodata value, or `fill` when the source has
        none (masks: EDG reads 1 there, "no data").
        """
        with self._path_lock(ref.path):
            view, nodata = self._view(ref, resampling, fill)
            return view.read(ref.band, window=window), nodata

    def open(
        self, paths: Iterator[str] | Sequence[str], pool: ThreadPoolExecutor | None = None
    ) -> None:
        """Open datasets ahead, rather than lazily in the middle of a window's reads: in the
        calling thread, or a few at a time in `pool` with the caller's GDAL options (opening
        a `/vsis3/` file waits on its first GET; a tile has a few hundred of them)."""

        def one(path: str) -> None:
            with self._path_lock(path):
                self._source(path)

        list(pool.map(in_thread_env(one), paths) if pool else map(one, paths))

    def _path_lock(self, path: str) -> threading.Lock:
        with self._lock:
            return self._path_locks.setdefault(path, threading.Lock())

    def _source(self, path: str) -> DatasetReader:
        return self._sources.get(path)

    def _view(
        self, ref: RasterRef, resampling: Resampling, fill: float | None
    ) -> tuple[Readable | WindowWarp, float | None]:
        """The source itself when it is on the grid already (no warping cost), else a warp."""
        key = (ref.path, resampling.name, ref.nodata)
        if key not in self._views:
            src = self._source(ref.path)
            src_nodata = ref.nodata if ref.nodata is not None else src.nodata
            nodata = src_nodata if src_nodata is not None else fill
            view: Readable | WindowWarp
            if self._on_grid(src):
                view, nodata = src, src_nodata
            elif self._warp_by_window and src.crs == rasterio.crs.CRS.from_user_input(
                self._grid.crs
            ):
                view = WindowWarp(src, self._grid, resampling, src_nodata, nodata)
            else:
                view = self._stack.enter_context(
                    WarpedVRT(
                        src,
                        crs=self._grid.crs,
                        transform=self._grid.transform,
                        width=self._grid.width,
                        height=self._grid.height,
                        resampling=resampling,
                        src_nodata=src_nodata,
                        nodata=nodata,
                    )
                )
            self._views[key] = (view, nodata)
        return self._views[key]

    def _on_grid(self, src: DatasetReader) -> bool:
        grid = self._grid
        return bool(
            src.crs == rasterio.crs.CRS.from_user_input(grid.crs)
            and src.transform.almost_equals(grid.transform)
            and (src.width, src.height) == (grid.width, grid.height)
        )


class OpenDatasets:
    """Datasets open by path, closed with `stack`; several `GridReader`s may share them: the
    two groups of a tile read the same Landsat-8 masks and the same 10 m blue band, and each
    open parses the file's header again (one in eight of a small tile's 195 opens were such
    repeats). A dataset is used by one thread at a time (readers lock per path; groups take
    turns)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._open: dict[str, DatasetReader] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> DatasetReader:
        """The dataset of `path`, opened on first use (callers lock per path)."""
        found = self._open.get(path)
        if found is None:
            dataset = rasterio.open(path)
            with self._lock:
                found = self._open[path] = self._stack.enter_context(dataset)
        return found


@dataclass(frozen=True)
class WindowWarp:
    """A raster in the grid's CRS but at another resolution or origin, warped window by window:
    the source pixels under an output window (plus the resampling kernel's reach) are read
    once and resampled in memory by `resample.resample`, which gives the values of GDAL's
    warper (a `WarpedVRT`) in a tenth of its time (other resamplings go through the warper)."""

    src: DatasetReader
    grid: OutputGrid
    resampling: Resampling
    src_nodata: float | None
    nodata: float | None
    blocks: SourceBlocks = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", SourceBlocks(self.src))

    def read(self, band: int, window: Window) -> np.ndarray:
        shape = (int(window.height), int(window.width))
        dtype = self.src.dtypes[band - 1]
        out = np.full(shape, 0 if self.nodata is None else self.nodata, dtype=dtype)
        source = self._source_window(window)
        if source is None:
            return out
        data = self.blocks.read(band, source)
        src_transform = self.src.transform @ Affine.translation(source.col_off, source.row_off)
        dst_transform = self.grid.transform @ Affine.translation(window.col_off, window.row_off)
        if self.resampling in resample.SUPPORTED:
            return resample.resample(
                data, src_transform, dst_transform, shape, self.resampling,
                self.src_nodata, out.flat[0],
            )  # fmt: skip
        reproject(
            data,
            out,
            src_transform=src_transform,
            src_crs=self.src.crs,
            src_nodata=self.src_nodata,
            dst_transform=dst_transform,
            dst_crs=self.src.crs,
            dst_nodata=self.nodata,
            resampling=self.resampling,
        )
        return out

    def _source_window(self, window: Window) -> Window | None:
        """Source pixels under `window`, widened by the kernel's reach, clipped to the image."""
        dst, src = self.grid.transform, self.src.transform  # north up, as every grid here
        left, top = dst.c + window.col_off * dst.a, dst.f + window.row_off * dst.e
        right, bottom = left + window.width * dst.a, top + window.height * dst.e
        cols = sorted(((left - src.c) / src.a, (right - src.c) / src.a))
        rows = sorted(((top - src.f) / src.e, (bottom - src.f) / src.e))
        reach = 2 * math.ceil(max(1.0, abs(self.grid.transform.a / src.a))) + 1  # kernel, scaled
        col0 = max(0, math.floor(cols[0]) - reach)
        row0 = max(0, math.floor(rows[0]) - reach)
        col1 = min(self.src.width, math.ceil(cols[1]) + reach)
        row1 = min(self.src.height, math.ceil(rows[1]) + reach)
        if col1 <= col0 or row1 <= row0:
            return None
        return Window(col0, row0, col1 - col0, row1 - row0)


class SourceBlocks:
    """Reads windows of a source through its blocks, keeping the last two columns of blocks
    a read touched for the next read (one thread at a time: `GridReader` locks per path).

    Output windows go left to right, and a source at another resolution shares blocks between
    neighbours: a 512 px block of Landsat-8 lies under three 10 m windows of a row, and the
    resampling kernel's margin of a window of the 10 m blue on the 20 m grid reaches a pixel
    into the next blocks. Read directly, each window decoded all of them again (GDAL's block
    cache, which every input passes through, does not keep them that long)."""

    KEPT_COLUMNS = 2
    MIN_BLOCK_ROWS = 64
    """Sources in strips of fewer rows (not tiled) are read directly: a block a row would mean a
    read a row."""

    def __init__(self, src: DatasetReader) -> None:
        self._src = src
        self._kept: dict[int, dict[tuple[int, int], np.ndarray]] = {}

    def read(self, band: int, window: Window) -> np.ndarray:
        """`src.read(band, window=window)` for a window inside the image."""
        block_h, block_w = self._src.block_shapes[band - 1]
        if block_h < self.MIN_BLOCK_ROWS:
            return self._src.read(band, window=window)
        row0, col0 = int(window.row_off), int(window.col_off)
        row1, col1 = row0 + int(window.height), col0 + int(window.width)
        out = np.empty((row1 - row0, col1 - col0), dtype=self._src.dtypes[band - 1])
        kept, last = self._kept.get(band, {}), (col1 - 1) // block_w
        keep: dict[tuple[int, int], np.ndarray] = {}
        for r in range(row0 // block_h, (row1 - 1) // block_h + 1):
            for c in range(col0 // block_w, last + 1):
                block = kept.get((r, c))
                if block is None:
                    block = self._block(band, r * block_h, c * block_w, block_h, block_w)
                if c > last - self.KEPT_COLUMNS:
                    keep[(r, c)] = block
                top, left = max(row0, r * block_h), max(col0, c * block_w)
                bottom = min(row1, r * block_h + block.shape[0])
                right = min(col1, c * block_w + block.shape[1])
                out[top - row0 : bottom - row0, left - col0 : right - col0] = block[
                    top - r * block_h : bottom - r * block_h,
                    left - c * block_w : right - c * block_w,
                ]
        self._kept[band] = keep
        return out

    def _block(self, band: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        height, width = min(height, self._src.height - row), min(width, self._src.width - col)
        return self._src.read(band, window=Window(col, row, width, height))


class MaskStore:
    """What one pass read of an observation's EDG and CLM in a window (inside the image, CLM
    bit 0 set), packed to bits and compressed, for the next pass to take instead of reading
    the masks again: a full tile's masks of 15 dates hold a few tens of MB this way."""

    def __init__(self) -> None:
        self._packed: dict[tuple[object, ...], tuple[bytes, tuple[int, int]]] = {}

    def put(self, key: tuple[object, ...], inside: np.ndarray, cloudy: np.ndarray) -> None:
        bits = np.packbits(np.stack([inside, cloudy]))
        self._packed[key] = (zlib.compress(bits.tobytes(), 1), inside.shape)

    def take(self, key: tuple[object, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """The masks put under `key` (forgotten once taken), or None."""
        found = self._packed.pop(key, None)
        if found is None:
            return None
        blob, (height, width) = found
        bits = np.unpackbits(
            np.frombuffer(zlib.decompress(blob), np.uint8), count=2 * height * width
        )
        inside, cloudy = bits.reshape(2, height, width).astype(bool)
        return inside, cloudy

    def __len__(self) -> int:
        return len(self._packed)


@dataclass
class Stack:
    """What the reader gathered for one window (or a whole small grid, `read_stack`), ready
    for the array functions."""

    reflectance: dict[str, np.ndarray]
    """Band -> (n_obs, h, w) float32 reflectance, NaN where missing."""
    blue: np.ndarray
    aot: np.ndarray
    state: PixelState


def _bits(values: np.ndarray, bit: int) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.int64)
    return (values & (1 << bit)) != 0


def _reflectance(
    reader: GridReader,
    ref: RasterRef | None,
    window: Window,
    resampling: Resampling,
    out: np.ndarray,
) -> np.ndarray:
    """One band of one observation in `window`, into `out`: float32 reflectance, NaN where
    missing. Every reflectance the synthesis reads comes through here (a per-band correction
    goes here)."""
    if ref is None:
        out.fill(np.nan)
        return out
    raw, nodata = reader.read(ref, window, resampling, _REFLECTANCE_NODATA_DEFAULT)
    np.multiply(raw, np.float32(ref.scale), out=out, dtype=np.float32)
    if nodata is not None:
        out[raw == nodata] = np.nan
    return out


def _empty_stack(count: int, bands: Sequence[str], shape: tuple[int, int]) -> Stack:
    """A window's arrays for `count` observations, to be filled in place by the readers (no
    copies from per-observation arrays into stacks). The blue is the B2 stack when the group
    has B2."""
    size = (count, *shape)
    reflectance = {b: np.empty(size, np.float32) for b in bands}
    blue = reflectance["B2"] if "B2" in reflectance else np.empty(size, np.float32)
    state = PixelState(*(np.zeros(size, bool) for _ in range(4)))
    return Stack(reflectance, blue, np.empty(size, np.float32), state)


def _read_observation(
    reader: GridReader, obs: Observation, bands: Sequence[str], window: Window, stack: Stack, i: int
) -> None:
    """Reflectance and masks of one observation in one window into slot `i` of `stack` (bands
    it lacks are NaN); `clear` holds "not cloudy" until `_gather` combines it with `valid`."""
    present = [b for b in bands if b in obs.reflectance]
    first = present[0]
    bilinear, nearest = Resampling.bilinear, Resampling.nearest
    refl = {
        b: _reflectance(reader, obs.reflectance.get(b), window, bilinear, stack.reflectance[b][i])
        for b in bands
    }
    if obs.nadir is not None:
        offset = Affine.translation(window.col_off, window.row_off)
        for band, values in obs.nadir.apply(refl, reader.grid.transform @ offset).items():
            refl[band][...] = values
    if "B2" not in refl:
        blue_ref = obs.reflectance.get("B2", obs.reflectance[first])
        _reflectance(reader, blue_ref, window, bilinear, stack.blue[i])
    inside, cloudy = _masks(reader, obs, first, window)
    valid = stack.state.valid[i]
    valid[...] = inside
    for band in present:
        valid &= np.isfinite(refl[band])
    np.logical_not(cloudy, out=stack.state.clear[i])
    aot_ref = obs.aot[first]
    aot_raw, aot_nodata = reader.read(aot_ref, window, nearest, 0)
    aot = stack.aot[i]
    np.multiply(aot_raw, np.float32(aot_ref.scale), out=aot, dtype=np.float32)
    if aot_nodata is not None:
        aot[aot_raw == aot_nodata] = np.nan
    if obs.water_snow and first in obs.water_snow:
        mg2, _ = reader.read(obs.water_snow[first], window, nearest, 0)
        stack.state.water[i] = _bits(mg2, MG2_WATER_BIT)
        stack.state.snow[i] = _bits(mg2, MG2_SNOW_BIT)


def _mask_key(obs: Observation, band: str, window: Window) -> tuple[object, ...]:
    edge, cloud = obs.edge[band], obs.cloud[band]
    return (edge.path, edge.band, cloud.path, cloud.band, *window.flatten())


def _read_masks(
    reader: GridReader, obs: Observation, band: str, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """(inside the image: EDG == 0, CLM bit 0 set) of an observation's group in a window."""
    edge, _ = reader.read(obs.edge[band], window, Resampling.nearest, 1)
    clm, _ = reader.read(obs.cloud[band], window, Resampling.nearest, 1)
    return edge == 0, _bits(clm, CLM_NOT_CLEAR_BIT)


def _masks(
    reader: GridReader, obs: Observation, band: str, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """`_read_masks`, from what the cloud-distance pass kept when it did."""
    kept = reader.masks.take(_mask_key(obs, band, window))
    return kept if kept is not None else _read_masks(reader, obs, band, window)


def _gather(
    reader: GridReader,
    observations: Sequence[Observation],
    bands: Sequence[str],
    window: Window,
    pool: ThreadPoolExecutor | None = None,
) -> Stack:
    stack = _empty_stack(len(observations), bands, (int(window.height), int(window.width)))

    def one(i: int) -> None:
        _read_observation(reader, observations[i], bands, window, stack, i)

    indices = range(len(observations))
    list(pool.map(in_thread_env(one), indices) if pool else map(one, indices))
    _merge_pieces(observations, stack.state.valid)
    np.logical_and(stack.state.clear, stack.state.valid, out=stack.state.clear)
    return stack


def _merge_pieces(observations: Sequence[Observation], valid: np.ndarray) -> None:
    """Pieces of one datatake (same platform, same day) are one observation: where pieces
    overlap, the first keeps the pixel, so the day is neither counted twice nor dated twice."""
    covered: dict[tuple[str, date], np.ndarray] = {}
    for obs, piece in zip(observations, valid, strict=True):
        key = (obs.platform, obs.acquired.date())
        if key in covered:
            piece &= ~covered[key]
            covered[key] |= piece
        else:
            covered[key] = piece.copy()


def read_stack(
    observations: Sequence[Observation],
    bands: Sequence[str],
    grid: OutputGrid,
    window: Window | None = None,
) -> Stack:
    """Every observation of a window (default: the whole grid) on the output grid, as the
    synthesis sees it: for comparisons and tests on small grids, not for full tiles."""
    window = window or Window(0, 0, grid.width, grid.height)
    with contextlib.ExitStack() as stack:
        return _gather(GridReader(grid, stack, warp_by_window=True), observations, bands, window)


def cloud_weights(
    observations: Sequence[Observation],
    bands: Sequence[str],
    grid: OutputGrid,
    block_size: int = 512,
) -> np.ndarray:
    """W_cld of every observation on the whole (small) grid, (n_obs, h, w)."""
    with contextlib.ExitStack() as stack:
        coarse = _coarse_cloud_weights(
            GridReader(grid, stack, warp_by_window=True), observations, bands, grid, block_size
        )
    return _window_cloud_weights(coarse, grid, Window(0, 0, grid.width, grid.height))


# --- the cloud-distance pass -------------------------------------------------------------------


def _windows(grid: OutputGrid, block_size: int) -> Iterator[Window]:
    for row in range(0, grid.height, block_size):
        for col in range(0, grid.width, block_size):
            height = min(block_size, grid.height - row)
            width = min(block_size, grid.width - col)
            yield Window(col, row, width, height)


def _cloud_factor(grid: OutputGrid) -> int:
    return max(1, round(CLOUD_CELL_M / abs(grid.transform.a)))


def _coarse_cloud_weights(
    reader: GridReader,
    observations: Sequence[Observation],
    bands: Sequence[str],
    grid: OutputGrid,
    block_size: int,
    pool: ThreadPoolExecutor | None = None,
    keep: bool = False,
) -> list[np.ndarray]:
    """Per observation, W_cld on the coarse grid: the cloudy fraction of each 240 m cell
    (among pixels inside the image), blurred. Only masks are read; memory is a few coarse
    grids of about 460 x 460 cells per observation for a full tile. With `keep`, the masks
    read stay in `reader.masks` for the synthesis pass, which then reads them no more.
    """
    factor = _cloud_factor(grid)
    shape = (math.ceil(grid.height / factor), math.ceil(grid.width / factor))
    windows = [(window, *_cell_sums(window, factor)) for window in _windows(grid, block_size)]

    def one(obs: Observation) -> np.ndarray:
        first = next(b for b in bands if b in obs.reflectance)
        total, count = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        for window, cells, sums in windows:
            inside, cloudy = _read_masks(reader, obs, first, window)
            if keep:
                reader.masks.put(_mask_key(obs, first, window), inside, cloudy)
            total[cells] += sums(cloudy & inside)
            count[cells] += sums(inside)
        fraction = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        return cloud_weight_coarse(fraction, cell_m=factor * abs(grid.transform.a))

    return list(pool.map(in_thread_env(one), observations) if pool else map(one, observations))


def _cell_sums(
    window: Window, factor: int
) -> tuple[tuple[np.ndarray, ...], Callable[[np.ndarray], np.ndarray]]:
    """The coarse cells (of `factor` pixels) a window overlaps, as an index of the coarse grid,
    and a function summing a window's pixels per cell (cells cut by the window's edge get the
    part inside; the neighbouring window adds the rest)."""

    def starts(offset: float, length: float) -> tuple[np.ndarray, np.ndarray]:
        cells = np.arange(int(offset), int(offset + length)) // factor
        first = np.flatnonzero(np.diff(cells, prepend=-1))
        return first, cells[first]

    row_starts, rows = starts(window.row_off, window.height)
    col_starts, cols = starts(window.col_off, window.width)

    def sums(values: np.ndarray) -> np.ndarray:
        by_row = np.add.reduceat(values, row_starts, axis=0, dtype=np.int32)
        return np.add.reduceat(by_row, col_starts, axis=1)

    return np.ix_(rows, cols), sums


# --- the synthesis of one group ----------------------------------------------------------------


@dataclass
class _Tally:
    counts: dict[int, int] = field(default_factory=lambda: dict.fromkeys(FLAG_NAMES, 0))
    used: set[int] = field(default_factory=set)

    def add(self, choice: Choice, observations: Sequence[int], main: bool) -> None:
        if main:
            numbers = np.bincount(choice.flags.ravel(), minlength=len(FLAG_NAMES))
            for value, number in enumerate(numbers.tolist()):
                self.counts[value] += number
        averaged = np.flatnonzero(choice.clear_land.any(axis=(1, 2))).tolist()
        copied = np.flatnonzero(np.bincount(choice.fallback.ravel() + 1)[1:]).tolist()
        self.used.update(observations[i] for i in averaged + copied)


def synthesize_group(
    observations: Sequence[Observation],
    bands: tuple[str, ...],
    grid: OutputGrid,
    centre: date,
    half_window_days: int,
    outputs: GroupOutputs,
    block_size: int = 512,
    haze_scale: float = DEFAULT_HAZE_SCALE,
    read_threads: int = READ_THREADS,
    datasets: OpenDatasets | None = None,
) -> GroupStats:
    """Composite one resolution group of one tile and write its layers as COGs.

    Weights are WASP's (AOT, cloud distance, date, sensor), by default exactly WASP v1.0's;
    a positive `haze_scale` multiplies them by `haze_weight` with that blue scale
    (`HAZE_BLUE_SCALE` is the one benchmarked).

    FRC per band: int16 reflectance x 10000 (nodata -10000). FLG: uint8 flag of each pixel.
    WGT: int16 sum of the weights of the averaged observations x 1000 (0 where nothing was
    averaged). DTS: int16 weighted mean acquisition date in days relative to `centre` (negative
    before it; nodata -32768); relative days, unlike WASP's day-of-year, stay right across New
    Year. Where a single observation is copied (snow, water, cloud), DTS is its date.

    Observations outside the window, or without any band of the group, are ignored. Bands
    that fewer observations carry (Landsat-8 has no B5, B6, B7) are decided on their own,
    from the observations that have them, and get their own FLG / WGT / DTS layers
    (`subset_path`), so that a flag always describes the value next to it.
    Raises NoInputs when no observation is usable.

    Two passes over the windows: the first reads the masks for the cloud distance and keeps
    them (compressed), the second reads reflectance and AOT (`read_threads` observations at a
    time, the next window while this one is computed) and writes. `datasets`: inputs already
    open, shared with the synthesis of the tile's other groups (default: this call's own).
    """
    usable = _usable(observations, bands, centre, half_window_days)
    if not usable:
        raise NoInputs(
            f"no observation of bands {bands} within {half_window_days} days of {centre}"
        )
    days = np.array([(obs.acquired.date() - centre).days for obs in usable], np.float32)
    static = np.array(
        [
            date_weight(float(d), half_window_days) * o.sensor_weight
            for d, o in zip(days, usable, strict=True)
        ],
        dtype=np.float32,
    )
    sets = band_sets(usable, bands)
    tally = _Tally()
    with contextlib.ExitStack() as stack:
        reader = GridReader(grid, stack, warp_by_window=True, datasets=datasets)
        writers = _open_outputs(stack, outputs, bands, sets[1:], grid)
        # the pools end (their reads finished) before the stack closes the datasets
        with _pools(read_threads) as (pool, ahead):
            reader.open(_paths(usable, bands), pool)
            coarse = np.stack(
                _coarse_cloud_weights(reader, usable, bands, grid, block_size, pool, keep=True)
            )
            for window, data in _prefetched(
                ahead, lambda w: _gather(reader, usable, bands, w, pool), _windows(grid, block_size)
            ):
                w_cld = _window_cloud_weights(coarse, grid, window)
                weights = aot_weight(data.aot) * w_cld * static[:, None, None]
                excess = blue_excess(data.blue, data.state.clear)
                for number, band_set in enumerate(sets):
                    choice = _decide(
                        writers, window, data, (weights, excess, haze_scale), days, band_set, number
                    )
                    tally.add(choice, band_set.observations, main=number == 0)
    return GroupStats(
        pixel_counts={FLAG_NAMES[k]: v for k, v in tally.counts.items()},
        contributing=tuple(usable[i].product_id for i in sorted(tally.used)),
        band_subsets=tuple(s.bands for s in sets[1:]),
    )


def _paths(observations: Sequence[Observation], bands: Sequence[str]) -> list[str]:
    """Every raster the synthesis of `bands` reads."""
    paths: dict[str, None] = {}
    for obs in observations:
        present = [b for b in bands if b in obs.reflectance]
        refs = [obs.reflectance[b] for b in present]
        refs += [obs.reflectance.get("B2", obs.reflectance[present[0]])]
        refs += [layer[present[0]] for layer in (obs.cloud, obs.edge, obs.aot)]
        if obs.water_snow and present[0] in obs.water_snow:
            refs.append(obs.water_snow[present[0]])
        paths.update(dict.fromkeys(ref.path for ref in refs))
    return list(paths)


@contextlib.contextmanager
def _pools(threads: int) -> Iterator[tuple[ThreadPoolExecutor | None, ThreadPoolExecutor | None]]:
    """A pool of readers and a one-thread pool gathering the next window (none if threads < 2).

    Worker threads see the GDAL settings of the caller's `rasterio.Env`: rasterio sets them
    process-wide from the main thread."""
    if threads < 2:
        yield None, None
        return
    with ThreadPoolExecutor(threads, "read") as pool, ThreadPoolExecutor(1, "ahead") as ahead:
        yield pool, ahead


def _prefetched(
    ahead: ThreadPoolExecutor | None,
    gather: Callable[[Window], Stack],
    windows: Iterator[Window],
) -> Iterator[tuple[Window, Stack]]:
    """(window, its data), the next window's data being gathered while the caller works."""
    if ahead is None:
        for window in windows:
            yield window, gather(window)
        return
    pending: tuple[Window, Future[Stack]] | None = None
    for window in windows:
        future = ahead.submit(gather, window)
        if pending is not None:
            yield pending[0], pending[1].result()
        pending = (window, future)
    if pending is not None:
        yield pending[0], pending[1].result()


def _decide(
    writers: Mapping[str, DatasetWriter],
    window: Window,
    data: Stack,
    weighting: tuple[np.ndarray, np.ndarray, float],
    days: np.ndarray,
    band_set: BandSet,
    number: int,
) -> Choice:
    """Choose and write the pixels of one band set in one window.

    `weighting` is (WASP weights, blue excess, blue haze scale): each band's weights are WASP's
    times its haze weight; WGT and DTS use those of the set's first band.
    """
    index: list[int] | slice = list(band_set.observations)
    if index == list(range(len(days))):
        index = slice(None)  # every observation: views, not copies
    state = PixelState(
        valid=data.state.valid[index],
        clear=data.state.clear[index],
        water=data.state.water[index],
        snow=data.state.snow[index],
    )
    choice = choose(state, data.blue[index])
    excess, scale = weighting[1][index], weighting[2]
    base = np.where(choice.clear_land, weighting[0][index], np.float32(0))  # 0 if not averaged

    def weights(band: str) -> np.ndarray:  # one band's at a time, not all at once in memory
        band_scale = band_haze_scale(band, scale)
        if band_scale <= 0:
            return base
        haze = np.exp(excess * np.float32(-1 / band_scale))
        haze *= base
        return haze

    subset = {b: data.reflectance[b][index] for b in band_set.bands}
    suffix = "" if number == 0 else "_" + "".join(band_set.bands)
    _write_window(writers, window, subset, choice, weights, days[index], suffix)
    return choice


def _usable(
    observations: Sequence[Observation], bands: Sequence[str], centre: date, half_window: int
) -> list[Observation]:
    """Observations in the window with a band of the group, earliest first (deterministic)."""
    keep = [
        o
        for o in observations
        if abs((o.acquired.date() - centre).days) <= half_window
        and any(b in o.reflectance for b in bands)
    ]
    return sorted(keep, key=lambda o: (o.acquired, o.product_id))


def _window_cloud_weights(
    coarse: np.ndarray | list[np.ndarray], grid: OutputGrid, window: Window
) -> np.ndarray:
    """W_cld of every observation in `window`, (n_obs, h, w), from the coarse grids."""
    rows = slice(int(window.row_off), int(window.row_off + window.height))
    cols = slice(int(window.col_off), int(window.col_off + window.width))
    return upsample(np.asarray(coarse), _cloud_factor(grid), rows, cols)


def _open_outputs(
    stack: contextlib.ExitStack,
    outputs: GroupOutputs,
    bands: Sequence[str],
    subsets: Sequence[BandSet],
    grid: OutputGrid,
) -> dict[str, DatasetWriter]:
    missing = [b for b in bands if b not in outputs.frc]
    if missing:
        raise ValueError(f"no output path for bands {missing}")

    def open_one(path: str, dtype: str, nodata: float | None, resampling: str) -> DatasetWriter:
        writer = cog.cog_writer(
            path,
            width=grid.width,
            height=grid.height,
            count=1,
            dtype=dtype,
            crs=grid.crs,
            transform=grid.transform,
            nodata=nodata,
            overview_resampling=resampling,
        )
        return stack.enter_context(writer)

    writers = {b: open_one(outputs.frc[b], "int16", FRC_NODATA, "AVERAGE") for b in bands}
    for suffix, members in [("", ()), *(("_" + "".join(s.bands), s.bands) for s in subsets)]:

        def path(main: str, members: tuple[str, ...] = members) -> str:
            return subset_path(main, members) if members else main

        writers["FLG" + suffix] = open_one(path(outputs.flags), "uint8", FLAG_NO_DATA, "NEAREST")
        writers["WGT" + suffix] = open_one(path(outputs.weights), "int16", None, "NEAREST")
        writers["DTS" + suffix] = open_one(path(outputs.dates), "int16", DTS_NODATA, "NEAREST")
    return writers


def _write_window(
    writers: Mapping[str, DatasetWriter],
    window: Window,
    reflectance: Mapping[str, np.ndarray],
    choice: Choice,
    band_weights: Callable[[str], np.ndarray],
    days: np.ndarray,
    suffix: str = "",
) -> None:
    """Write one window of a band set. `band_weights` gives a band's weights, 0 for the views
    not averaged; WGT and DTS come from the set's first band's."""
    first: tuple[np.ndarray, np.ndarray] | None = None
    for band, stack in reflectance.items():
        weights = band_weights(band)
        total = weights.sum(axis=0, dtype=np.float32)
        mean = weighted_mean(stack, choice.clear_land, weights, total)
        value = np.where(np.isnan(mean), take(stack, choice.fallback), mean)
        writers[band].write(_to_int16(value * FRC_SCALE, FRC_NODATA), 1, window=window)
        if first is None:
            first = (weights, total)
    if first is None:  # a band set always has a band
        return
    weights, total = first
    mean_day = _ratio(np.tensordot(days, weights, axes=(0, 0)), total)  # days are never NaN
    day_stack = np.broadcast_to(days[:, None, None], weights.shape)
    mean_day = np.where(np.isnan(mean_day), take(day_stack, choice.fallback), mean_day)
    writers["FLG" + suffix].write(choice.flags, 1, window=window)
    writers["WGT" + suffix].write(
        np.clip(np.rint(total * 1000), 0, 32767).astype(np.int16), 1, window=window
    )
    writers["DTS" + suffix].write(_to_int16(mean_day, DTS_NODATA), 1, window=window)


def _to_int16(values: np.ndarray, nodata: int) -> np.ndarray:
    """Round to int16, NaN -> nodata; valid values never collide with nodata."""
    rounded = np.clip(np.rint(np.nan_to_num(values, nan=nodata)), nodata + 1, 32767)
    return np.where(np.isnan(values), nodata, rounded).astype(np.int16)
