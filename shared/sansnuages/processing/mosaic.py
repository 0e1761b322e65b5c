"""Country mosaic: a period's tiles (several UTM zones) on one grid, cut to a border.

Every output window reads only the tiles whose footprint touches it, each reprojected through
a `WarpedVRT` onto the mosaic grid (bilinear for reflectance, nearest-neighbour for values
that must not be mixed: the layer says which, `mosaic_layers`). Where tiles overlap, each pixel takes the tile
whose centre is nearest among those with data there: the choice is deterministic, does not
depend on the order of the inputs, and falls back to the next tile where the nearest one has
no data, so neither gaps nor seams appear along the 9.8 km overlaps or the zone edges.
True colour is stretched to 1..255 (0 is no data, so a dark valid pixel is never confused
with it) and written as one RGB COG with overviews; a single band (a snow season's days) is
written as it is, with its own no-data value and nearest-neighbour overviews.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask
from rasterio.session import DummySession
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.formats.colour_maps import ColourMap
from sansnuages.processing.mosaic_layers import (
    TRUE_COLOUR,
    BandInput,
    Layer,
    MosaicInput,
    TileInput,
    TrueColour,
    stretch_to_byte,
)
from sansnuages.processing.synthesis import OutputGrid, RasterRef
from sansnuages.raster import cog

__all__ = [
    "TRUE_COLOUR",
    "BandInput",
    "Layer",
    "MosaicInput",
    "TileInput",
    "stretch_to_byte",
]

NODATA = 0
LONLAT = "EPSG:4326"
GDAL_CACHE_BYTES = 64 * 2**20
"""GDAL's block cache while mosaicking. Its default, 5 % of the machine's memory, filled to
460 MB on a 24 GB machine (Belgium at 60 m: peak 700 MB), and it buys nothing here: each
output window decodes its few source blocks once, so the CPU time is the same with 0 or 1.2 GB
of cache. (rasterio passes GDAL_CACHEMAX to GDAL in bytes.)"""
MAX_OPEN_VIEWS = 48
"""Input rasters kept open on the mosaic grid at once (see `_Views`): 12 tiles of FRC B4, B3,
B2 and FLG, more than a row of 512 px windows meets at 10 m."""
WARP_THREADS = 1
"""Threads of GDAL's warper for one view's read. The process's `GDAL_NUM_THREADS=ALL_CPUS`
would split each read of a window among threads: for the few hundred pixels a tile gives a
window, starting and joining them cost five times the warp itself (a 490 x 410 px window of
one 610 m tile: 33 ms of CPU instead of 7). Views are many and small; one thread each."""
CELL_MARGIN_M = 20000.0
"""Inputs whose extent is farther than this from a part's cell are not even opened: more than
the corners that a tile's bounding box gains when it is turned into the mosaic CRS."""


@dataclass(frozen=True)
class Codec:
    """How the true-colour COG is compressed (GDAL COG driver options)."""

    options: tuple[tuple[str, str], ...]
    lossy: bool
    """A lossy codec cannot keep 0 as the no-data value (a decoded pixel near 0 may read 0, a
    pixel outside may not): validity then goes to an internal mask, exact whatever the codec."""


CODECS: dict[str, Codec] = {
    "deflate": Codec((("COMPRESS", "DEFLATE"),), lossy=False),
    "zstd": Codec((("COMPRESS", "ZSTD"), ("LEVEL", "9")), lossy=False),
    "webp-lossless": Codec((("COMPRESS", "WEBP"), ("QUALITY", "100")), lossy=False),
    "jpeg": Codec((("COMPRESS", "JPEG"), ("QUALITY", "90")), lossy=True),
    "webp": Codec((("COMPRESS", "WEBP"), ("QUALITY", "90")), lossy=True),
}
"""The codecs offered for the visual layer; `bench/mosaic_codec.py` measures them. JPEG is
YCbCr (the COG driver's choice for 3 bands); WEBP at QUALITY=100 is lossless."""
DEFAULT_CODEC = "deflate"


def codec_named(name: str) -> Codec:
    """The codec called `name`; InvalidRequest (naming the choices) for an unknown one."""
    found = CODECS.get(name.lower())
    if found is None:
        raise InvalidRequest(f"unknown codec {name!r}: one of {', '.join(CODECS)}")
    return found


