"""Directional (BRDF) effects: Ross-Thick / Li-Sparse-Reciprocal kernels and nadir normalisation.

A surface looks brighter when seen with the sun behind the sensor (backscatter) than across
the sun (forward scatter), and Sentinel-2's wide swath (about +-10 degrees of view zenith,
Landsat-8 +-7.5) makes that visible as a brightness gradient across a tile that changes side
from one orbit to the next. A monthly average of views from both sides is then neither here
nor there. The c-factor method (Roy et al. 2016, "A general method to normalize Landsat
reflectance data to nadir BRDF adjusted reflectance", RSE 176; red edge: Roy et al. 2017, RSE
199) fixes one BRDF shape per band, `M = f_iso + f_vol K_vol + f_geo K_geo`, and rescales a
reflectance to what a nadir view would have seen: `rho * M(sun, 0, 0) / M(sun, view, phi)`
(FORMATS.md section 2). Only the ratio of the kernels matters, so one set of coefficients
serves every pixel.

Conventions: angles in degrees; azimuths clockwise from north, both pointing from the ground
towards the sun and towards the sensor, so the relative azimuth `phi = view - sun` is 0 in
the backscatter direction (the hotspot when zeniths are equal). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from affine import Affine

from sansnuages.formats.bands import LANDSAT8_TO_SENTINEL2, is_landsat

HEIGHT_TO_BASE = 2.0
"""Li-Sparse crown height / vertical crown radius (h/b) of MODIS' RTLSR model."""
BASE_TO_RADIUS = 1.0
"""Li-Sparse crown shape b/r (spherical crowns)."""
ORBIT_ALTITUDE_M = {"sentinel-2": 786_000.0, "landsat": 705_000.0}


@dataclass(frozen=True)
class Coefficients:
    iso: float
    geo: float
    vol: float


ROY_COEFFICIENTS: dict[str, Coefficients] = {
    "B2": Coefficients(0.0774, 0.0079, 0.0372),
    "B3": Coefficients(0.1306, 0.0178, 0.0580),
    "B4": Coefficients(0.1690, 0.0227, 0.0574),
    "B5": Coefficients(0.2085, 0.0256, 0.0845),
    "B6": Coefficients(0.2316, 0.0273, 0.1003),
    "B7": Coefficients(0.2599, 0.0294, 0.1197),
    "B8": Coefficients(0.3093, 0.0330, 0.1535),
    "B8A": Coefficients(0.3093, 0.0330, 0.1535),
    "B11": Coefficients(0.3430, 0.0453, 0.1154),
    "B12": Coefficients(0.2658, 0.0387, 0.0639),
}
"""Per Sentinel-2 band: Roy et al. 2016 (blue, green, red, NIR, SWIR; global MODIS BRDF
averages) and Roy et al. 2017 (red edge B5 B6 B7). B8A takes the NIR set, as sen2nbar does."""
_LANDSAT_TO_S2 = {source: target for target, source in LANDSAT8_TO_SENTINEL2.items()} | {
    "B1": "B2",
    "B5": "B8",
}


def coefficients(band: str, platform: str = "SENTINEL2A") -> Coefficients:
    """The coefficients of a band named as `platform` names it (Landsat-8 B5 is NIR)."""
    name = _LANDSAT_TO_S2.get(band, band) if is_landsat(platform) else band
    if name not in ROY_COEFFICIENTS:
        raise KeyError(f"no BRDF coefficients for band {band!r} of {platform}")
    return ROY_COEFFICIENTS[name]


# --- kernels -----------------------------------------------------------------------------------


def _cos_phase(sun: np.ndarray, view: np.ndarray, phi: np.ndarray) -> np.ndarray:
    cos_xi = np.cos(sun) * np.cos(view) + np.sin(sun) * np.sin(view) * np.cos(phi)
    return np.clip(cos_xi, -1.0, 1.0)


def ross_thick(sun_zenith: object, view_zenith: object, relative_azimuth: object) -> np.ndarray:
    """Volume-scattering kernel of a dense leaf canopy; 0 when sun and view are at nadir."""
    sun, view, phi = (
        np.radians(np.asarray(a, dtype=np.float64))
        for a in (sun_zenith, view_zenith, relative_azimuth)
    )
    cos_xi = _cos_phase(sun, view, phi)
    xi = np.arccos(cos_xi)
    return ((np.pi / 2 - xi) * cos_xi + np.sin(xi)) / (np.cos(sun) + np.cos(view)) - np.pi / 4


