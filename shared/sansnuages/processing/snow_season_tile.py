"""A snow season of one tile from its L2B-SNOW COGs: the core of `snow_season` on real rasters.

Every snow map of the year and its margins is read onto the tile's Sentinel-2 20 m grid: a
Sentinel-2 map lies on it already and is read as it is; a Landsat-8 map (30 m) is resampled by
nearest neighbour, cropped to the grid, no data outside its footprint (FORMATS.md section 3):
the values of a `WarpedVRT` with `Resampling.nearest` (for each pixel, the source pixel that
holds its centre), taken here in numpy from the source rows under a strip (`NearestView`).
Per map and strip, a `WarpedVRT` cost about ten times the reading of the source rows, the
synthesis's `WindowWarp` five, this twice. Then `snow_season.SeasonFold` makes the
layers, and their COGs are written.

Memory, not the pixels, shapes the work. A full tile-year (5490 x 5490 px, 100 to 200 maps)
is 4 to 6 GB of codes, so nothing holds it whole:

- inputs are read by row strips aligned to their COG blocks (512 rows), so each block of
  every map is decoded once; a strip of every map is about 2.8 MB per map (370 MB for 130),
  and two strips live at once: the next one is read (`READ_THREADS` threads; GDAL releases the
  GIL) while this one is computed;
- the core folds the season over parts of a strip, whole rows of about `PART_PIXELS`
  pixels, in `COMPUTE_THREADS` threads (numpy releases the GIL), one observation day after
  another: about 20 bytes per pixel whatever the number of days;
- the same-day fusion happens inside each part, on its own copy of the day's codes; a day of
  one product is read in place from the strip;
- outputs go to `cog.cog_writer` strip by strip, and the summary's daily snow-covered area
  comes from each pixel's snow periods (a difference array in the core), never from a daily
  series of the whole tile.

The core's temporaries (a few MB each, thousands of them for a tile) are what glibc's malloc
returns to the system when freed and maps again, zeroed page by page, at the next
allocation. `keep_freed_memory` raises malloc's thresholds so that freed memory is reused
(process-wide, once; a no-op where malloc is not glibc's). It halved the core's time when
the core made a daily series; with the fold and its reused strip cubes it saves less: a full
tile-year took 1.2 to 1.4 s of system time with it, 1.6 to 3.6 s without (29.8 to 33.6 s of
CPU in all, the same peak memory).

The GDAL settings of the caller's environment apply; `SEASON_GDAL_OPTIONS` are those the
season needs (a Landsat-8 block row lies under two strips: the cache keeps it for the second).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from sansnuages.errors import NoInputs, OffGrid, UnexpectedFormat
from sansnuages.formats.snow import NODATA_V2
from sansnuages.formats.snow_season_product import LAYERS
from sansnuages.period import HydrologicalYear
from sansnuages.processing.snow_season import (
    CLEAR_MAX,
    FRACTION_SNOW_FROM,
    NODATA,
    SeasonFold,
    SeasonLayers,
    decode,
    is_clear,
)
from sansnuages.processing.synthesis import OutputGrid
from sansnuages.raster import cog
from sansnuages.raster.conversion import RASTER_ERRORS, open_geotiff
from sansnuages.raster.encode import png_bytes
from sansnuages.raster.thread_env import in_thread_env

READ_THREADS = 4
"""Maps read at once: reads wait on S3 and decode without the GIL, so a few overlap."""
COMPUTE_THREADS = 2
"""Parts of a strip computed at once: the core is numpy operations, which release the GIL."""
STRIP_ROWS = 512
"""Rows of a strip when the inputs' blocks do not say (the COG block size)."""
PART_PIXELS = 524288
"""Pixels a compute thread folds the season over at once (96 rows of a full tile). Each numpy
call of the fold releases the GIL and takes it back, so small parts make the two compute
threads hand it over tens of thousands of times (sys time and context switches); large ones
leave a thread idle at a strip's end. A full tile-year without outputs, 2 threads: 12.1 to
12.3 s at this size, 13.2 to 14.5 s at 262,144 pixels, 13.4 to 17.2 s at 131,072 (73,000
voluntary context switches against 20,000), 12.6 to 14.0 s at 1,048,576."""
SEASON_GDAL_OPTIONS: dict[str, int] = {"GDAL_CACHEMAX": 128 * 2**20}
"""The block cache holds the Landsat-8 block rows a strip read for the next strip (1.9 MB a
map at full size, 75 MB for 40 maps); rasterio hands integers to GDAL as bytes."""
MALLOC_THRESHOLDS = {-3: 64 * 2**20, -1: 256 * 2**20}
"""mallopt's M_MMAP_THRESHOLD (-3): blocks under 64 MB come from the heap, where freed ones
are reused (a strip's cube, larger, is still mapped and unmapped); M_TRIM_THRESHOLD (-1):
the heap gives memory back to the system beyond 256 MB free at its top, not 128 KB."""
SENTINEL2_RANK = 0
_NOT_A_GEOTIFF = "not recognized as being in a supported file format"