@dataclass(frozen=True)
class MosaicResult:
    bounds: tuple[float, float, float, float]
    """(left, bottom, right, top) in `crs`."""
    crs: str
    shape: tuple[int, int]
    """(height, width) in pixels."""
    valid_fraction: float
    """Share of the pixels inside the area that received data."""
    tiles_used: tuple[str, ...]


@dataclass(frozen=True)
class _Source:
    input: TileInput
    footprint: BaseGeometry
    """Bounding box of the tile in the mosaic CRS (densified reprojection of its bounds)."""
    centre: tuple[float, float]


def fill_outside(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`rgb` (bands, h, w) with every invalid pixel set to the nearest valid one of its row, or
    for a row without any, of its column (after the rows are filled).

    For lossy codecs only, whose masks say what is valid: a sharp step from the image to 0 at
    the border would ring into the valid pixels next to it; extending the edge leaves no step.
    """
    if valid.all() or not valid.any():
        return rgb
    rows_done, row_ok = _fill_axis(rgb, valid)
    if row_ok.all():
        return rows_done
    filled, _ = _fill_axis(
        rows_done.swapaxes(1, 2), np.broadcast_to(row_ok[None, :], valid.T.shape)
    )
    return filled.swapaxes(1, 2)


def _fill_axis(rgb: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill along the last axis from the nearest valid pixel; also which rows had one."""
    width = valid.shape[1]
    cols = np.arange(width)
    left = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(valid, cols, width)[:, ::-1], axis=1)[:, ::-1]
    nearer_left = (left >= 0) & ((right >= width) | (cols - left <= right - cols))
    source = np.clip(np.where(nearer_left, left, right), 0, width - 1)
    filled = np.take_along_axis(rgb, np.broadcast_to(source[None], rgb.shape), axis=2)
    return filled, np.asarray(valid.any(axis=1))