def li_sparse(sun_zenith: object, view_zenith: object, relative_azimuth: object) -> np.ndarray:
    """Geometric-optical kernel (reciprocal form, h/b = 2, b/r = 1): shadows cast by sparse
    crowns, hidden when the sensor looks from the sun's side; 0 at nadir."""
    sun, view, phi = (
        np.radians(np.asarray(a, dtype=np.float64))
        for a in (sun_zenith, view_zenith, relative_azimuth)
    )
    sun = np.arctan(BASE_TO_RADIUS * np.tan(sun))
    view = np.arctan(BASE_TO_RADIUS * np.tan(view))
    tan_s, tan_v = np.tan(sun), np.tan(view)
    sec_s, sec_v = 1.0 / np.cos(sun), 1.0 / np.cos(view)
    distance2 = tan_s**2 + tan_v**2 - 2.0 * tan_s * tan_v * np.cos(phi)
    cos_t = (
        HEIGHT_TO_BASE
        * np.sqrt(np.clip(distance2, 0.0, None) + (tan_s * tan_v * np.sin(phi)) ** 2)
        / (sec_s + sec_v)
    )
    t = np.arccos(np.clip(cos_t, -1.0, 1.0))
    overlap = (t - np.sin(t) * np.cos(t)) * (sec_s + sec_v) / np.pi
    cos_xi = _cos_phase(sun, view, phi)
    return overlap - sec_s - sec_v + 0.5 * (1.0 + cos_xi) * sec_s * sec_v


def model(
    coef: Coefficients, sun_zenith: object, view_zenith: object, relative_azimuth: object
) -> np.ndarray:
    """`f_iso + f_vol K_vol + f_geo K_geo`: the band's reflectance shape for a geometry."""
    return combine(coef, *kernels(sun_zenith, view_zenith, relative_azimuth))


def kernels(
    sun_zenith: object, view_zenith: object, relative_azimuth: object
) -> tuple[np.ndarray, np.ndarray]:
    """(K_vol, K_geo) of a geometry: they do not depend on the band, so a window's bands
    share them (`combine` weighs them for each band)."""
    return (
        ross_thick(sun_zenith, view_zenith, relative_azimuth),
        li_sparse(sun_zenith, view_zenith, relative_azimuth),
    )


def combine(coef: Coefficients, k_vol: np.ndarray, k_geo: np.ndarray) -> np.ndarray:
    """`model` from kernels already computed."""
    return coef.iso + coef.vol * k_vol + coef.geo * k_geo


def c_factor(
    coef: Coefficients,
    sun_zenith: object,
    view_zenith: object,
    relative_azimuth: object,
    target_sun_zenith: object | None = None,
) -> np.ndarray:
    """`M(target sun, 0, 0) / M(sun, view, phi)`: multiply a reflectance by it to get the
    nadir-view reflectance at `target_sun_zenith` (default: the observation's own sun)."""
    target = sun_zenith if target_sun_zenith is None else target_sun_zenith
    return model(coef, target, 0.0, 0.0) / model(coef, sun_zenith, view_zenith, relative_azimuth)


# --- view geometry across a swath --------------------------------------------------------------


def orbit_altitude(platform: str) -> float:
    return ORBIT_ALTITUDE_M["landsat" if is_landsat(platform) else "sentinel-2"]


def across_track_view(
    offset_m: np.ndarray, altitude_m: float, track_azimuth: float
) -> tuple[np.ndarray, np.ndarray]:
    """View zenith and azimuth of ground points `offset_m` metres right of the nadir track
    (negative: left) of a sensor whose ground track heads `track_azimuth` (flat Earth, which
    is within a tenth of a degree at these swath widths). A point right of the track sees the
    sensor to its left, perpendicular to the track."""
    offset = np.asarray(offset_m, dtype=np.float64)
    zenith = np.degrees(np.arctan(np.abs(offset) / altitude_m))
    azimuth = np.where(offset >= 0, track_azimuth - 90.0, track_azimuth + 90.0) % 360.0
    return zenith, azimuth