@dataclass(frozen=True)
class SnowMapInput:
    path: str
    """GDAL path of an L2B-SNOW COG (local file or /vsis3/...), uint8 codes."""
    date: dt.date
    rank: int
    """0 Sentinel-2 (SNW_R2, 20 m), 1 Landsat-8 (SNW_XS, 30 m): the fusion order."""
    product_id: str
    platform: str
    """STAC platform, e.g. "sentinel-2a", "landsat-8"."""
    nodata: float | None = None
    """As the Item declares it; 254 or 255 (both conventions exist)."""


@dataclass(frozen=True)
class ObservationDay:
    day: int
    """Days since 1 September (negative in the first margin)."""
    platforms: tuple[str, ...]
    """Platforms of the products fused that day, in fusion order, each once."""
    clear: int
    """Clear pixels after the same-day fusion."""
    snow: int
    """Snow pixels after the fusion."""


@dataclass(frozen=True)
class SeasonSummary:
    used: tuple[str, ...]
    """Product ids that entered the season (the year and its margins), by date then rank."""
    sentinel2_observations: int
    """Products used of rank 0 (Sentinel-2)."""
    landsat8_observations: int
    """Products used of the other ranks (Landsat-8)."""
    pixels: int
    """Pixels with a season (clear at least once)."""
    daily_snow: tuple[int, ...]
    """Per day of the year (n_days): snow-covered pixels of the gap-filled series."""
    observed: tuple[ObservationDay, ...]
    """Per observation day, ascending."""


@dataclass(frozen=True)
class _Day:
    """An observation day and the products fused on it (indices into the used inputs)."""

    day: int
    slots: tuple[int, ...]
    platforms: tuple[str, ...]


@dataclass
class _Tally:
    """The summary's counts, summed over parts."""

    n_days: int
    n_obs: int
    pixels: int = 0
    daily: np.ndarray = field(init=False)
    clear: np.ndarray = field(init=False)
    snow: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.daily = np.zeros(self.n_days, np.int64)
        self.clear = np.zeros(self.n_obs, np.int64)
        self.snow = np.zeros(self.n_obs, np.int64)


