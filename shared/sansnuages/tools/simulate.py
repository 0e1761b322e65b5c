"""Realistic MUSCATE L2A products made from nothing, for tests, demos and benchmarks.

Real products cannot be downloaded here, so the simulator writes zips that look like MUSCATE's
(names, folders, data types, metadata) over a ground truth that is known exactly: a synthesis
can then be checked against `truth_reflectance`.

Everything is a function of position on the Earth (not of the tile), so overlapping tiles
agree and neighbouring UTM zones join: land cover comes from value noise over a global
sinusoidal plane. Clouds, shadows, haze and swath edges vary with the product. Rasters are
written by windows, so a full 10980 x 10980 tile needs bounded memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing
import os
import re
import sys
import time
import warnings
import xml.etree.ElementTree as ET  # noqa: S405 - used to write, never to parse
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sansnuages.formats import grid as s2grid
from sansnuages.formats.bands import bands_of, is_landsat
from sansnuages.formats.muscate import GroupGeometry, groups_for
from sansnuages.raster import brdf

if TYPE_CHECKING:
    from rasterio.io import DatasetReader, DatasetWriter, MemoryFile

PLATFORMS = ("SENTINEL2A", "SENTINEL2B", "SENTINEL2C", "LANDSAT8-OLITIRS-XS")
LANDSAT_PLATFORM = "LANDSAT8-OLITIRS-XS"
GROUP_FACTOR = {"R1": 1, "R2": 2, "XS": 3}
REFLECTANCE_NODATA = -10000
EARTH_RADIUS_M = 6371007.0
WINDOW = 1024  # pixels per side of a processing window: about 4 MB per float32 layer
# Launch epochs and orbit periods, for plausible absolute orbit numbers.
ORBITS = {
    "SENTINEL2A": (dt.datetime(2015, 6, 23, tzinfo=dt.UTC), 10.0 / 143.0),
    "SENTINEL2B": (dt.datetime(2017, 3, 7, tzinfo=dt.UTC), 10.0 / 143.0),
    "SENTINEL2C": (dt.datetime(2024, 9, 5, tzinfo=dt.UTC), 10.0 / 143.0),
    LANDSAT_PLATFORM: (dt.datetime(2013, 2, 11, tzinfo=dt.UTC), 16.0 / 233.0),
}

# Reflectance spectra (wavelength in um -> reflectance), interpolated at each band's centre.
SPECTRA_UM = np.array([0.443, 0.490, 0.560, 0.665, 0.705, 0.740, 0.783, 0.842, 0.865, 1.61, 2.19])
GREEN_VEGETATION = np.array([0.03, 0.035, 0.08, 0.035, 0.12, 0.30, 0.38, 0.41, 0.42, 0.22, 0.10])
DORMANT_VEGETATION = np.array([0.05, 0.06, 0.08, 0.09, 0.13, 0.18, 0.21, 0.23, 0.24, 0.28, 0.18])
BARE_SOIL = np.array([0.07, 0.085, 0.12, 0.16, 0.18, 0.20, 0.22, 0.24, 0.25, 0.33, 0.28])
WATER = np.array([0.05, 0.045, 0.04, 0.022, 0.018, 0.011, 0.009, 0.007, 0.006, 0.004, 0.003])
CLOUD_TOP = np.array([0.55, 0.56, 0.57, 0.58, 0.58, 0.58, 0.58, 0.58, 0.58, 0.45, 0.32])

# CLM bits (Theia order) and MG2 bits used here.
CLM_ALL, CLM_CLOUD, CLM_MONO, CLM_THIN, CLM_SHADOW = 1, 2, 4, 16, 32
MG2_WATER, MG2_CLOUD, MG2_SHADOW = 1, 2, 8
CLOUD_OPACITY = 0.3  # opacity above which a cloud is flagged (thinner edges are "thinnest")


@dataclass(frozen=True)
class Packaging:
    """How a product is packed, as real products differ: each field is a variant seen in the wild.

    `dot_paths`: zip members and metadata file paths start with "./"; `atb_dtype`: ATB as
    uint8 (usual) or uint16; `with_dfp`: the optional DFP defective-pixel masks are present;
    `with_dtf`: the optional DTF detector-footprint masks are present (one file per group and
    detector, `_DTF_R1-D04.tif`); `zip_version`: the zip's own name carries the version (the folder inside always does).
    """

    dot_paths: bool = False
    atb_dtype: str = "uint8"
    with_dfp: bool = False
    with_dtf: bool = False
    zip_version: bool = True


@dataclass(frozen=True)
class Failures:
    """Ways real products fail that the default simulation leaves out (all off by default, so
    that products made without them are exactly those of earlier versions).

    - `thin_cloud`: share of products carrying a thin cloud layer (peak opacity
      `thin_opacity`, over about a third of the tile) that the cloud mask misses entirely;
    - `edge_opacity`: the mask flags cloud only from this opacity up (the default simulation
      flags from `CLOUD_OPACITY`, 0.3): a higher value leaves wider cloud edges unflagged;
    - `shadow_omission`: share of the cloud shadows (by area, in patches of a few km) that the
      mask misses; `shadow_depth`: how much a shadow darkens the surface (0.6 by default);
    - `smoke_days`: (first, last) acquisition dates of a smoke or haze event lasting several
      days, during which aerosol `smoke_aot` (peak; patchy over tens of km) is added to the
      view, and only `smoke_reported` of it appears in the product's AOT.
    """

    thin_cloud: float = 0.0
    thin_opacity: float = 0.2
    edge_opacity: float = CLOUD_OPACITY
    shadow_omission: float = 0.0
    shadow_depth: float = 0.6
    smoke_days: tuple[dt.date, dt.date] | None = None
    smoke_aot: float = 0.0
    smoke_reported: float = 0.3

    def smoky(self, day: dt.date) -> bool:
        return self.smoke_days is not None and self.smoke_days[0] <= day <= self.smoke_days[1]


REALISTIC_FAILURES = Failures(
    thin_cloud=0.15,
    thin_opacity=0.1,
    edge_opacity=0.4,
    shadow_omission=0.3,
    shadow_depth=0.7,
    smoke_aot=0.25,
)
"""The failure rates of `bench/quality.py --failures` (the smoke days are set per month there):
15 % of the products with an unflagged thin cloud layer (opacity up to 0.1), cloud flagged
from opacity 0.4 up, 30 % of the shadows missed, shadows darkening the surface by 70 %, smoke
of AOT up to 0.25 of which the AOT product reports 30 %. Chosen among three settings as the
one whose ranking of the methods on B4, B8, B11 is the real series' (README)."""


# --------------------------------------------------------------------------- noise


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) value per lattice node: the same node always gives the same value."""
    with np.errstate(over="ignore"):
        h = ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= np.uint64(salt & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _value_noise(x: np.ndarray, y: np.ndarray, scale: float, salt: int) -> np.ndarray:
    """Smooth noise of feature size `scale` (metres); the lattice nodes of the area are hashed
    once into a small table that every pixel then reads, which is much faster than hashing
    four nodes per pixel."""
    gx, gy = x * (1.0 / scale), y * (1.0 / scale)
    cell_x, cell_y = np.floor(gx), np.floor(gy)
    ix0, iy0 = int(cell_x.min()), int(cell_y.min())
    width = int(cell_x.max()) - ix0 + 2
    height = int(cell_y.max()) - iy0 + 2
    nodes_x, nodes_y = np.meshgrid(np.arange(ix0, ix0 + width), np.arange(iy0, iy0 + height))
    table = _hash01(nodes_x, nodes_y, salt).astype(np.float32).ravel()
    index = (cell_y - iy0).astype(np.intp) * width + (cell_x - ix0).astype(np.intp)
    fx = (gx - cell_x).astype(np.float32)
    fy = (gy - cell_y).astype(np.float32)
    fx *= fx * (3 - 2 * fx)
    fy *= fy * (3 - 2 * fy)
    v00, v10 = table[index], table[index + 1]
    top = v00 + (v10 - v00) * fx
    v01, v11 = table[index + width], table[index + width + 1]
    bottom = v01 + (v11 - v01) * fx
    return top + (bottom - top) * fy


def _fbm(x: np.ndarray, y: np.ndarray, scales: tuple[float, ...], salt: int) -> np.ndarray:
    """Octaves of value noise, largest first with the most weight; about 0.5 on average."""
    total = np.zeros(x.shape, dtype=np.float32)
    norm = 0.0
    for i, scale in enumerate(scales):
        weight = 0.55**i
        total += weight * _value_noise(x, y, scale, salt * 31 + i)
        norm += weight
    return total / np.float32(norm)


_MEMO: OrderedDict[tuple[object, ...], tuple[np.ndarray, ...]] = OrderedDict()
MEMO_BYTES = 96 * 2**20
"""What the fields that depend on position only (not on the product) may keep in memory: a
tile's products share their grids, so its land cover, terrain and plane coordinates are
computed once instead of once per product (a month of one tile is about a dozen products)."""


def _memo(
    key: tuple[object, ...], make: Callable[[], tuple[np.ndarray, ...]]
) -> tuple[np.ndarray, ...]:
    """`make()`, remembered under `key` (least recently used first out, within `MEMO_BYTES`).
    The arrays are read-only: a caller that changed one in place would change every later
    product, so it fails instead."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    arrays = make()
    size = sum(a.nbytes for a in arrays)
    if size > MEMO_BYTES // 4:
        return arrays
    for array in arrays:
        array.flags.writeable = False
    _MEMO[key] = arrays
    while sum(a.nbytes for v in _MEMO.values() for a in v) > MEMO_BYTES:
        _MEMO.popitem(last=False)
    return arrays


