"""Reading a few pixels of a COG: the window under a point or a small polygon.

The window is found on a reference grid (the finest mask of a product, from its Item's
`proj:*` fields, without opening anything), then each asset is read over the same ground
window onto that grid, so that a 20 m band and a 10 m mask line up pixel for pixel. GDAL reads
the COG's header and the one block (or few) holding the window: never a whole band.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.io import DatasetReader
from rasterio.warp import transform, transform_geom
from rasterio.windows import Window

from sansnuages import errors
from sansnuages.raster.cog import s3_to_vsi


@dataclass(frozen=True)
class GroundWindow:
    """Pixels of a reference grid: where to read, and which of them are the point or polygon."""

    crs: str
    transform: Affine
    window: Window
    inside: np.ndarray

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        left, top = t @ (self.window.col_off, self.window.row_off)
        right, bottom = t @ (
            self.window.col_off + self.window.width,
            self.window.row_off + self.window.height,
        )
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)


def reference_grid(asset: Mapping[str, Any]) -> tuple[str, Affine, tuple[int, int]]:
    """(CRS, transform, (rows, cols)) of an asset from its projection fields."""
    code = asset.get("proj:code") or f"EPSG:{asset.get('proj:epsg')}"
    t = asset.get("proj:transform")
    shape = asset.get("proj:shape")
    if not t or not shape:
        raise errors.NotFound("an asset without its grid (proj:transform, proj:shape)")
    return str(code), Affine(*t[:6]), (int(shape[0]), int(shape[1]))


def ground_window(
    asset: Mapping[str, Any], geometry: Mapping[str, Any], max_pixels: int
) -> GroundWindow | None:
    """The window of a point or polygon (GeoJSON, longitude/latitude) on an asset's grid;
    None where it falls outside the grid. A polygon over more than `max_pixels` pixels of the
    grid is a 400 (`InvalidRequest`)."""
    crs, t, (rows, cols) = reference_grid(asset)
    if geometry["type"] == "Point":
        lon, lat = geometry["coordinates"][:2]
        xs, ys = transform(CRS.from_epsg(4326), CRS.from_user_input(crs), [lon], [lat])
        col, row = ~t @ (xs[0], ys[0])
        c, r = math.floor(col), math.floor(row)
        if not (0 <= r < rows and 0 <= c < cols):
            return None
        return GroundWindow(crs, t, Window(c, r, 1, 1), np.ones((1, 1), bool))
    projected = transform_geom("EPSG:4326", crs, dict(geometry))
    xs, ys = _coordinates(projected)
    col0, row0 = ~t @ (min(xs), max(ys))
    col1, row1 = ~t @ (max(xs), min(ys))
    c0, c1 = max(0, math.floor(min(col0, col1))), min(cols, math.ceil(max(col0, col1)))
    r0, r1 = max(0, math.floor(min(row0, row1))), min(rows, math.ceil(max(row0, row1)))
    if c1 <= c0 or r1 <= r0:
        return None
    if (c1 - c0) * (r1 - r0) > max_pixels:
        raise errors.InvalidRequest(
            f"the polygon covers {(c1 - c0) * (r1 - r0):,} pixels of a product's grid, "
            f"over the limit of {max_pixels:,} pixels"
        )
    window = Window(c0, r0, c1 - c0, r1 - r0)
    window_transform = t @ Affine.translation(c0, r0)
    shape = (r1 - r0, c1 - c0)
    inside = ~geometry_mask([projected], shape, window_transform, all_touched=False)
    if not inside.any():  # smaller than a pixel: the pixels it touches
        inside = ~geometry_mask([projected], shape, window_transform, all_touched=True)
    return GroundWindow(crs, t, window, inside)


def _coordinates(geometry: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    stack: list[Any] = [geometry["coordinates"]]
    while stack:
        value = stack.pop()
        if value and isinstance(value[0], int | float):
            xs.append(float(value[0]))
            ys.append(float(value[1]))
        else:
            stack.extend(value)
    return xs, ys


MAX_OPEN = 1024
"""Rasters kept open between reads (a warm API function keeps them between requests): their
headers are not read again, and GDAL's block cache answers a point read twice."""
_open: OrderedDict[tuple[str, str], tuple[threading.Lock, DatasetReader]] = OrderedDict()
_open_lock = threading.Lock()


@contextlib.contextmanager
def open_raster(href: str, version: str = "") -> Iterator[DatasetReader]:
    """A raster opened once and kept (least recently used first out), for one reader at a
    time. `version` (the asset's checksum) tells a file replaced under the same key apart."""
    key = (href, version)
    with _open_lock:
        entry = _open.pop(key, None)
        if entry is not None:
            _open[key] = entry
    if entry is None:
        dataset = rasterio.open(s3_to_vsi(href))
        with _open_lock:
            entry = _open.get(key)
            if entry is None:
                entry = _open[key] = (threading.Lock(), dataset)
                dataset = None
            evicted = [_open.popitem(last=False)[1] for _ in range(len(_open) - MAX_OPEN)]
        if dataset is not None:  # another reader opened it meanwhile
            dataset.close()
        for lock, old in evicted:
            with lock:
                old.close()
    lock, dataset = entry
    with lock:
        yield dataset


MAX_KEPT_BYTES = 64 * 2**20
"""Pixel values kept between reads: a point asked again, or the same products in a shifted
date range (the viewer's next month), costs no decoding. Values of a file are keyed by its
checksum, so a replaced file is read again."""
_kept: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_kept_bytes = 0


def read_window(href: str, ground: GroundWindow, band: int = 1, version: str = "") -> np.ndarray:
    """One band of a raster over the ground window, on the window's grid (nearest pixel)."""
    global _kept_bytes
    w = ground.window
    key = (href, version, band, ground.crs, tuple(ground.transform)[:6],
           w.col_off, w.row_off, w.width, w.height)  # fmt: skip
    if version:
        with _open_lock:
            found = _kept.pop(key, None)
            if found is not None:
                _kept[key] = found
                return found.copy()
    with open_raster(href, version) as dataset:
        if dataset.transform == ground.transform:  # the window's own grid: read it as is
            data = np.asarray(dataset.read(band, window=w))
        else:
            own = dataset.window(*ground.bounds)
            shape = (int(w.height), int(w.width))
            data = np.asarray(
                dataset.read(band, window=own, out_shape=shape, resampling=Resampling.nearest)
            )
    if version:
        with _open_lock:
            if key not in _kept:
                _kept[key] = data.copy()
                _kept_bytes += data.nbytes
            while _kept_bytes > MAX_KEPT_BYTES and _kept:
                _kept_bytes -= _kept.popitem(last=False)[1].nbytes
    return data