def season_tile(
    inputs: Sequence[SnowMapInput],
    year: HydrologicalYear,
    grid: OutputGrid,
    outputs: Mapping[str, str] | None,
    *,
    window: Window | None = None,
    mask: np.ndarray | None = None,
    snow_from: int = FRACTION_SNOW_FROM,
    scratch_dir: str | None = None,
) -> SeasonSummary:
    """The season of `year` over `grid` (the tile's Sentinel-2 20 m grid) from its snow maps.

    `outputs`: layer name (SCD SOD SMOD NOBS NSP, a subset allowed) -> destination COG path
    (local or /vsis3/), each written with its no data and overviews; None computes the summary
    alone. `window`: only this part of the grid (the season plot of a polygon); the outputs
    then cover the window. `mask` (bool over the window): only these pixels count in the
    summary (the layers cover the whole window). Inputs outside the year and its margins are
    ignored. Raises `NoInputs` when none is left, `UnexpectedFormat` for an input that is not
    a GeoTIFF, `OffGrid` for one of the wrong type, CRS or (Sentinel-2) grid.
    """
    area = _checked_request(grid, outputs, window, mask, snow_from)
    keep_freed_memory()
    used = sorted(
        (item for item in inputs if year.takes(item.date)),
        key=lambda item: (item.date.toordinal(), item.rank),
    )
    if not used:
        raise NoInputs(f"no snow map between {year.first_input} and {year.last_input}")
    days = _observation_days(used, year)
    tally = _Tally(year.n_days, len(days))
    with contextlib.ExitStack() as stack:
        views = [_open_view(stack, item, grid) for item in used]
        writers = _open_outputs(stack, outputs or {}, grid, area, scratch_dir)
        strips = _strips(area, _strip_rows(views))
        with (
            ThreadPoolExecutor(READ_THREADS, "snow-read") as reads,
            ThreadPoolExecutor(1, "snow-ahead") as ahead,
            ThreadPoolExecutor(COMPUTE_THREADS, "snow-core") as cores,
        ):
            for strip, cube in _prefetched(ahead, _StripReader(views, reads), strips):
                keep = None if mask is None else np.asarray(mask, bool)[_rows(strip, area)]
                layers = _season_of_strip(cores, cube, days, (year.n_days, snow_from), keep, tally)
                del cube  # two strips in memory, not three, while the next one is read
                place = Window(0, strip.row_off - area.row_off, area.width, strip.height)
                for name, writer in writers.items():
                    writer.write(layers[name], 1, window=place)
    return SeasonSummary(
        used=tuple(item.product_id for item in used),
        sentinel2_observations=sum(item.rank == SENTINEL2_RANK for item in used),
        landsat8_observations=sum(item.rank != SENTINEL2_RANK for item in used),
        pixels=tally.pixels,
        daily_snow=tuple(int(n) for n in tally.daily),
        observed=tuple(
            ObservationDay(day.day, day.platforms, int(clear), int(snow))
            for day, clear, snow in zip(days, tally.clear, tally.snow, strict=True)
        ),
    )