@dataclass(frozen=True)
class AngleGrid:
    """View angles on a coarse grid (MUSCATE's 5 km grids), as the two components of the
    view direction's horizontal tangent, which (unlike the azimuth, which jumps by 180
    degrees across the nadir track) interpolate linearly across the swath."""

    east: np.ndarray
    """tan(view zenith) * sin(view azimuth) at the grid nodes (rows north to south)."""
    north: np.ndarray
    """tan(view zenith) * cos(view azimuth)."""
    ulx: float
    """Map x of node (0, 0), in the CRS of the tile."""
    uly: float
    step: float
    """Metres between nodes, both directions."""

    @classmethod
    def from_angles(
        cls, zenith: np.ndarray, azimuth: np.ndarray, ulx: float, uly: float, step: float
    ) -> AngleGrid:
        """From zenith and azimuth grids (degrees; NaN where unknown, filled from the
        nearest known node of the row so that tile corners outside the swath still work)."""
        tangent = np.tan(np.radians(zenith))
        east = tangent * np.sin(np.radians(azimuth))
        north = tangent * np.cos(np.radians(azimuth))
        return cls(_fill_rows(east), _fill_rows(north), ulx, uly, step)

    def at(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """View zenith and azimuth (degrees) at map coordinates, bilinear between nodes."""
        col = np.clip((x - self.ulx) / self.step, 0, self.east.shape[1] - 1)
        row = np.clip((self.uly - y) / self.step, 0, self.east.shape[0] - 1)
        east, north = (_bilinear(g, row, col) for g in (self.east, self.north))
        zenith = np.degrees(np.arctan(np.hypot(east, north)))
        return zenith, np.degrees(np.arctan2(east, north)) % 360.0


def _fill_rows(values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    known = np.isfinite(out)
    if not known.any():
        return np.zeros_like(out)
    mean = float(np.nanmean(out))
    cols = np.arange(out.shape[1])
    for row in range(out.shape[0]):
        ok = known[row]
        out[row] = np.interp(cols, cols[ok], out[row][ok]) if ok.any() else mean
    return out


def _bilinear(grid: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    r0 = np.clip(np.floor(row).astype(np.intp), 0, max(0, grid.shape[0] - 2))
    c0 = np.clip(np.floor(col).astype(np.intp), 0, max(0, grid.shape[1] - 2))
    r1, c1 = np.minimum(r0 + 1, grid.shape[0] - 1), np.minimum(c0 + 1, grid.shape[1] - 1)
    fr, fc = row - r0, col - c0
    top = grid[r0, c0] * (1 - fc) + grid[r0, c1] * fc
    bottom = grid[r1, c0] * (1 - fc) + grid[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


@dataclass(frozen=True)
class ViewGeometry:
    """Sun and view angles of one observation: the product's means, and the view angle grid
    when the product has one (per-pixel view angles; else the mean holds everywhere)."""

    sun_zenith: float
    sun_azimuth: float
    view_zenith: float
    view_azimuth: float
    grid: AngleGrid | None = None

    def view_at(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.grid is not None:
            return self.grid.at(x, y)
        shape = np.broadcast(x, y).shape
        return np.full(shape, self.view_zenith), np.full(shape, self.view_azimuth)


@dataclass(frozen=True)
class NadirNormalisation:
    """What the synthesis needs to bring one observation to nadir view: its geometry and the
    sun zenith to normalise to (None: the observation's own, WASP's choice)."""

    geometry: ViewGeometry
    target_sun_zenith: float | None = None

    def factors(self, band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The c-factor of Sentinel-2 `band` at map coordinates (float32)."""
        return self._factors(self._kernels(x, y), band)

    def _kernels(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The kernels of the nadir view and of the observation's view at map coordinates:
        what `c_factor` computes for every band, computed once for all of them."""
        zenith, azimuth = self.geometry.view_at(x, y)
        phi = azimuth - self.geometry.sun_azimuth
        sun = self.geometry.sun_zenith
        target = sun if self.target_sun_zenith is None else self.target_sun_zenith
        return kernels(target, 0.0, 0.0), kernels(sun, zenith, phi)

    @staticmethod
    def _factors(
        both: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], band: str
    ) -> np.ndarray:
        coef = ROY_COEFFICIENTS[band]
        factor = combine(coef, *both[0]) / combine(coef, *both[1])
        return np.asarray(factor, dtype=np.float32)

    def apply(
        self, reflectance: Mapping[str, np.ndarray], transform: Affine
    ) -> dict[str, np.ndarray]:
        """Each band of a window (pixels placed by `transform`) times its c-factor. Bands are
        Sentinel-2 names (the synthesis has renamed Landsat-8's); one without coefficients
        passes unchanged."""
        if not reflectance:
            return {}
        height, width = next(iter(reflectance.values())).shape
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        t = transform
        x, y = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
        both = self._kernels(x, y)
        return {
            band: (values * self._factors(both, band)).astype(np.float32)
            if band in ROY_COEFFICIENTS
            else values
            for band, values in reflectance.items()
        }
