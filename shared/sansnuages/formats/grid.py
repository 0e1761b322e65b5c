"""The Sentinel-2 tile grid (MGRS 100 km squares in UTM), northern hemisphere.

A tile is a 109,800 m square whose upper-left corner is the north-west corner of its MGRS
100 km square, with the northing snapped up to a multiple of 60 m (31TCJ: 300000, 4900020).
That rule is what ESA's grid follows north of the equator; south of it the grid needs a table,
so southern tiles are refused rather than guessed.

The MGRS letters are computed here rather than taken from a library, so that the package needs
nothing beyond rasterio (for lon/lat <-> UTM) and shapely.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import shapely
from shapely.geometry import Polygon, box, shape
from shapely.geometry.base import BaseGeometry

TILE_SIZE_M = 109800.0
SQUARE_M = 100000.0
SNAP_M = 60.0
# MGRS letters skip I and O.
COLUMN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
BAND_LETTERS = "CDEFGHJKLMNPQRSTUVWX"  # 8 degree bands from 80 S; X spans 72-84 N
NORTHERN_BANDS = "NPQRSTUVWX"
SAMPLE_STEP_M = 10000.0
TILE_NAME = re.compile(r"^T?(?P<zone>\d{1,2})(?P<band>[C-X])(?P<col>[A-Z])(?P<row>[A-V])$")

Geometry: TypeAlias = Mapping[str, Any] | BaseGeometry


@dataclass(frozen=True)
class Tile:
    """One Sentinel-2 tile: its name, UTM projection and upper-left corner."""

    name: str
    epsg: int
    ulx: float
    uly: float
    size_m: float = TILE_SIZE_M

    @property
    def zone(self) -> int:
        return self.epsg - 32600

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile's UTM projection."""
        return (self.ulx, self.uly - self.size_m, self.ulx + self.size_m, self.uly)

    def footprint_lonlat(self, points_per_edge: int = 16) -> Polygon:
        """The tile square in lon/lat; edges are densified because they curve once unprojected."""
        left, bottom, right, top = self.bounds
        t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
        xs = np.concatenate(
            [
                left + t * (right - left),
                np.full_like(t, right),
                right - t * (right - left),
                np.full_like(t, left),
            ]
        )
        ys = np.concatenate(
            [
                np.full_like(t, top),
                top - t * (top - bottom),
                np.full_like(t, bottom),
                bottom + t * (top - bottom),
            ]
        )
        lons, lats = utm_to_lonlat(self.epsg, xs, ys)
        return Polygon(zip(lons, lats, strict=True))

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        left, bottom, right, top = self.bounds
        lons, lats = utm_to_lonlat(self.epsg, [(left + right) / 2], [(bottom + top) / 2])
        return float(lons[0]), float(lats[0])


def lonlat_to_utm(
    epsg: int, lons: Iterable[float], lats: Iterable[float]
) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.warp import transform

    xs, ys = transform("EPSG:4326", f"EPSG:{epsg}", list(lons), list(lats))
    return np.asarray(xs, dtype="float64"), np.asarray(ys, dtype="float64")


def utm_to_lonlat(
    epsg: int, xs: Iterable[float], ys: Iterable[float]
) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.warp import transform

    lons, lats = transform(f"EPSG:{epsg}", "EPSG:4326", list(xs), list(ys))
    return np.asarray(lons, dtype="float64"), np.asarray(lats, dtype="float64")