def _stable_int(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


# --------------------------------------------------------------------------- geometry


def _plane_xy(epsg: int, geom: GroupGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres on a global sinusoidal plane (metres), the same whatever the UTM zone.

    PROJ is only called on a coarse lattice (about 2 km); positions in between are
    interpolated, which is exact to well under a metre and keeps full tiles fast.
    Remembered (`_memo`): the products of a tile share their grids.
    """
    x, y = _memo(("plane", epsg, geom), lambda: _plane_xy_of(epsg, geom))
    return x, y


def _plane_xy_of(epsg: int, geom: GroupGeometry) -> tuple[np.ndarray, np.ndarray]:
    width, height = geom.ncols * geom.xdim, geom.nrows * -geom.ydim
    nx = max(2, math.ceil(width / 2000.0) + 1)
    ny = max(2, math.ceil(height / 2000.0) + 1)
    node_x = np.linspace(geom.ulx, geom.ulx + width, nx)
    node_y = np.linspace(geom.uly, geom.uly - height, ny)
    mesh_x, mesh_y = np.meshgrid(node_x, node_y)
    lons, lats = s2grid.utm_to_lonlat(epsg, mesh_x.ravel(), mesh_y.ravel())
    lat_r = np.radians(lats)
    px = (EARTH_RADIUS_M * np.radians(lons) * np.cos(lat_r)).reshape(ny, nx)
    py = (EARTH_RADIUS_M * lat_r).reshape(ny, nx)
    cols = (np.arange(geom.ncols) + 0.5) / geom.ncols * (nx - 1)
    rows = (np.arange(geom.nrows) + 0.5) / geom.nrows * (ny - 1)
    return _bilinear(px, rows, cols), _bilinear(py, rows, cols)


def _bilinear(nodes: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r0 = np.minimum(rows.astype(np.int64), nodes.shape[0] - 2)
    c0 = np.minimum(cols.astype(np.int64), nodes.shape[1] - 2)
    wr = (rows - r0)[:, None]
    wc = (cols - c0)[None, :]
    top = nodes[r0][:, c0] * (1 - wc) + nodes[r0][:, c0 + 1] * wc
    bottom = nodes[r0 + 1][:, c0] * (1 - wc) + nodes[r0 + 1][:, c0 + 1] * wc
    return top * (1 - wr) + bottom * wr


def _coarse(
    epsg: int, geom: GroupGeometry, field: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """A field that varies over tens of km, computed every 8 pixels and interpolated."""
    rows, cols = max(2, math.ceil(geom.nrows / 8) + 1), max(2, math.ceil(geom.ncols / 8) + 1)
    coarse = GroupGeometry(
        geom.ulx, geom.uly, geom.xdim * geom.ncols / cols, geom.ydim * geom.nrows / rows, rows, cols
    )
    values = field(*_plane_xy(epsg, coarse))
    at_rows = np.clip((np.arange(geom.nrows) + 0.5) * rows / geom.nrows - 0.5, 0, rows - 1)
    at_cols = np.clip((np.arange(geom.ncols) + 0.5) * cols / geom.ncols - 0.5, 0, cols - 1)
    return _bilinear(values, at_rows, at_cols).astype(np.float32)


def _utm_xy(geom: GroupGeometry) -> tuple[np.ndarray, np.ndarray]:
    xs = geom.ulx + (np.arange(geom.ncols) + 0.5) * geom.xdim
    ys = geom.uly + (np.arange(geom.nrows) + 0.5) * geom.ydim
    return np.meshgrid(xs, ys)


def _windows(geom: GroupGeometry, size: int = WINDOW) -> Iterator[tuple[int, int, GroupGeometry]]:
    for row in range(0, geom.nrows, size):
        for col in range(0, geom.ncols, size):
            sub = GroupGeometry(
                ulx=geom.ulx + col * geom.xdim,
                uly=geom.uly + row * geom.ydim,
                xdim=geom.xdim,
                ydim=geom.ydim,
                nrows=min(size, geom.nrows - row),
                ncols=min(size, geom.ncols - col),
            )
            yield row, col, sub


def group_geometries(tile: str, platform: str, resolution: float) -> dict[str, GroupGeometry]:
    """Pixel grids of the product's groups; each pixel size must divide the tile exactly."""
    square = s2grid.tile(tile)
    geometries = {}
    for group in groups_for(platform):
        pixel = resolution * GROUP_FACTOR[group]
        count = round(square.size_m / pixel) if pixel > 0 else 0
        if pixel <= 0 or abs(count * pixel - square.size_m) > 1e-6:
            raise ValueError(
                f"resolution {resolution:g} m gives {pixel:g} m pixels for group {group}, "
                f"which do not divide the {square.size_m:.0f} m tile exactly "
                f"(Sentinel-2 needs a divisor of 54900, Landsat-8 of 36600; e.g. 10, 60, 1220)"
            )
        geometries[group] = GroupGeometry(square.ulx, square.uly, pixel, -pixel, count, count)
    return geometries


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class _Surface:
    """Land cover of a window: weights of water and bare soil, vegetation state, texture."""

    water: np.ndarray
    soil: np.ndarray
    greenness: np.ndarray
    brightness: np.ndarray
    texture: np.ndarray


def _surface(x: np.ndarray, y: np.ndarray, day: dt.date) -> _Surface:
    return _surface_on(_land(x, y), day)


def _surface_at(epsg: int, geom: GroupGeometry, day: dt.date) -> _Surface:
    """`_surface` of a grid, its land cover remembered: only the season changes per product."""
    land = _memo(("land", epsg, geom), lambda: _land(*_plane_xy(epsg, geom)))
    return _surface_on(land, day)


def _land(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """What of the surface depends on position only: water, soil, brightness, texture and the
    crops' peak day."""
    lakes = _fbm(x, y, (9000.0, 3500.0, 1200.0), salt=11)
    fields = _fbm(x, y, (4000.0, 1500.0), salt=23)
    crops = _value_noise(x, y, 2500.0, salt=37)
    fine = _fbm(x, y, (600.0, 250.0), salt=41)
    water = np.clip((0.33 - lakes) / 0.015, 0.0, 1.0)
    soil = np.clip((fields - 0.62) / 0.02, 0.0, 1.0)
    peak = 170.0 + 90.0 * (crops - 0.5)  # crops and forests peak between May and August
    return (
        water.astype(np.float32),
        soil.astype(np.float32),
        (0.8 + 0.45 * fields).astype(np.float32),
        (0.94 + 0.12 * fine).astype(np.float32),
        peak,
    )


def _surface_on(land: tuple[np.ndarray, ...], day: dt.date) -> _Surface:
    water, soil, brightness, texture, peak = land
    distance = (day.timetuple().tm_yday - peak + 182.5) % 365.0 - 182.5
    greenness = 0.1 + 0.9 * np.exp(-((distance / 65.0) ** 2))
    return _Surface(
        water=water,
        soil=soil,
        greenness=greenness.astype(np.float32),
        brightness=brightness,
        texture=texture,
    )


def _spectrum(table: np.ndarray, wavelength_um: float) -> float:
    return float(np.interp(wavelength_um, SPECTRA_UM, table))


def _surface_reflectance(surface: _Surface, wavelength_um: float) -> np.ndarray:
    green = _spectrum(GREEN_VEGETATION, wavelength_um)
    dormant = _spectrum(DORMANT_VEGETATION, wavelength_um)
    vegetation = dormant + (green - dormant) * surface.greenness
    land = vegetation + (surface.soil * (_spectrum(BARE_SOIL, wavelength_um) * surface.brightness))
    land -= surface.soil * vegetation
    land *= surface.texture
    water = np.float32(_spectrum(WATER, wavelength_um))
    return (land + (water - land) * surface.water).astype(np.float32)


def _wavelength(platform: str, band: str) -> float:
    info = bands_of(platform).get(band)
    if info is None:
        raise ValueError(f"{platform} has no band {band!r}")
    return info.center_wavelength


def truth_reflectance(
    tile: str,
    band: str,
    date: dt.date,
    grid: GroupGeometry,
    platform: str = "SENTINEL2A",
) -> np.ndarray:
    """Cloud-free, haze-free surface reflectance (float32) of `band` on a grid of the tile.

    This is what a perfect synthesis would return: deterministic, and a function of position
    and day only (no product, no seed).
    """
    epsg = s2grid.tile(tile).epsg
    x, y = _plane_xy(epsg, grid)
    day = date.date() if isinstance(date, dt.datetime) else date
    return _surface_reflectance(_surface(x, y, day), _wavelength(platform, band))


# --------------------------------------------------------------------------- one product


@dataclass(frozen=True)
class _Scene:
    """What varies with the product: clouds, their shadows, aerosols, the swath edge."""

    tile: s2grid.Tile
    platform: str
    acquired: dt.datetime
    seed: int
    cloud_threshold: float
    shadow_shift: tuple[float, float]  # (east, north) metres from a cloud to its shadow
    aot_mean: float
    swath: tuple[float, float, float, float] | None  # x0, y0, normal east, normal north
    quantification: float
    view_track: tuple[float, float, float] | None = None
    """Directional effects on: (x, y) of a point of the nadir ground track and its heading
    (degrees); view angles follow from each pixel's distance to the track."""
    failures: Failures | None = None
    thin_layer: bool = False
    """This product carries an unflagged thin cloud layer (`Failures.thin_cloud`)."""


def _cloud_field(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    return _fbm(x, y, (14000.0, 6000.0, 2500.0, 900.0), salt=1000 + seed)


def _cloud_threshold(tile: s2grid.Tile, seed: int, cloud_cover: float) -> float:
    """The level that leaves about `cloud_cover` of the tile under cloud."""
    if cloud_cover <= 0.0:
        return math.inf
    if cloud_cover >= 1.0:
        return -math.inf
    coarse = GroupGeometry(tile.ulx, tile.uly, tile.size_m / 96, -tile.size_m / 96, 96, 96)
    field = _cloud_field(*_plane_xy(tile.epsg, coarse), seed)
    return float(np.quantile(field, 1.0 - cloud_cover))


def solar_angles(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Sun (zenith, azimuth clockwise from north) in degrees, NOAA's low-accuracy formulae."""
    when = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    hour = when.hour + when.minute / 60.0 + when.second / 3600.0
    gamma = 2 * math.pi / 365.0 * (when.timetuple().tm_yday - 1 + (hour - 12) / 24.0)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    hour_angle = math.radians((hour * 60.0 + eqtime + 4.0 * lon) / 4.0 - 180.0)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(
        hour_angle
    )
    zenith = math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    azimuth = math.degrees(
        math.atan2(
            math.sin(hour_angle),
            math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi),
        )
    )
    return zenith, (azimuth + 180.0) % 360.0


def overpass_time(tile: str, day: dt.date, platform: str) -> dt.datetime:
    """A plausible acquisition time: 10:30 (Sentinel-2) or 10:10 (Landsat-8) local solar time."""
    lon, _ = s2grid.tile(tile).centre_lonlat
    local = 10.0 + 1.0 / 6.0 if is_landsat(platform) else 10.5
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    stamp = start + dt.timedelta(hours=local - lon / 15.0)
    millis = _stable_int(tile, day, platform) % 60000
    return stamp.replace(second=0, microsecond=0) + dt.timedelta(milliseconds=millis)


def _view_track(tile: s2grid.Tile, platform: str, seed: int) -> tuple[float, float, float]:
    """Where the nadir track passes: descending, heading a little west of south, at a random
    distance east or west of the tile centre that keeps the tile inside the swath (290 km for
    Sentinel-2, 185 km for Landsat-8), so view zenith spans about 0-10.5 (0-7.5) degrees."""
    rng = np.random.default_rng([seed, 11])  # its own stream: other draws stay as they were
    half_swath = 92_500.0 if is_landsat(platform) else 145_000.0
    reach = max(0.0, half_swath - tile.size_m / 2)
    centre_x, centre_y = tile.ulx + tile.size_m / 2, tile.uly - tile.size_m / 2
    return centre_x + rng.uniform(-reach, reach), centre_y, 180.0 + rng.uniform(8.0, 16.0)


def _scene(
    tile: s2grid.Tile,
    platform: str,
    acquired: dt.datetime,
    seed: int,
    cloud_cover: float,
    directional: bool = False,
    failures: Failures | None = None,
) -> _Scene:
    rng = np.random.default_rng(seed)
    lon, lat = tile.centre_lonlat
    zenith, azimuth = solar_angles(acquired, lon, lat)
    height = rng.uniform(1200.0, 3500.0)
    reach = height * math.tan(math.radians(min(zenith, 80.0)))
    shift = (-reach * math.sin(math.radians(azimuth)), -reach * math.cos(math.radians(azimuth)))
    swath = None
    if rng.random() < 0.35:
        heading = math.radians(rng.uniform(-16.0, -8.0))  # ground tracks lean west of north
        side = 1.0 if rng.random() < 0.5 else -1.0
        across = rng.uniform(0.15, 0.85) * tile.size_m
        x0 = tile.ulx + (across if side > 0 else tile.size_m - across)
        swath = (
            x0,
            tile.uly - tile.size_m / 2,
            side * math.cos(heading),
            -side * math.sin(heading),
        )
    return _Scene(
        tile=tile,
        platform=platform,
        acquired=acquired,
        seed=seed,
        cloud_threshold=_cloud_threshold(tile, seed, cloud_cover),
        shadow_shift=shift,
        aot_mean=float(rng.uniform(0.06, 0.3)),
        swath=swath,
        quantification=1000.0 if is_landsat(platform) else 10000.0,
        view_track=_view_track(tile, platform, seed) if directional else None,
        failures=failures,
        thin_layer=failures is not None
        and bool(np.random.default_rng([seed, 77]).random() < failures.thin_cloud),
    )


def _view_angles(scene: _Scene, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """View zenith and azimuth at map coordinates, from the distance to the nadir track."""
    assert scene.view_track is not None
    track_x, track_y, heading = scene.view_track
    right = math.radians(heading + 90.0)
    offset = (x - track_x) * math.sin(right) + (y - track_y) * math.cos(right)
    return brdf.across_track_view(offset, brdf.orbit_altitude(scene.platform), heading)


@dataclass(frozen=True)
class _Layers:
    """Everything of one window except the per-band reflectance."""

    surface: _Surface
    opacity: np.ndarray  # cloud, 0..1
    cloud_top: np.ndarray  # brightness multiplier of the cloud top
    shadow: np.ndarray  # 0..1
    aot: np.ndarray
    wvc: np.ndarray
    terrain: np.ndarray  # SRE / FRE
    outside: np.ndarray  # bool, outside the swath
    view: tuple[np.ndarray, np.ndarray] | None = None  # view zenith, azimuth (directional)
    missed: np.ndarray | None = None  # opacity of the unflagged thin cloud layer (failures)
    shadow_missed: np.ndarray | None = None  # bool, shadows the mask misses (failures)
    smoke: np.ndarray | None = None  # aerosol of a smoke event (failures)
    smoke_reported: float = 0.0  # share of `smoke` in the product's AOT
    flag_opacity: float = CLOUD_OPACITY  # the mask flags cloud from this opacity up
    shadow_depth: float = 0.6


def _opacity(field: np.ndarray, threshold: float) -> np.ndarray:
    if math.isinf(threshold):
        value = 0.0 if threshold > 0 else 1.0
        return np.full(field.shape, value, dtype=np.float32)
    return np.clip((field - threshold) / 0.035, 0.0, 1.0).astype(np.float32)


def _layers(scene: _Scene, geom: GroupGeometry) -> _Layers:
    epsg = scene.tile.epsg
    x, y = _plane_xy(epsg, geom)
    cloud = _cloud_field(x, y, scene.seed)
    dx, dy = scene.shadow_shift
    caster = replace(geom, ulx=geom.ulx - dx, uly=geom.uly - dy)
    shadow = _opacity(_cloud_field(*_plane_xy(epsg, caster), scene.seed), scene.cloud_threshold)
    haze = _coarse(epsg, geom, lambda cx, cy: _fbm(cx, cy, (40000.0, 12000.0), 2000 + scene.seed))
    vapour = _coarse(epsg, geom, lambda cx, cy: _fbm(cx, cy, (50000.0, 15000.0), 3000 + scene.seed))
    outside = np.zeros(x.shape, dtype=bool)
    if scene.swath is not None:
        x0, y0, ne, nn = scene.swath
        ux, uy = _utm_xy(geom)
        outside = (ux - x0) * ne + (uy - y0) * nn > 0
    failure: dict[str, object] = {}
    f = scene.failures
    if f is not None:
        failure["flag_opacity"] = f.edge_opacity
        failure["shadow_depth"] = f.shadow_depth
        if scene.thin_layer:
            sheet = _fbm(x, y, (9000.0, 3000.0), salt=4000 + scene.seed)
            failure["missed"] = (f.thin_opacity * np.clip((sheet - 0.5) / 0.1, 0.0, 1.0)).astype(
                np.float32
            )
        if f.shadow_omission > 0:
            patches = _value_noise(x, y, 4000.0, salt=5000 + scene.seed)
            failure["shadow_missed"] = patches < f.shadow_omission
        if f.smoky(scene.acquired.date()) and f.smoke_aot > 0:
            plume = _coarse(epsg, geom, lambda cx, cy: _fbm(cx, cy, (30000.0,), 6000 + scene.seed))
            failure["smoke"] = (f.smoke_aot * np.clip(0.5 + plume, 0.0, 1.0)).astype(np.float32)
            failure["smoke_reported"] = f.smoke_reported
    return _Layers(
        surface=_surface_at(epsg, geom, scene.acquired.date()),
        opacity=_opacity(cloud, scene.cloud_threshold),
        cloud_top=(0.85 + 0.5 * np.clip(cloud - scene.cloud_threshold, 0.0, 0.4)).astype(
            np.float32
        ),
        shadow=shadow,
        aot=np.clip(scene.aot_mean + 0.35 * (haze - 0.5), 0.05, 0.5).astype(np.float32),
        wvc=(0.6 + 2.4 * vapour).astype(np.float32),
        terrain=_memo(("terrain", epsg, geom), lambda: (_terrain(x, y),))[0],
        outside=outside,
        view=_view_angles(scene, *_utm_xy(geom)) if scene.view_track else None,
        **failure,  # type: ignore[arg-type]
    )


def _terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SRE over FRE: a function of position only."""
    return (0.95 + 0.1 * _value_noise(x, y, 700.0, salt=53)).astype(np.float32)


def _observed(
    layers: _Layers,
    wavelength_um: float,
    rng: np.random.Generator,
    directional: np.ndarray | None = None,
) -> np.ndarray:
    """FRE as the satellite sees it: surface (times its directional factor), residual haze,
    shadow, cloud, noise."""
    surface = _surface_reflectance(layers.surface, wavelength_um)
    if directional is not None:
        surface *= directional
    surface += 0.06 * layers.aot * (0.49 / wavelength_um) ** 2
    if layers.smoke is not None:  # the same scattering law, from the whole plume
        surface += 0.06 * layers.smoke * (0.49 / wavelength_um) ** 2
    surface *= 1.0 - layers.shadow_depth * layers.shadow * (1.0 - layers.opacity)
    cloud = _spectrum(CLOUD_TOP, wavelength_um) * layers.cloud_top
    opacity = layers.opacity
    if layers.missed is not None:
        opacity = 1.0 - (1.0 - opacity) * (1.0 - layers.missed)
    value = surface + (cloud - surface) * opacity
    value += rng.normal(0.0, 0.002, value.shape).astype(np.float32)
    return value.astype(np.float32)


def _masks(layers: _Layers) -> dict[str, np.ndarray]:
    cloudy = layers.opacity >= layers.flag_opacity
    thin = (layers.opacity > 0.02) & ~cloudy
    shadowed = (layers.shadow >= CLOUD_OPACITY) & ~cloudy
    if layers.shadow_missed is not None:
        shadowed &= ~layers.shadow_missed
    clm = np.zeros(cloudy.shape, dtype=np.uint8)
    clm[cloudy] |= CLM_ALL | CLM_CLOUD | CLM_MONO
    clm[thin] |= CLM_THIN
    clm[shadowed] |= CLM_ALL | CLM_SHADOW
    mg2 = np.zeros(cloudy.shape, dtype=np.uint8)
    mg2[(layers.surface.water > 0.5) & ~cloudy] |= MG2_WATER
    mg2[cloudy | thin] |= MG2_CLOUD
    mg2[shadowed] |= MG2_SHADOW
    aot = layers.aot
    if layers.smoke is not None:
        aot = aot + layers.smoke_reported * layers.smoke
    atb = np.stack(
        [
            np.clip(np.rint(layers.wvc * 20.0), 1, 255),
            np.clip(np.rint(aot * 200.0), 1, 255),
        ]
    ).astype(np.uint8)
    outside = layers.outside
    for array in (clm, mg2):
        array[outside] = 0
    atb[:, outside] = 0
    return {"CLM": clm, "MG2": mg2, "ATB": atb, "EDG": outside.astype(np.uint8)}


def _quantize(reflectance: np.ndarray, scale: float, outside: np.ndarray) -> np.ndarray:
    dn = np.clip(np.rint(reflectance * scale), -32767, 32767).astype(np.int16)
    dn[outside] = REFLECTANCE_NODATA
    return dn


@dataclass
class _Stats:
    valid: int = 0
    cloudy: int = 0


def _tiff_profile(geom: GroupGeometry, epsg: int, dtype: str, count: int = 1) -> dict:
    block = (
        256
        if min(geom.nrows, geom.ncols) >= 256
        else 16 * math.ceil(min(geom.nrows, geom.ncols) / 16)
    )
    return {
        "driver": "GTiff",
        "width": geom.ncols,
        "height": geom.nrows,
        "count": count,
        "dtype": dtype,
        "crs": f"EPSG:{epsg}",
        "transform": geom.transform,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
    }


def _render_window(
    scene: _Scene, group: str, bands: tuple[str, ...], index: int, geom: GroupGeometry
) -> tuple[dict[str, np.ndarray], _Layers]:
    """Every output array of one window (3-D, band first), keyed like the output files."""
    layers = _layers(scene, geom)
    arrays: dict[str, np.ndarray] = {}
    saturated = np.zeros(layers.outside.shape, dtype=np.uint8)
    for b, band in enumerate(bands):
        rng = np.random.default_rng([scene.seed, GROUP_FACTOR[group], index, b])
        directional = _directional(scene, layers, band)
        fre = _observed(layers, _wavelength(scene.platform, band), rng, directional)
        saturated[fre >= 1.0] |= np.uint8(1 << b)
        arrays[f"FRE_{band}"] = _quantize(fre, scene.quantification, layers.outside)[None]
        sre = fre * layers.terrain
        arrays[f"SRE_{band}"] = _quantize(sre, scene.quantification, layers.outside)[None]
    saturated[layers.outside] = 0
    masks = _masks(layers) | {"SAT": saturated}
    arrays |= {kind: (a if a.ndim == 3 else a[None]) for kind, a in masks.items()}
    return arrays, layers


def _directional(scene: _Scene, layers: _Layers, band: str) -> np.ndarray | None:
    """Reflectance in the view's direction over reflectance at nadir (the inverse c-factor,
    same sun): the truth is the nadir view, so a nadir-normalised view is exactly right."""
    if layers.view is None:
        return None
    zenith, azimuth = layers.view
    sun_zenith, sun_azimuth = _sun_of(scene)
    coef = brdf.coefficients(band, scene.platform)
    factor = 1.0 / brdf.c_factor(coef, sun_zenith, zenith, azimuth - sun_azimuth)
    return factor.astype(np.float32)


def _sun_of(scene: _Scene) -> tuple[float, float]:
    lon, lat = scene.tile.centre_lonlat
    return solar_angles(scene.acquired, lon, lat)


DETECTORS = ("D04", "D05")
"""The detectors whose footprints a simulated tile straddles (west half, east half)."""


class _Files:
    """A product's files, written in memory (GDAL's `/vsimem/`) and kept as bytes by their
    path in the product's folder: nothing touches the disk but the finished zip, and the zip
    does not read the files back. The bytes are those GDAL writes to a file."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self._open: list[tuple[str, MemoryFile, DatasetWriter]] = []

    def create(self, name: str, **profile: object) -> DatasetWriter:
        """An open raster to write `name` into; its bytes are kept when `close_all` is called."""
        from rasterio.io import MemoryFile

        memory = MemoryFile()
        dataset = memory.open(**profile)
        self._open.append((name, memory, dataset))
        return dataset

    def close_all(self) -> None:
        """Close every raster still open (each is finished, or the product failed) and keep the
        bytes of those that were written."""
        opened, self._open = self._open, []
        for name, memory, dataset in opened:
            try:
                dataset.close()
                self.data[name] = bytes(memory.read())
            finally:
                memory.close()

    @contextmanager
    def open(self, name: str) -> Iterator[DatasetReader]:
        """One of the product's rasters, for reading (a `MemoryFile` of its bytes)."""
        from rasterio.io import MemoryFile

        with MemoryFile(self.data[name]) as memory, memory.open() as dataset:
            yield dataset

    def tifs(self) -> list[str]:
        return sorted((n for n in self.data if n.endswith(".tif")), key=_member_order)


def _member_order(name: str) -> tuple[str, ...]:
    """The order of a sorted walk of the product's folder (`sorted(folder.rglob("*"))`), in
    which earlier products were zipped: by path components."""
    return tuple(name.split("/"))


def _write_detector_footprints(
    geom: GroupGeometry, epsg: int, files: _Files, pid: str, group: str
) -> None:
    """The optional DTF masks: one per detector, 1 where that detector saw the tile. Real
    footprints are slanted strips; two halves are enough for a reader to meet the files."""
    from rasterio.windows import Window

    half = geom.ncols // 2
    profile = _tiff_profile(geom, epsg, "uint8")
    for index, detector in enumerate(DETECTORS):
        try:
            dst = files.create(f"MASKS/{pid}_DTF_{group}-{detector}.tif", **profile)
            for row in range(0, geom.nrows, 1024):
                rows = min(1024, geom.nrows - row)
                seen = np.zeros((1, rows, geom.ncols), dtype=np.uint8)
                (seen[:, :, half:] if index else seen[:, :, :half]).fill(1)
                dst.write(seen, window=Window(0, row, geom.ncols, rows))
        finally:
            files.close_all()


def _write_group(
    scene: _Scene,
    group: str,
    bands: tuple[str, ...],
    geom: GroupGeometry,
    files: _Files,
    pid: str,
    packaging: Packaging | None = None,
) -> _Stats:
    """Write every raster of one group, window by window; returns cloud statistics."""
    from rasterio.windows import Window

    packaging = packaging or Packaging()
    epsg = scene.tile.epsg
    refl = _tiff_profile(geom, epsg, "int16") | {"nodata": REFLECTANCE_NODATA}
    paths = {
        f"{kind}_{band}": f"{pid}_{kind}_{band}.tif" for band in bands for kind in ("FRE", "SRE")
    }
    masks = {
        kind: f"MASKS/{pid}_{kind}_{group}.tif"
        for kind in ("CLM", "MG2", "EDG", "SAT", "DFP")
        if kind != "DFP" or packaging.with_dfp
    }
    stats = _Stats()
    try:
        out = {key: files.create(path, **refl) for key, path in paths.items()}
        mask_profile = _tiff_profile(geom, epsg, "uint8")
        out |= {key: files.create(path, **mask_profile) for key, path in masks.items()}
        atb_profile = _tiff_profile(geom, epsg, packaging.atb_dtype, count=2) | {"nodata": 0}
        out["ATB"] = files.create(f"{pid}_ATB_{group}.tif", **atb_profile)
        for index, (row, col, sub) in enumerate(_windows(geom)):
            arrays, layers = _render_window(scene, group, bands, index, sub)
            window = Window(col, row, sub.ncols, sub.nrows)
            if "DFP" in out:
                arrays["DFP"] = np.zeros_like(arrays["SAT"])
            for key, array in arrays.items():
                out[key].write(array.astype(out[key].dtypes[0], copy=False), window=window)
            stats.valid += int((~layers.outside).sum())
            stats.cloudy += int(((arrays["CLM"][0] & CLM_ALL) > 0).sum())
    finally:
        files.close_all()
    return stats


def _quicklook(files: _Files, pid: str, geom: GroupGeometry, scale: float) -> None:
    """RGB (B4, B3, B2) JPEG at most 1000 px wide, stretched from 0 to 0.25 reflectance."""
    from rasterio.errors import NotGeoreferencedWarning

    factor = max(1, math.ceil(max(geom.nrows, geom.ncols) / 1000))
    shape = (max(1, geom.nrows // factor), max(1, geom.ncols // factor))
    rgb = np.zeros((3, *shape), dtype=np.uint8)
    for i, band in enumerate(("B4", "B3", "B2")):
        with files.open(f"{pid}_FRE_{band}.tif") as src:
            dn = src.read(1, out_shape=shape).astype(np.float32)
        stretched = np.clip(dn * scale / 0.25 * 255.0, 0, 255)
        rgb[i] = np.where(dn == REFLECTANCE_NODATA, 0, stretched).astype(np.uint8)
    with warnings.catch_warnings():
        # A quicklook has no georeferencing, as in real products.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        profile = {"width": shape[1], "height": shape[0], "count": 3, "dtype": "uint8"}
        try:
            with files.create(f"{pid}_QKL_ALL.jpg", driver="JPEG", **profile) as dst:
                dst.write(rgb)
        finally:
            files.close_all()


def product_id(platform: str, acquired: dt.datetime, tile: str, flag: str, version: str) -> str:
    """`SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8`."""
    stamp = f"{acquired:%Y%m%d-%H%M%S}-{acquired.microsecond // 1000:03d}"
    return f"{platform}_{stamp}_L2A_T{s2grid.tile(tile).name}_{flag}_V{version}"


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = str(text)
    return element


def _iso(when: dt.datetime) -> str:
    utc = when.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class _ProductInfo:
    pid: str
    version: str
    groups: dict[str, GroupGeometry]
    cloud_percent: float
    files: dict[str, str]  # nature -> relative paths, for Product_Organisation
    path_prefix: str = "./"


def _metadata_xml(scene: _Scene, info: _ProductInfo) -> bytes:
    root = ET.Element("Muscate_Metadata_Document")
    ident = _sub(root, "Metadata_Identification")
    _sub(ident, "METADATA_FORMAT", "METADATA_MUSCATE", version="1.16")
    _sub(ident, "METADATA_PROFILE", "USER")
    _sub(ident, "METADATA_INFORMATION", "EXPERTISE")
    dataset = _sub(root, "Dataset_Identification")
    _sub(dataset, "IDENTIFIER", info.pid.rsplit("_V", 1)[0])
    _sub(dataset, "AUTHORITY", "THEIA")
    _sub(dataset, "PRODUCER", "MUSCATE")
    _sub(dataset, "PROJECT", "LANDSAT" if is_landsat(scene.platform) else "SENTINEL2")
    _sub(dataset, "GEOGRAPHICAL_ZONE", f"T{scene.tile.name}", type="Tile")
    _sub(dataset, "TITLE", info.pid)
    _product_characteristics(root, scene, info)
    _product_organisation(root, info)
    _geoposition(root, scene, info)
    _geometric(root, scene)
    _radiometric(root, scene)
    quality = _sub(_sub(root, "Quality_Informations"), "Current_Product")
    indices = _sub(
        _sub(_sub(quality, "Product_Quality_List", level="N"), "Product_Quality"),
        "Global_Index_List",
    )
    _sub(indices, "QUALITY_INDEX", f"{info.cloud_percent:.0f}", name="CloudPercent")
    _sub(indices, "QUALITY_INDEX", "0", name="SnowPercent")
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _product_characteristics(root: ET.Element, scene: _Scene, info: _ProductInfo) -> None:
    node = _sub(root, "Product_Characteristics")
    _sub(node, "PRODUCT_ID", info.pid)
    _sub(node, "ACQUISITION_DATE", _iso(scene.acquired))
    produced = scene.acquired + dt.timedelta(hours=17, minutes=_stable_int(info.pid) % 600)
    _sub(node, "PRODUCTION_DATE", _iso(produced))
    _sub(node, "PRODUCT_VERSION", info.version.replace("-", "."))
    _sub(node, "PRODUCT_LEVEL", "L2A")
    _sub(node, "PLATFORM", scene.platform)
    _sub(node, "SPECTRAL_CONTENT", "XS")
    epoch, period = ORBITS[scene.platform]
    orbit = int((scene.acquired - epoch).total_seconds() / 86400.0 / period) + 1
    _sub(node, "ORBIT_NUMBER", orbit, type="Absolute")
    groups = _sub(node, "Band_Group_List")
    for group, bands in groups_for(scene.platform).items():
        band_list = _sub(_sub(groups, "Group", group_id=group), "Band_List", count=str(len(bands)))
        for band in bands:
            _sub(band_list, "BAND_ID", band)


def _product_organisation(root: ET.Element, info: _ProductInfo) -> None:
    product = _sub(_sub(root, "Product_Organisation"), "Muscate_Product")
    _sub(product, "QUICKLOOK", f"{info.path_prefix}{info.pid}_QKL_ALL.jpg", bands_id="B4,B3,B2")
    images = _sub(product, "Image_List")
    for nature, paths in sorted(_by_nature(info.files).items()):
        image = _sub(images, "Image")
        properties = _sub(image, "Image_Properties")
        _sub(properties, "NATURE", nature)
        _sub(properties, "FORMAT", "image/tiff")
        files = _sub(image, "Image_File_List")
        for key, path in paths:
            attrs = {_id_kind(key): key.split("_", 1)[1]}
            _sub(files, "IMAGE_FILE", f"{info.path_prefix}{path}", **attrs)


def _by_nature(files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    natures = {
        "FRE": "Flat_Reflectance",
        "SRE": "Surface_Reflectance",
        "ATB": "Aerosol_Optical",
        "CLM": "Cloud",
        "MG2": "Geophysical",
        "EDG": "Edge",
        "SAT": "Saturation",
        "DFP": "Defective_Pixel",
        "DTF": "Detector_Footprint",
    }
    grouped: dict[str, list[tuple[str, str]]] = {}
    for key, path in files.items():
        grouped.setdefault(natures[key.split("_", 1)[0]], []).append((key, path))
    return grouped


def _id_kind(key: str) -> str:
    return "band_id" if key.split("_", 1)[0] in ("FRE", "SRE") else "group_id"


def _geoposition(root: ET.Element, scene: _Scene, info: _ProductInfo) -> None:
    node = _sub(root, "Geoposition_Informations")
    crs = _sub(node, "Coordinate_Reference_System")
    _sub(crs, "GEO_TABLES", "EPSG", version="1.0")
    horizontal = _sub(crs, "Horizontal_Coordinate_System")
    _sub(horizontal, "HORIZONTAL_CS_TYPE", "PROJECTED")
    _sub(horizontal, "HORIZONTAL_CS_NAME", f"WGS 84 / UTM zone {scene.tile.zone}N")
    _sub(horizontal, "HORIZONTAL_CS_CODE", scene.tile.epsg)
    raster = _sub(node, "Raster_CS")
    _sub(raster, "RASTER_CS_TYPE", "CELL")
    _sub(raster, "PIXEL_ORIGIN", 0)
    positions = _sub(_sub(node, "Geopositioning"), "Group_Geopositioning_List")
    for group, geom in info.groups.items():
        entry = _sub(positions, "Group_Geopositioning", group_id=group)
        for tag, value in (
            ("ULX", geom.ulx),
            ("ULY", geom.uly),
            ("XDIM", geom.xdim),
            ("YDIM", geom.ydim),
            ("NROWS", geom.nrows),
            ("NCOLS", geom.ncols),
        ):
            _sub(entry, tag, f"{value:.12g}" if isinstance(value, float) else value)


def _geometric(root: ET.Element, scene: _Scene) -> None:
    lon, lat = scene.tile.centre_lonlat
    zenith, azimuth = solar_angles(scene.acquired, lon, lat)
    means = _sub(_sub(root, "Geometric_Informations"), "Mean_Value_List")
    sun = _sub(means, "Sun_Angles")
    _sub(sun, "ZENITH_ANGLE", f"{zenith:.6f}", unit="deg")
    _sub(sun, "AZIMUTH_ANGLE", f"{azimuth:.6f}", unit="deg")
    if scene.view_track is not None:
        _view_angle_metadata(root, means, scene)
        return
    _nadir_view_metadata(means, scene)


def _nadir_view_metadata(means: ET.Element, scene: _Scene) -> None:
    """Without directional effects every pixel is what a nadir view sees, so the metadata
    says so (view zenith 0; the azimuth of a nadir view is undefined, 0 by convention) and
    has no angle grids: a nadir normalisation then leaves the product exactly as it is,
    instead of "correcting" made-up off-nadir angles the reflectance never had."""
    incidence = _sub(means, "Mean_Viewing_Incidence_Angle_List")
    for band in bands_of(scene.platform):
        angle = _sub(incidence, "Mean_Viewing_Incidence_Angle", band_id=band)
        _sub(angle, "ZENITH_ANGLE", "0.000000", unit="deg")
        _sub(angle, "AZIMUTH_ANGLE", "0.000000", unit="deg")


ANGLE_GRID_STEP_M = 5000.0
"""MUSCATE's angle grids: 23 x 23 nodes, 5 km apart, from the tile's upper-left corner."""


def _view_angle_metadata(root: ET.Element, means: ET.Element, scene: _Scene) -> None:
    """The true view geometry of a directional scene: means over the tile (the azimuth
    averaged as a direction) and the 5 km grids, one per band, as MUSCATE writes them."""
    nodes = math.ceil(scene.tile.size_m / ANGLE_GRID_STEP_M) + 1
    steps = np.arange(nodes) * ANGLE_GRID_STEP_M
    x, y = np.meshgrid(scene.tile.ulx + steps, scene.tile.uly - steps)
    zenith, azimuth = _view_angles(scene, x, y)
    fine = (np.arange(64) + 0.5) / 64 * scene.tile.size_m
    fine_zenith, fine_azimuth = _view_angles(
        scene, scene.tile.ulx + fine[None, :], scene.tile.uly - fine[:, None]
    )
    radians = np.radians(fine_azimuth)
    mean_azimuth = math.degrees(math.atan2(np.sin(radians).sum(), np.cos(radians).sum())) % 360
    incidence = _sub(means, "Mean_Viewing_Incidence_Angle_List")
    geometric = root.find("Geometric_Informations")
    assert geometric is not None
    grids = _sub(_sub(geometric, "Angles_Grids_List"), "Viewing_Incidence_Angles_Grids_List")
    for band in bands_of(scene.platform):
        angle = _sub(incidence, "Mean_Viewing_Incidence_Angle", band_id=band)
        _sub(angle, "ZENITH_ANGLE", f"{float(fine_zenith.mean()):.6f}", unit="deg")
        _sub(angle, "AZIMUTH_ANGLE", f"{mean_azimuth:.6f}", unit="deg")
        band_grids = _sub(grids, "Band_Viewing_Incidence_Angles_Grids_List", band_id=band)
        grid = _sub(band_grids, "Viewing_Incidence_Angles_Grids", detector_id="1")
        for tag, values in (("Zenith", zenith), ("Azimuth", azimuth)):
            node = _sub(grid, tag)
            _sub(node, "COL_STEP", f"{ANGLE_GRID_STEP_M:.0f}", unit="m")
            _sub(node, "ROW_STEP", f"{ANGLE_GRID_STEP_M:.0f}", unit="m")
            rows = _sub(node, "Values_List")
            for row in values:
                _sub(rows, "VALUES", " ".join(f"{v:.4f}" for v in row))


def _radiometric(root: ET.Element, scene: _Scene) -> None:
    node = _sub(root, "Radiometric_Informations")
    _sub(node, "REFLECTANCE_QUANTIFICATION_VALUE", f"{scene.quantification:.0f}")
    _sub(node, "WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE", "20")
    _sub(node, "AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE", "200")
    special = _sub(node, "Special_Values_List")
    _sub(special, "SPECIAL_VALUE", REFLECTANCE_NODATA, name="nodata")
    _sub(special, "SPECIAL_VALUE", 0, name="water_vapor_content_nodata")
    _sub(special, "SPECIAL_VALUE", 0, name="aerosol_optical_thickness_nodata")


def _check_platform(platform: str) -> str:
    upper = platform.upper()
    if upper not in PLATFORMS:
        raise ValueError(f"platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    return upper


def simulate_product(
    tile: str,
    acquired: dt.datetime,
    platform: str,
    out_dir: Path,
    resolution: float = 10.0,
    seed: int | None = None,
    cloud_cover: float = 0.3,
    version: str = "1-8",
    flag: str = "D",
    packaging: Packaging | None = None,
    directional: bool = False,
    failures: Failures | None = None,
) -> Path:
    """Write `<PRODUCT_ID>.zip` into out_dir and return its path.

    `resolution` is the R1 pixel size (R2 twice it, Landsat-8 three times it). Without a seed,
    one is derived from the product's identity, so the same call always writes the same data.
    `directional` makes the surface reflectance depend on the view and sun angles (RTLSR
    kernels with Roy et al.'s coefficients, `brdf`), with the view zenith growing across the
    swath, and writes the matching angles and 5 km angle grids in the metadata; off, the
    rasters are exactly those of earlier versions, so older benchmarks stay reproducible, and
    the metadata declares the nadir view they show (view zenith 0, no angle grids).
    `failures` adds the ways real products fail (`Failures`: masks that miss thin cloud, cloud
    edges and shadows, smoke over several days); None, the rasters are those of earlier
    versions.
    """
    platform = _check_platform(platform)
    packaging = packaging or Packaging()
    if re.fullmatch(r"\d+-\d+", version) is None:
        raise ValueError(f"version must look like 1-8, not {version!r}")
    if not 0.0 <= cloud_cover <= 1.0:
        raise ValueError(f"cloud_cover must be between 0 and 1, not {cloud_cover}")
    if flag not in ("C", "D", "H"):
        raise ValueError(f"flag must be C, D or H, not {flag!r}")
    square = s2grid.tile(tile)
    geometries = group_geometries(square.name, platform, resolution)
    acquired = acquired.replace(tzinfo=dt.UTC) if acquired.tzinfo is None else acquired
    pid = product_id(platform, acquired, square.name, flag, version)
    if seed is None:
        seed = _stable_int(pid)
    scene = _scene(
        square, platform, acquired.astimezone(dt.UTC), seed, cloud_cover, directional, failures
    )
    import rasterio

    files = _Files()
    stats = _Stats()
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        for group, bands in groups_for(platform).items():
            # The last (coarsest) group gives the cloud percentage, as MUSCATE reports it.
            stats = _write_group(scene, group, bands, geometries[group], files, pid, packaging)
            if packaging.with_dtf:
                _write_detector_footprints(geometries[group], scene.tile.epsg, files, pid, group)
        first = next(iter(geometries))
        _quicklook(files, pid, geometries[first], 1.0 / scene.quantification)
    listed = {name.rsplit("/", 1)[-1][len(pid) + 1 : -len(".tif")]: name for name in files.tifs()}
    cloud = 100.0 * stats.cloudy / stats.valid if stats.valid else 100.0
    prefix = "./" if packaging.dot_paths else ""
    info = _ProductInfo(pid, version, geometries, cloud, listed, prefix)
    files.data[f"{pid}_MTD_ALL.xml"] = _metadata_xml(scene, info)
    zip_name = pid if packaging.zip_version else pid.rsplit("_V", 1)[0]
    return _zip_files(files.data, pid, Path(out_dir) / f"{zip_name}.zip", prefix)


def _zip_files(files: dict[str, bytes], top: str, target: Path, prefix: str = "") -> Path:
    """Zip `files` (path in the product -> bytes) under one top folder, in the order of a
    sorted walk of that folder, then rename: a reader never sees a half-written zip.

    Members are deflated at level 1: the zip is read once, by ingest, on the same machine;
    a higher level costs the simulator more time than it saves in transfer."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in sorted(files, key=_member_order):
            # a ZipInfo keeps a "./" prefix as written (zipfile's own paths normalise it away)
            info = zipfile.ZipInfo(f"{prefix}{top}/{name}", date_time=stamp)
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--, as zipped from disk
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=1)
    partial.replace(target)
    return target


# --------------------------------------------------------------------------- snow (L2B-SNOW)

SNOW, NO_SNOW, SNOW_CLOUD = 100, 0, 205


def _snow_window(scene: _Scene, geom: GroupGeometry, snow_cover: float, nodata: int) -> np.ndarray:
    """Let-It-Snow classes of one window: snow where a smooth field passes its threshold."""
    layers = _layers(scene, geom)
    field = _fbm(*_plane_xy(scene.tile.epsg, geom), (30000.0, 8000.0), 4000 + scene.seed)
    classes = np.where(field > 1.0 - snow_cover, SNOW, NO_SNOW).astype(np.uint8)
    classes[layers.opacity >= CLOUD_OPACITY] = SNOW_CLOUD
    classes[layers.outside] = nodata
    return classes


def _snow_metadata(scene: _Scene, info: _ProductInfo, snow_percent: float) -> bytes:
    root = ET.Element("Muscate_Metadata_Document")
    dataset = _sub(root, "Dataset_Identification")
    _sub(dataset, "GEOGRAPHICAL_ZONE", f"T{scene.tile.name}", type="Tile")
    node = _sub(root, "Product_Characteristics")
    _sub(node, "PRODUCT_ID", info.pid)
    _sub(node, "ACQUISITION_DATE", _iso(scene.acquired))
    _sub(node, "PRODUCTION_DATE", _iso(scene.acquired + dt.timedelta(days=1)))
    _sub(node, "PRODUCT_VERSION", info.version.replace("-", "."))
    _sub(node, "PRODUCT_LEVEL", "L2B-SNOW")
    _sub(node, "PLATFORM", scene.platform)
    _geoposition(root, scene, info)
    _geometric(root, scene)
    quality = _sub(_sub(root, "Quality_Informations"), "Current_Product")
    indices = _sub(_sub(quality, "Product_Quality_List", level="N"), "Global_Index_List")
    _sub(indices, "QUALITY_INDEX", f"{info.cloud_percent:.0f}", name="CloudPercent")
    _sub(indices, "QUALITY_INDEX", f"{snow_percent:.0f}", name="SnowPercent")
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def simulate_snow_product(
    tile: str,
    acquired: dt.datetime,
    platform: str,
    out_dir: Path,
    resolution: float = 10.0,
    seed: int | None = None,
    cloud_cover: float = 0.3,
    snow_cover: float = 0.3,
    version: str = "1-0",
    codes: np.ndarray | None = None,
) -> Path:
    """A Let-It-Snow L2B-SNOW product: `<ID>_SNW_R2.tif` (Landsat-8: `_SNW_XS.tif`), uint8
    classes 0 / 100 / 205 / no data (254, 255 from version 2 on), with its metadata; `resolution` is the R1 pixel size as in
    `simulate_product`, so the snow map is on the R2 (or XS) grid. `codes`, on that grid,
    are written instead of the simulated classes (a season's maps of a known truth)."""
    import rasterio
    from rasterio.windows import Window

    platform = _check_platform(platform)
    square = s2grid.tile(tile)
    group = "XS" if is_landsat(platform) else "R2"
    geom = group_geometries(square.name, platform, resolution)[group]
    acquired = acquired.replace(tzinfo=dt.UTC) if acquired.tzinfo is None else acquired
    pid = product_id(platform, acquired, square.name, "D", version).replace("_L2A_", "_L2B-SNOW_")
    seed = _stable_int(pid) if seed is None else seed
    scene = _scene(square, platform, acquired.astimezone(dt.UTC), seed, cloud_cover)
    counts = np.zeros(256, dtype=np.int64)
    nodata = 255 if int(version.split("-")[0]) >= 2 else 254
    if codes is not None and codes.shape != (geom.nrows, geom.ncols):
        raise ValueError(f"codes {codes.shape} are not on the {group} grid")
    files = _Files()
    profile = _tiff_profile(geom, square.epsg, "uint8") | {"nodata": nodata}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        try:
            dst = files.create(f"{pid}_SNW_{group}.tif", **profile)
            for row, col, sub in _windows(geom):
                classes = (
                    _snow_window(scene, sub, snow_cover, nodata)
                    if codes is None
                    else codes[row : row + sub.nrows, col : col + sub.ncols].astype(np.uint8)
                )
                counts += np.bincount(classes.ravel(), minlength=256)
                dst.write(classes[None], window=Window(col, row, sub.ncols, sub.nrows))
        finally:
            files.close_all()
    valid = max(1, int(counts.sum() - counts[nodata]))
    info = _ProductInfo(pid, version, {group: geom}, 100.0 * counts[SNOW_CLOUD] / valid, {})
    snow_percent = 100.0 * counts[SNOW] / valid
    files.data[f"{pid}_MTD_ALL.xml"] = _snow_metadata(scene, info, snow_percent)
    return _zip_files(files.data, pid, Path(out_dir) / f"{pid}.zip")


# --------------------------------------------------------------------------- a month


def synthesis_window(year: int, month: int) -> tuple[dt.date, dt.date]:
    """The 46 days centred on the 15th (WASP's default), first and last day included."""
    centre = dt.date(year, month, 15)
    return centre - dt.timedelta(days=23), centre + dt.timedelta(days=22)


def _acquisitions(tile: str, year: int, month: int, landsat: bool) -> list[tuple[str, dt.date]]:
    first, last = synthesis_window(year, month)
    phase = _stable_int("phase", tile)
    plan = []
    day = first
    while day <= last:
        ordinal = day.toordinal() + phase
        if ordinal % 10 == 0:
            plan.append(("SENTINEL2A", day))
        if ordinal % 10 == 5:
            plan.append(("SENTINEL2B", day))
        if landsat and (ordinal + 3) % 16 == 0:
            plan.append((LANDSAT_PLATFORM, day))
        day += dt.timedelta(days=1)
    return plan


def _cloud_covers(count: int, rng: np.random.Generator) -> list[float]:
    """Varied skies: about a third clear, a fifth overcast, at least one of each."""
    kind = rng.random(count)
    covers = np.where(
        kind < 0.3,
        rng.uniform(0.0, 0.05, count),
        np.where(kind > 0.8, rng.uniform(0.9, 0.99, count), rng.uniform(0.1, 0.8, count)),
    )
    if count >= 2:
        clear, overcast = rng.choice(count, size=2, replace=False)
        covers[clear], covers[overcast] = 0.02, 0.95
    return [float(c) for c in covers]


def _landsat_resolution(resolution: float) -> float:
    """`resolution` if 3x it divides the tile, else the R1-equivalent of the nearest XS size."""
    size = s2grid.TILE_SIZE_M
    count = max(1, round(size / (GROUP_FACTOR["XS"] * resolution)))
    if abs(count * GROUP_FACTOR["XS"] * resolution - size) <= 1e-6:
        return resolution
    return size / count / GROUP_FACTOR["XS"]


def simulate_month(
    tiles: list[str],
    year: int,
    month: int,
    out_dir: Path,
    resolution: float,
    landsat: bool = True,
    seed: int = 0,
    directional: bool = False,
    processes: int = 1,
) -> list[Path]:
    """Sentinel-2A/2B every 10 days (5 days apart) and Landsat-8 every 16 over the window.

    When three times `resolution` does not divide the tile (small test grids such as 1098 m),
    Landsat-8 gets the nearest pixel size that does, rather than no Landsat at all.
    `processes` > 1 writes products in that many processes (`iter_month`); the products are
    the same whatever the number.
    """
    plan = MonthPlan(tuple(tiles), year, month, resolution, landsat, seed, directional)
    return sorted(iter_month(plan, out_dir, processes))


@dataclass(frozen=True)
class MonthPlan:
    """The products of a month over tiles (`simulate_month`'s arguments)."""

    tiles: tuple[str, ...]
    year: int
    month: int
    resolution: float
    landsat: bool = True
    seed: int = 0
    directional: bool = False

    def orders(self) -> list[dict[str, Any]]:
        """The arguments of `simulate_product` for each product, tile by tile."""
        group_geometries(self.tiles[0] if self.tiles else "31TCJ", "SENTINEL2A", self.resolution)
        landsat_resolution = _landsat_resolution(self.resolution)
        orders: list[dict[str, Any]] = []
        for tile in self.tiles:
            name = s2grid.tile(tile).name
            plan = _acquisitions(name, self.year, self.month, self.landsat)
            rng = np.random.default_rng([self.seed, _stable_int(name), self.year, self.month])
            for (platform, day), cover in zip(plan, _cloud_covers(len(plan), rng), strict=True):
                landsat = platform == LANDSAT_PLATFORM
                orders.append(
                    {
                        "tile": name,
                        "acquired": overpass_time(name, day, platform),
                        "platform": platform,
                        "resolution": landsat_resolution if landsat else self.resolution,
                        "seed": _stable_int(self.seed, name, day, platform),
                        "cloud_cover": cover,
                        "version": "1-9" if landsat else "1-8",
                        "directional": self.directional,
                    }
                )
        return orders


def iter_month(plan: MonthPlan, out_dir: Path, processes: int = 1) -> Iterator[Path]:
    """The products of `plan`, each path yielded as soon as its zip is written, so that a
    caller can upload one while the next are made.

    Each product is a function of its own arguments only (its seed and cloud cover are drawn
    here, in order, before any is written), so they do not depend on which process writes
    which or in what order they finish. With `processes` > 1 and several tiles, each tile's
    products are written by one of a pool of fresh (spawned) processes (the caller may run
    threads, which forking would copy half-way) and yielded when the tile is done."""
    orders = plan.orders()
    if processes <= 1 or len(plan.tiles) <= 1:
        for order in orders:
            yield simulate_product(out_dir=out_dir, **order)
        return
    by_tile: dict[str, list[dict[str, Any]]] = {}
    for order in orders:
        by_tile.setdefault(order["tile"], []).append(order)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(processes, len(by_tile)), mp_context=context)
    try:
        # a tile's products in one process: its grids' fields are computed there once (`_memo`)
        futures = [pool.submit(_simulate_all, out_dir, tile) for tile in by_tile.values()]
        for future in as_completed(futures):
            yield from future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _simulate_all(out_dir: Path, orders: list[dict[str, Any]]) -> list[Path]:
    return [simulate_product(out_dir=out_dir, **order) for order in orders]


# --------------------------------------------------------------------------- CLI

EXAMPLES = """examples:
  sansnuages simulate --tiles 31UFS,31UES --dates 2018-07-01,2018-07-11 --resolution 1220
  sansnuages simulate --tiles 31TCJ --month 2018-07 --resolution 60 --out data/incoming
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write realistic MUSCATE L2A zips (synthetic scenes with clouds)",
        description="Write MUSCATE L2A products (zips) over a known synthetic ground truth: "
        "land cover with seasons, clouds and their shadows, haze, swath edges.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tiles", required=True, help="comma-separated tiles, e.g. 31UFS,31UES")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--dates", help="comma-separated days, e.g. 2018-07-01,2018-07-11")
    when.add_argument("--month", help="YYYY-MM: Sentinel-2A/2B and Landsat-8 over the window")
    parser.add_argument(
        "--platform",
        default="SENTINEL2A",
        choices=PLATFORMS,
        help="platform for --dates (default SENTINEL2A)",
    )
    parser.add_argument(
        "--resolution",
        type=float,
        default=10.0,
        help="R1 pixel size in metres: a divisor of 54900, and of 36600 when Landsat-8 is "
        "simulated (default 10)",
    )
    parser.add_argument(
        "--cloud-cover",
        type=float,
        default=0.3,
        help="fraction of the tile under cloud for --dates (default 0.3)",
    )
    parser.add_argument("--no-landsat", action="store_true", help="no Landsat-8 with --month")
    parser.add_argument(
        "--directional",
        action="store_true",
        help="view- and sun-angle dependent reflectance (BRDF) across the swath",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: per product)")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="products written at once with --month (default: one per core; the products "
        "are the same whatever the number)",
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    parser.set_defaults(func=run)


def _parse_month(text: str) -> tuple[int, int]:
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m")
    except ValueError as exc:
        raise ValueError(f"--month must look like 2018-07, not {text!r}") from exc
    return parsed.year, parsed.month


def _parse_days(text: str) -> list[dt.date]:
    try:
        return [dt.date.fromisoformat(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"--dates must be YYYY-MM-DD separated by commas: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    try:
        tiles = [s2grid.tile(t.strip()).name for t in args.tiles.split(",") if t.strip()]
        if args.month:
            year, month = _parse_month(args.month)
            paths = simulate_month(
                tiles,
                year,
                month,
                args.out,
                args.resolution,
                landsat=not args.no_landsat,
                seed=args.seed or 0,
                directional=args.directional,
                processes=args.processes,
            )
        else:
            paths = [
                simulate_product(
                    tile,
                    overpass_time(tile, day, args.platform),
                    args.platform,
                    args.out,
                    resolution=args.resolution,
                    seed=args.seed,
                    cloud_cover=args.cloud_cover,
                    directional=args.directional,
                )
                for tile in tiles
                for day in _parse_days(args.dates)
            ]
    except ValueError as exc:
        print(f"sansnuages simulate: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


__all__ = [
    "add_parser",
    "overpass_time",
    "run",
    "simulate_month",
    "simulate_product",
    "simulate_snow_product",
    "solar_angles",
    "truth_reflectance",
]