def nearest_valid(distances: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per pixel, the index (axis 0) of the valid source with the smallest distance; -1 if none.

    `distances` and `valid` are (n_sources, h, w). Ties go to the lower index.
    """
    if distances.shape[0] == 0:
        return np.full(distances.shape[1:], -1, dtype=np.int32)
    masked = np.where(valid, distances, np.inf)
    found = valid.any(axis=0)
    return np.where(found, masked.argmin(axis=0), -1).astype(np.int32)


def mosaic_grid(
    area: BaseGeometry,
    footprints: Sequence[BaseGeometry],
    resolution: float,
    cell: tuple[float, float, float, float] | None = None,
) -> tuple[Affine, int, int]:
    """Grid over the area where tiles exist (within `cell` if given), snapped to the resolution.

    Clipping to the tiles keeps the mosaic of a country with far-away parts (France and its
    overseas departments) from spanning an ocean of empty pixels when only some parts have data.
    Snapping to multiples of the resolution puts every part of a mosaic on one pixel lattice.
    """
    covered = area.intersection(shapely.union_all(list(footprints)))
    if cell is not None:
        covered = covered.intersection(box(*cell))
    if covered.is_empty or covered.area == 0:
        raise NoInputs("no input tile intersects the area")
    left, bottom, right, top = covered.bounds
    left = math.floor(left / resolution) * resolution
    bottom = math.floor(bottom / resolution) * resolution
    right = math.ceil(right / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    width = max(1, round((right - left) / resolution))
    height = max(1, round((top - bottom) / resolution))
    return Affine(resolution, 0, left, 0, -resolution, top), width, height


def area_in_crs(area_lonlat: BaseGeometry, crs: str) -> BaseGeometry:
    return shape(transform_geom(LONLAT, crs, mapping(area_lonlat)))


def footprints(inputs: Sequence[TileInput], crs: str) -> list[BaseGeometry]:
    """Each input's bounding box in `crs` (densified), as the grid and the parts plan see it."""
    return [_source(i, crs).footprint for i in inputs]


def build_mosaic(
    inputs: Sequence[TileInput],
    area_lonlat: BaseGeometry,
    out_path: str,
    crs: str = "EPSG:3035",
    resolution: float = 100.0,
    stretch: tuple[float, float] = (0.0, 0.2),
    block_size: int = 512,
    cell: tuple[float, float, float, float] | None = None,
    codec: str = DEFAULT_CODEC,
    layer: Layer | None = None,
) -> MosaicResult:
    """Mosaic `inputs` over `area_lonlat` into a COG at `out_path`: by default a 3-band uint8
    RGB COG (`TrueColour`); `layer` may say otherwise (`SingleBand`: values kept as they are).

    The grid covers the area's part that the tiles cover, in `crs`, snapped to `resolution`.
    Pixels outside the area, or without data, are the layer's no-data value (0 in true colour).
    Raises NoInputs when nothing overlaps.
    `stretch` is the reflectance range mapped to 1..255 (0-0.2: DN 0-2000 of the L3A products,
    the range of the Theia true-colour chain); each input's scale turns its DN into reflectance.
    It applies to the default layer only.
    `cell` (bounds in `crs`) restricts the grid to one part of a mosaic written in parts.
    `codec` names one of CODECS; with a lossy one, no data is an internal mask instead of 0.
    """
    compression = codec_named(codec)
    layer = layer if layer is not None else TrueColour(stretch)
    layer.check_codec(codec.lower(), compression.lossy)
    if not inputs:
        raise NoInputs("no tile to mosaic")
    area = area_in_crs(area_lonlat, crs)
    if cell is not None:
        inputs = near_cell(inputs, cell, crs)
        if not inputs:
            raise NoInputs("no input tile near the cell")
    with contextlib.ExitStack() as stack:
        # no boto3 session made for each mosaic: the credentials are the process's options
        stack.enter_context(rasterio.Env(session=DummySession(), GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        sources = [_source(i, crs) for i in inputs]
        transform, width, height = mosaic_grid(
            area, [s.footprint for s in sources], resolution, cell
        )
        if cell is not None:
            sources = [s for s in sources if s.footprint.intersects(box(*cell))]
        grid = OutputGrid(crs=crs, transform=transform, width=width, height=height)
        reader = _Views(grid)
        stack.callback(reader.close)
        writer = stack.enter_context(
            cog.cog_writer(
                out_path,
                width=width,
                height=height,
                count=layer.count,
                dtype=layer.dtype,
                crs=crs,
                transform=transform,
                nodata=None if compression.lossy else layer.nodata,
                photometric=layer.photometric,
                masked=compression.lossy,
                **cog_overrides(layer, codec),
            )
        )
        valid = inside = 0
        used: set[str] = set()
        windows = list(_windows(width, height, block_size))
        last = _last_windows(sources, grid, windows)
        for number, window in enumerate(windows):
            finished = {id(s) for s in sources if last.get(id(s)) == number}
            pixels, window_used, in_area = _render(
                reader, sources, area, grid, window, layer, finished
            )
            has_data = pixels[0] != layer.nodata
            if compression.lossy:
                writer.write(fill_outside(pixels, has_data), window=window)
                writer.write_mask(has_data.astype(np.uint8) * 255, window=window)
            else:
                writer.write(pixels, window=window)
            valid += int(has_data.sum())
            inside += int(in_area.sum())
            used.update(window_used)
    bounds = rasterio.transform.array_bounds(height, width, transform)
    return MosaicResult(
        bounds=(bounds[0], bounds[1], bounds[2], bounds[3]),
        crs=crs,
        shape=(height, width),
        valid_fraction=valid / inside if inside else 0.0,
        tiles_used=tuple(sorted(used)),
    )


def cog_overrides(layer: Layer, codec: str) -> dict[str, str]:
    """The COG options of a layer written with `codec`: the codec's, and the layer's overview
    resampling (nearest for values that must never be mixed)."""
    options = dict(codec_named(codec).options)
    if layer.overview_resampling:
        options["OVERVIEW_RESAMPLING"] = layer.overview_resampling
    return options


def near_cell(
    inputs: Sequence[TileInput], cell: tuple[float, float, float, float], crs: str
) -> list[TileInput]:
    """The inputs that may meet `cell` (bounds in `crs`), judged without opening any raster.

    An input without `extent_lonlat` is kept (its footprint is read from the raster later).
    """
    grown = box(*cell).buffer(CELL_MARGIN_M).segmentize(CELL_MARGIN_M)
    around = shape(transform_geom(crs, LONLAT, mapping(grown)))
    return [i for i in inputs if i.extent_lonlat is None or i.extent_lonlat.intersects(around)]


def _source(item: TileInput, crs: str) -> _Source:
    with rasterio.open(item.reference.path) as src:
        bounds = _bounds_in(src.crs.to_wkt(), tuple(src.bounds), crs)
    lon, lat = item.centre_lonlat
    xs, ys = rasterio.warp.transform(LONLAT, crs, [lon], [lat])
    return _Source(input=item, footprint=box(*bounds), centre=(xs[0], ys[0]))


@functools.lru_cache(maxsize=1024)
def _bounds_in(
    src_crs: str, bounds: tuple[float, ...], crs: str
) -> tuple[float, float, float, float]:
    """`transform_bounds` (densified), kept: each costs about 20 ms of PROJ set-up, and the
    parts plan and the mosaic ask for the footprint of every tile, whose bounds repeat."""
    left, bottom, right, top = transform_bounds(src_crs, crs, *bounds, densify_pts=21)
    return left, bottom, right, top


def _windows(width: int, height: int, block_size: int) -> Iterator[Window]:
    for row in range(0, height, block_size):
        for col in range(0, width, block_size):
            yield Window(col, row, min(block_size, width - col), min(block_size, height - row))


def _extent(grid: OutputGrid, window: Window) -> BaseGeometry:
    """A window's rectangle in the grid's CRS."""
    affine = grid.transform @ Affine.translation(window.col_off, window.row_off)
    height, width = int(window.height), int(window.width)
    return box(affine.c, affine.f + height * affine.e, affine.c + width * affine.a, affine.f)


def _last_windows(
    sources: Sequence[_Source], grid: OutputGrid, windows: Sequence[Window]
) -> dict[int, int]:
    """For each source (by `id`), the number of the last window its footprint meets: past it,
    its views on the grid can be closed."""
    last: dict[int, int] = {}
    for number, window in enumerate(windows):
        extent = _extent(grid, window)
        for source in sources:
            if source.footprint.intersects(extent):
                last[id(source)] = number
    return last


def _render(
    reader: _Views,
    sources: Sequence[_Source],
    area: BaseGeometry,
    grid: OutputGrid,
    window: Window,
    layer: Layer,
    finished: set[int] | frozenset[int] = frozenset(),
) -> tuple[np.ndarray, set[str], np.ndarray]:
    """The pixels of one window as written, the tiles that gave them, and the in-area mask.

    The views of the sources in `finished` (by `id`: no later window meets them) are closed
    as soon as they are read (`_Views.once`)."""
    shape_hw = (int(window.height), int(window.width))
    affine = grid.transform @ Affine.translation(window.col_off, window.row_off)
    extent = _extent(grid, window)
    in_area = _area_mask(area, extent, affine, shape_hw)
    candidates = [s for s in sources if s.footprint.intersects(extent)]
    if not candidates or not in_area.any():
        return layer.encode(layer.blank(shape_hw)), set(), in_area
    # one candidate at a time (memory does not grow with the tiles a window meets); a strict
    # `<` keeps the first of equally near tiles, as `nearest_valid` does
    xs = affine.c + (np.arange(shape_hw[1]) + 0.5) * affine.a
    ys = affine.f + (np.arange(shape_hw[0]) + 0.5) * affine.e
    best = np.full(shape_hw, np.inf)
    picked = layer.blank(shape_hw)
    choice = np.full(shape_hw, -1, dtype=np.int32)
    for index, source in enumerate(candidates):
        with reader.once() if id(source) in finished else contextlib.nullcontext():
            values, ok = layer.read(reader, source.input, window)
        distance = (xs[None, :] - source.centre[0]) ** 2 + (ys[:, None] - source.centre[1]) ** 2
        better = ok & in_area & (distance < best)
        best[better] = distance[better]
        picked[:, better] = values[:, better]
        choice[better] = index
    used = {candidates[i].input.tile for i in np.unique(choice[choice >= 0]).tolist()}
    return layer.encode(picked), used, in_area


class _Views:
    """The inputs reprojected onto the mosaic grid (a `WarpedVRT` each), at most `capacity`
    open at once, the least recently read closed first.

    An open view costs about 4.5 MB (its warper and transformation): with every view of
    France's 116 tiles open, a mosaic at 1830 m peaked at 1.6 GB. Windows go row by row, so
    the views of one row of windows stay open and a view is reopened at most once per row.
    The views of an input that no later window meets are closed at once (`once`).
    """

    def __init__(self, grid: OutputGrid, capacity: int = MAX_OPEN_VIEWS) -> None:
        self._grid = grid
        self._capacity = capacity
        self._open: OrderedDict[
            tuple[str, str, float | None], tuple[contextlib.ExitStack, WarpedVRT]
        ] = OrderedDict()
        self._once = False

    @contextlib.contextmanager
    def once(self) -> Iterator[None]:
        """Inside, each view is closed as soon as it is read: for an input read for the last
        time.

        Besides memory, this is time: GDAL keeps the coordinate transformation of a closed
        view for the next view between the same CRSs (about 2 ms to make it so), while a view
        made when no closed one left its transformation has PROJ make one (about 40 ms)."""
        self._once = True
        try:
            yield
        finally:
            self._once = False

    def read(
        self, ref: RasterRef, window: Window, resampling: Resampling, fill: float
    ) -> tuple[np.ndarray, float | None]:
        """Raw values of `ref` in `window` of the grid and their nodata value (outside the
        source: its nodata, or `fill` if it has none)."""
        key = (ref.path, resampling.name, ref.nodata)
        if self._once:
            found = self._open.pop(key, None)
            stack, view = found if found is not None else self._view(ref, resampling, fill)
            with stack:
                return view.read(ref.band, window=window), view.nodata
        if key in self._open:
            self._open.move_to_end(key)
        else:
            self._open[key] = self._view(ref, resampling, fill)
            while len(self._open) > self._capacity:
                _, (stack, _) = self._open.popitem(last=False)
                stack.close()
        view = self._open[key][1]
        return view.read(ref.band, window=window), view.nodata

    def close(self) -> None:
        while self._open:
            _, (stack, _) = self._open.popitem()
            stack.close()

    def _view(
        self, ref: RasterRef, resampling: Resampling, fill: float
    ) -> tuple[contextlib.ExitStack, WarpedVRT]:
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(rasterio.open(ref.path))
            src_nodata = ref.nodata if ref.nodata is not None else src.nodata
            grid = self._grid
            vrt = stack.enter_context(
                WarpedVRT(
                    src, crs=grid.crs, transform=grid.transform, width=grid.width,
                    height=grid.height, resampling=resampling, src_nodata=src_nodata,
                    nodata=src_nodata if src_nodata is not None else fill,
                    NUM_THREADS=WARP_THREADS,
                )
            )  # fmt: skip
            return stack.pop_all(), vrt


def _area_mask(
    area: BaseGeometry, extent: BaseGeometry, affine: Affine, shape_hw: tuple[int, int]
) -> np.ndarray:
    """True inside the area; the border is clipped to the window first (cheap per window)."""
    local = shapely.clip_by_rect(area, *extent.bounds)
    if local.is_empty:
        return np.zeros(shape_hw, dtype=bool)
    return geometry_mask([mapping(local)], out_shape=shape_hw, transform=affine, invert=True)


def write_preview_png(
    cog_path: str, png_path: str, max_size: int = 1024, colour_map: ColourMap | None = None
) -> tuple[int, int]:
    """A PNG thumbnail (RGBA, transparent where no data) read from the COG's overviews.

    Transparency follows the COG's mask: its nodata value, or the internal mask of a lossy
    codec. A single-band COG is coloured with `colour_map` (its nodata transparent).

    Returns (height, width). Reading with a reduced `out_shape` makes GDAL use the overview
    closest to that size, so the cost does not grow with the mosaic.
    """
    with rasterio.open(cog_path) as src:
        factor = max(src.width, src.height) / max_size
        scale = max(factor, 1.0)
        height = max(1, round(src.height / scale))
        width = max(1, round(src.width / scale))
        mask = src.dataset_mask(out_shape=(height, width), resampling=Resampling.nearest)
        if colour_map is not None:
            values = src.read(1, out_shape=(height, width), resampling=Resampling.nearest)
            rgba = colour_map.rgba(values, src.nodata)
            rgba[3] = np.where(mask > 0, rgba[3], 0)
        else:
            rgb = src.read([1, 2, 3], out_shape=(3, height, width), resampling=Resampling.nearest)
            alpha = np.where(mask > 0, 255, 0).astype(np.uint8)
            rgba = np.concatenate([rgb, alpha[None]])
    with warnings.catch_warnings(), rasterio.MemoryFile() as memory:
        # a thumbnail has no georeferencing, on purpose
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(driver="GTiff", width=width, height=height, count=4, dtype="uint8") as tmp:
            tmp.write(rgba)
        with memory.open() as tmp:
            rasterio.shutil.copy(tmp, png_path, driver="PNG")
    return height, width