def utm_zone(lon: float, lat: float) -> int:
    """UTM zone of a point, with the Norway and Svalbard exceptions MGRS (and ESA) use."""
    lon = ((lon + 180.0) % 360.0) - 180.0
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        return 31 + 2 * min(int((lon + 3.0) // 12.0), 3)
    return min(int((lon + 180.0) // 6.0) + 1, 60)


def latitude_band(lat: float) -> str:
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat} is outside the MGRS bands (80 S to 84 N)")
    return BAND_LETTERS[min(int((lat + 80.0) // 8.0), len(BAND_LETTERS) - 1)]


def _band_range(band: str) -> tuple[float, float]:
    index = BAND_LETTERS.index(band)
    south = -80.0 + 8.0 * index
    return south, (84.0 if band == "X" else south + 8.0)


def _column_letter(zone: int, easting: float) -> str:
    column = int(easting // SQUARE_M)
    if not 1 <= column <= 8:
        raise ValueError(f"easting {easting:.0f} is outside UTM zone {zone}")
    return COLUMN_LETTERS[((zone - 1) % 3) * 8 + column - 1]


def _row_letter(zone: int, northing: float) -> str:
    offset = 5 if zone % 2 == 0 else 0
    return ROW_LETTERS[(int(northing // SQUARE_M) + offset) % 20]


def _square_band(zone: int, easting_w: float, northing_s: float) -> str:
    """The band letter of a 100 km square: that of its centre, as in ESA's tile names."""
    lons, lats = utm_to_lonlat(
        32600 + zone, [easting_w + SQUARE_M / 2], [northing_s + SQUARE_M / 2]
    )
    return latitude_band(float(lats[0]))


def _northern_only(lat: float) -> None:
    if lat < 0.0:
        raise ValueError(
            f"latitude {lat} is south of the equator: the Sentinel-2 grid there needs a table "
            "of tile corners, which sansnuages does not ship"
        )


def _encode(zone: int, easting: float, northing: float) -> str:
    west = math.floor(easting / SQUARE_M) * SQUARE_M
    south = math.floor(northing / SQUARE_M) * SQUARE_M
    band = _square_band(zone, west, south)
    return f"{zone:02d}{band}{_column_letter(zone, easting)}{_row_letter(zone, northing)}"


def tile_for_lonlat(lon: float, lat: float) -> str:
    """Name ("31TCJ") of the tile whose MGRS 100 km square contains the point."""
    _northern_only(lat)
    latitude_band(lat)
    zone = utm_zone(lon, lat)
    xs, ys = lonlat_to_utm(32600 + zone, [lon], [lat])
    return _encode(zone, float(xs[0]), float(ys[0]))


def _square_northing(zone: int, band: str, row: str, easting_w: float) -> float:
    """Southern edge of the square: row letters repeat every 2000 km, the band picks one."""
    offset = 5 if zone % 2 == 0 else 0
    base = ((ROW_LETTERS.index(row) - offset) % 20) * SQUARE_M
    south_lat, north_lat = _band_range(band)
    lons = [_central_meridian(zone) + d for d in (-3.0, 0.0, 3.0)]
    _, y_south = lonlat_to_utm(32600 + zone, lons, [south_lat] * 3)
    _, y_north = lonlat_to_utm(32600 + zone, lons, [north_lat] * 3)
    low, high = float(y_south.min()), float(y_north.max())
    for k in range(5):
        south = base + k * 2000000.0
        if south + SQUARE_M > low and south < high:
            return south
    raise ValueError(f"row letter {row} does not occur in band {band} of zone {zone}")


def _central_meridian(zone: int) -> float:
    return -183.0 + 6.0 * zone


def tile(name: str) -> Tile:
    """The tile called `name` ("31TCJ", a leading "T" is accepted)."""
    return _tile(name.strip().upper())


@functools.lru_cache(maxsize=4096)
def _tile(name: str) -> Tile:
    match = TILE_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a Sentinel-2 tile name such as 31TCJ")
    zone, band = int(match["zone"]), match["band"]
    col, row = match["col"], match["row"]
    if not 1 <= zone <= 60:
        raise ValueError(f"{name!r}: UTM zone {zone} does not exist")
    if band not in NORTHERN_BANDS:
        _northern_only(-1.0)
    column_set = COLUMN_LETTERS[((zone - 1) % 3) * 8 : ((zone - 1) % 3) * 8 + 8]
    if col not in column_set:
        raise ValueError(f"{name!r}: column letter {col} is not used in UTM zone {zone}")
    west = (column_set.index(col) + 1) * SQUARE_M
    north = _square_northing(zone, band, row, west) + SQUARE_M
    uly = math.ceil(north / SNAP_M) * SNAP_M
    return Tile(name=f"{zone:02d}{band}{col}{row}", epsg=32600 + zone, ulx=west, uly=uly)


def _as_shape(geometry: Geometry) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        return geometry
    if isinstance(geometry, Mapping) and geometry.get("type") == "Feature":
        return shape(geometry["geometry"])
    return shape(geometry)


def _sample_points(geom: BaseGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A ~10 km lattice over the bounding box, plus the vertices (for small shapes)."""
    west, south, east, north = geom.bounds
    mid_lat = math.radians((south + north) / 2.0)
    lat_step = SAMPLE_STEP_M / 110574.0
    lon_step = SAMPLE_STEP_M / (111320.0 * max(math.cos(mid_lat), 0.05))
    lons = np.linspace(west, east, max(2, math.ceil((east - west) / lon_step) + 1))
    lats = np.linspace(south, north, max(2, math.ceil((north - south) / lat_step) + 1))
    grid_lon, grid_lat = np.meshgrid(lons, lats)
    vertices = shapely.get_coordinates(geom)
    return (
        np.concatenate([grid_lon.ravel(), vertices[:, 0]]),
        np.concatenate([grid_lat.ravel(), vertices[:, 1]]),
    )


def _squares(lons: np.ndarray, lats: np.ndarray) -> set[tuple[int, float, float]]:
    """Distinct (zone, west easting, south northing) of the squares holding the points."""
    zones = np.array([utm_zone(lon, lat) for lon, lat in zip(lons, lats, strict=True)])
    found: set[tuple[int, float, float]] = set()
    for zone in np.unique(zones):
        pick = zones == zone
        xs, ys = lonlat_to_utm(32600 + int(zone), lons[pick], lats[pick])
        west = np.floor(xs / SQUARE_M) * SQUARE_M
        south = np.floor(ys / SQUARE_M) * SQUARE_M
        found.update((int(zone), float(w), float(s)) for w, s in zip(west, south, strict=True))
    return found


def tiles_for_geometry(geometry: Geometry) -> list[str]:
    """Every tile whose square meets a lon/lat geometry (GeoJSON dict or shapely), sorted."""
    geom = _as_shape(geometry)
    if geom.is_empty:
        return []
    west, south, east, north = geom.bounds
    _northern_only(south)
    lons, lats = _sample_points(geom.intersection(box(west, south, east, min(north, 84.0))))
    names = set()
    for zone, square_w, square_s in _squares(lons, lats):
        if not 100000.0 <= square_w < 900000.0:
            continue
        names.add(_encode(zone, square_w + 1.0, square_s + 1.0))
    return sorted(name for name in names if tile(name).footprint_lonlat().intersects(geom))