@functools.cache
def keep_freed_memory() -> bool:
    """Set `MALLOC_THRESHOLDS` in glibc's malloc, once per process; False where that is not
    possible (another C library)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(option, size) == 1 for option, size in MALLOC_THRESHOLDS.items())
    except (OSError, AttributeError):
        return False


# --- inputs ------------------------------------------------------------------------------------


def _checked_request(
    grid: OutputGrid,
    outputs: Mapping[str, str] | None,
    window: Window | None,
    mask: np.ndarray | None,
    snow_from: int,
) -> Window:
    """The window in whole pixels (the grid by default), once the arguments are known good:
    a mistake fails here, before any read."""
    decode(np.zeros(0, np.uint8), snow_from)  # raises for a percentage out of 1..100
    unknown = set(outputs or {}) - set(NODATA)
    if unknown:
        raise ValueError(f"unknown snow-season layers {sorted(unknown)}")
    window = window or Window(0, 0, grid.width, grid.height)
    col, row = int(window.col_off), int(window.row_off)
    width, height = int(window.width), int(window.height)
    inside = 0 <= col and 0 <= row and col + width <= grid.width and row + height <= grid.height
    if not inside or width < 1 or height < 1:
        raise ValueError(f"the window {window} is not inside the {grid.width} x {grid.height} grid")
    if mask is not None and np.shape(mask) != (height, width):
        raise ValueError(f"the mask must be {height} x {width}, like the window")
    return Window(col, row, width, height)


def _observation_days(used: Sequence[SnowMapInput], year: HydrologicalYear) -> list[_Day]:
    """The days with a product, each with its products in fusion order (rank, then order)."""
    by_day: dict[int, list[int]] = {}
    for slot, item in enumerate(used):  # `used` is sorted by date and rank already
        by_day.setdefault(year.day_index(item.date), []).append(slot)
    return [
        _Day(day, tuple(slots), tuple(dict.fromkeys(used[s].platform for s in slots)))
        for day, slots in sorted(by_day.items())
    ]


class NearestView:
    """A snow map in the grid's CRS at another pixel size or origin (Landsat-8 at 30 m), read
    onto the grid by nearest neighbour: each grid pixel takes the source pixel holding its
    centre, as GDAL's warper does (the same arithmetic as `raster.resample`, which tests hold
    to the warper), and `fill` outside the source. A no-data code is copied as it is rather
    than replaced by `fill`: for the season both read "not clear". Two `take`s of the source
    rows under a strip, read through GDAL's block cache, which keeps a block row that
    straddles two strips for the second."""

    def __init__(self, src: DatasetReader, grid: OutputGrid, fill: int) -> None:
        self._src = src
        self._fill = fill
        self._rows = _centres(
            grid.transform.f,
            grid.transform.e,
            src.transform.f,
            src.transform.e,
            grid.height,
            src.height,
        )
        self._cols = _centres(
            grid.transform.c,
            grid.transform.a,
            src.transform.c,
            src.transform.a,
            grid.width,
            src.width,
        )

    def read(self, window: Window) -> np.ndarray:
        rows, cols = (
            self._rows[_span(window.row_off, window.height)],
            self._cols[_span(window.col_off, window.width)],
        )
        out = np.full((len(rows), len(cols)), self._fill, np.uint8)
        row_in, col_in = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        if not len(row_in) or not len(col_in):
            return out
        top, left = rows[row_in[0]], cols[col_in[0]]
        bottom, right = rows[row_in[-1]] + 1, cols[col_in[-1]] + 1
        source = self._src.read(1, window=Window(left, top, right - left, bottom - top))
        # Across first, on the fewer source rows; then whole rows, which copy in runs.
        picked = source.take(cols[col_in] - left, axis=1).take(rows[row_in] - top, axis=0)
        out[row_in[0] : row_in[-1] + 1, col_in[0] : col_in[-1] + 1] = picked
        return out


def _centres(
    origin: float, step: float, source_origin: float, source_step: float, count: int, size: int
) -> np.ndarray:
    """The source pixel (index along one axis) holding each grid pixel's centre, -1 outside
    the source. The grid and the source are north-up: an axis's cells are contiguous, so the
    pixels inside form one run."""
    edge = ((np.arange(count) + 0.5) * step + (origin - source_origin)) / source_step
    cell = np.floor(edge).astype(np.int64)
    return np.where((cell >= 0) & (cell < size), cell, -1)


def _span(offset: float, length: float) -> slice:
    return slice(int(offset), int(offset) + int(length))


View: TypeAlias = DatasetReader | NearestView


def _open_view(stack: contextlib.ExitStack, item: SnowMapInput, grid: OutputGrid) -> View:
    """The map opened (GeoTIFF driver only) and checked; warped onto the grid unless a
    Sentinel-2 map, which must lie on it."""
    try:
        src = stack.enter_context(open_geotiff(item.path))
    except RASTER_ERRORS as error:
        if _NOT_A_GEOTIFF in str(error):
            raise UnexpectedFormat(f"{item.product_id}: {item.path} is not a GeoTIFF") from error
        raise
    if src.count != 1 or src.dtypes[0] != "uint8":
        raise OffGrid(
            f"{item.product_id}: a snow map is one band of uint8 codes, not {src.count} "
            f"band(s) of {src.dtypes[0]} ({item.path})"
        )
    if src.crs is None or src.crs != CRS.from_user_input(grid.crs):
        raise OffGrid(f"{item.product_id}: in {src.crs}, not in the tile's {grid.crs}")
    on_grid = src.transform.almost_equals(grid.transform) and src.shape == (
        grid.height,
        grid.width,
    )
    if on_grid:
        return src
    if item.rank == SENTINEL2_RANK:
        raise OffGrid(
            f"{item.product_id}: a Sentinel-2 snow map must lie on the tile's grid "
            f"({grid.width} x {grid.height} px from {tuple(grid.transform)[:6]}), not "
            f"{src.width} x {src.height} px from {tuple(src.transform)[:6]}"
        )
    declared = item.nodata if item.nodata is not None else src.nodata
    if declared is None or not CLEAR_MAX < declared <= NODATA_V2:
        declared = NODATA_V2  # outside the footprint must never read as a clear code
    return NearestView(src, grid, int(declared))


def _strip_rows(views: Sequence[View]) -> int:
    """The block height of the maps on the grid, so that a strip decodes whole blocks."""
    heights = {v.block_shapes[0][0] for v in views if isinstance(v, DatasetReader)}
    if len(heights) == 1 and 64 <= (rows := heights.pop()) <= 2048:
        return rows
    return STRIP_ROWS


def _strips(area: Window, rows: int) -> Iterator[Window]:
    """Row strips of the window, cut where the grid's blocks are."""
    top, bottom = int(area.row_off), int(area.row_off + area.height)
    while top < bottom:
        end = min(bottom, (top // rows + 1) * rows)
        yield Window(area.col_off, top, area.width, end - top)
        top = end


def _rows(strip: Window, area: Window) -> slice:
    start = int(strip.row_off - area.row_off)
    return slice(start, start + int(strip.height))


class _StripReader:
    """Reads every map's codes over a strip into one (maps, rows, cols) uint8 cube, each map by
    one thread of the pool (a dataset is never read by two threads at once: one strip is read
    at a time).

    Two cubes take turns, since `_prefetched` holds at most two strips: the one computed and
    the one read. A cube is hundreds of MB, which malloc maps afresh at every allocation and
    the kernel zeroes page by page: reusing them saved about a second of system time on a
    full tile."""

    def __init__(self, views: Sequence[View], pool: ThreadPoolExecutor) -> None:
        self._views = views
        self._pool = pool
        self._one = in_thread_env(self._read_one)
        self._cubes: list[np.ndarray] = []
        self._turn = 1  # the first strip takes the first cube

    def __call__(self, strip: Window) -> np.ndarray:
        cube = self._cube(int(strip.height), int(strip.width))
        tasks = [(slot, strip, cube[slot]) for slot in range(len(self._views))]
        list(self._pool.map(self._one, tasks))
        return cube

    def _cube(self, rows: int, cols: int) -> np.ndarray:
        """The next cube of the two, grown if the strip does not fit (strips share their width;
        the last one may have fewer rows, which keeps each map's slice contiguous)."""
        self._turn = 1 - self._turn
        if len(self._cubes) <= self._turn:
            self._cubes.append(np.empty((len(self._views), rows, cols), np.uint8))
        cube = self._cubes[self._turn]
        if cube.shape[1] < rows or cube.shape[2] != cols:
            cube = self._cubes[self._turn] = np.empty((len(self._views), rows, cols), np.uint8)
        return cube[:, :rows]

    def _read_one(self, task: tuple[int, Window, np.ndarray]) -> None:
        slot, strip, out = task
        view = self._views[slot]
        if isinstance(view, NearestView):
            out[...] = view.read(strip)
        else:
            view.read(1, window=strip, out=out)


def _prefetched(
    ahead: ThreadPoolExecutor, gather: Callable[[Window], np.ndarray], strips: Iterator[Window]
) -> Iterator[tuple[Window, np.ndarray]]:
    """(strip, its cube), the next strip being read while the caller computes this one."""
    pending: tuple[Window, Future[np.ndarray]] | None = None
    for strip in strips:
        future = ahead.submit(gather, strip)
        if pending is not None:
            yield pending[0], pending[1].result()
        pending = (strip, future)
    if pending is not None:
        yield pending[0], pending[1].result()


# --- the core, by parts of a strip --------------------------------------------------------------


def _season_of_strip(
    pool: ThreadPoolExecutor,
    cube: np.ndarray,
    days: Sequence[_Day],
    rules: tuple[int, int],
    counted: np.ndarray | None,
    tally: _Tally,
) -> dict[str, np.ndarray]:
    """The layers of one strip, (rows, cols) each by name, from its cube of maps; the summary's
    counts (over the `counted` pixels, all by default) added to `tally`."""
    n_days, snow_from = rules
    rows, width = cube.shape[1:]

    def one(part: slice) -> tuple[slice, SeasonLayers, np.ndarray, np.ndarray]:
        pixels = (part.stop - part.start) * width
        keep = None if counted is None else counted[part]
        fold = SeasonFold(pixels, n_days, snow_from, keep)
        seen = [fold.add(day.day, _fused(cube, day.slots, part)) for day in days]
        layers, daily = fold.finish()
        return part, layers, daily, np.array(seen, np.int64).reshape(len(days), 2)

    out = {name: np.empty((rows, width), LAYERS[name].dtype) for name in NODATA}
    for part, layers, daily, seen in pool.map(one, _parts(rows, width)):
        for name, values in layers.as_dict().items():
            out[name][part] = values.reshape(-1, width)
        tally.daily += daily
        tally.clear += seen[:, 0]
        tally.snow += seen[:, 1]
        ever = layers.nobs if counted is None else layers.nobs[counted[part].reshape(-1)]
        tally.pixels += int(np.count_nonzero(ever))
    return out


def _fused(cube: np.ndarray, slots: Sequence[int], part: slice) -> np.ndarray:
    """A day's codes over the rows `part`, one per pixel: the first product's (a view of the
    cube) unless the day has more, then the first clear code of the day per pixel."""
    codes = cube[slots[0], part].reshape(-1)
    if len(slots) > 1:
        codes = codes.copy()
        for slot in slots[1:]:
            np.copyto(codes, cube[slot, part].reshape(-1), where=~is_clear(codes))
    return codes


def _parts(rows: int, width: int) -> Iterator[slice]:
    """The parts of a strip: whole rows, as many as make about `PART_PIXELS` pixels (whole
    rows are contiguous in the cube, so a day's codes are read in place)."""
    height = max(1, PART_PIXELS // width)
    for top in range(0, rows, height):
        yield slice(top, min(rows, top + height))


# --- outputs -----------------------------------------------------------------------------------


def _open_outputs(
    stack: contextlib.ExitStack,
    outputs: Mapping[str, str],
    grid: OutputGrid,
    area: Window,
    scratch_dir: str | None,
) -> dict[str, DatasetWriter]:
    """A COG writer per layer asked for, over the window, with the layer's no data and
    overview resampling; nothing is written to the destinations if the season fails."""
    transform = grid.transform @ Affine.translation(area.col_off, area.row_off)
    return {
        name: stack.enter_context(
            cog.cog_writer(
                path,
                width=int(area.width),
                height=int(area.height),
                count=1,
                dtype=LAYERS[name].dtype,
                crs=grid.crs,
                transform=transform,
                nodata=NODATA[name],
                scratch_dir=scratch_dir,
                overview_resampling=LAYERS[name].overview_resampling,
            )
        )
        for name, path in outputs.items()
    }


def preview_png(cog_path: str, name: str, max_size: int = 1024) -> bytes:
    """A PNG of a season layer's COG, at most `max_size` pixels a side, in its colour map
    (transparent where no data). Read from the finest overview that fits (decimated further if
    even the coarsest does not), never the full raster of a tile: a few hundred KB of reads."""
    if name not in LAYERS:
        raise ValueError(f"unknown snow-season layer {name!r}")
    with open_geotiff(cog_path) as src:
        side = max(src.width, src.height)
        factors = src.overviews(1)
        fits = [
            level for level, factor in enumerate(factors) if math.ceil(side / factor) <= max_size
        ]
        level = fits[0] if fits else len(factors) - 1
        nodata = src.nodata
    opened = open_geotiff(cog_path) if side <= max_size or level < 0 else _overview(cog_path, level)
    with opened as src:
        scale = max(1.0, max(src.width, src.height) / max_size)
        shape = (max(1, math.floor(src.height / scale)), max(1, math.floor(src.width / scale)))
        values = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    return png_bytes(LAYERS[name].colour_map.rgba(values, nodata))


def _overview(path: str, level: int) -> DatasetReader:
    """One overview level of a GeoTIFF, opened as a dataset of its own."""
    return rasterio.open(path, driver="GTiff", overview_level=level)
