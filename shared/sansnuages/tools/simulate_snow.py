"""Snow seasons with a known truth, to prove the snow-season core.

Per pixel, true snow periods (first and last snow day) follow an elevation-like gradient
across a small grid: the lowest rows never see snow, a band of mid rows has an early snowfall
that melts before the winter's snow (two periods), the low end of the snowy rows has only a
few days, and the highest pixels are glaciers, snow-covered all year and beyond. Then
Let-It-Snow maps of that truth: Sentinel-2 every few days and Landsat-8 every 16 days (rank 1,
already on the Sentinel-2 grid), over the year and its margins, with missing dates, clouds
(205) covering a random share of each map, swath edges and the Landsat-8 footprint in no data,
both no-data conventions (254 and 255), and fractional maps (percent) next to binary ones.

Every clear code tells the truth (fractional values fall on the right side of `snow_from`), so
what a season computed from the maps gets wrong is the gap filling's doing alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sansnuages.formats.snow import CLOUD, NO_SNOW, NODATA_V1, NODATA_V2, SNOW
from sansnuages.processing.snow_season import (
    DAYS_NODATA,
    FRACTION_SNOW_FROM,
    LONGEST_MORE_THAN,
    NSP_NODATA,
    DatedCodes,
    HydrologicalYear,
    SeasonLayers,
)

S2, L8 = "S2", "L8"
RANK = {S2: 0, L8: 1}
SNOW_LINE = 0.1  # elevation below which it never snows
GLACIER_FROM = 0.95  # elevation from which it is snow all year
EARLY_BAND = (0.3, 0.7)  # elevations with an early snowfall that melts before winter


@dataclass(frozen=True)
class SnowSceneSpec:
    """The knobs of a scene. `l8_every=None` leaves Landsat-8 out; `cloud_max=0`, `missing=0`
    and `edge_share=0` give a scene where every Sentinel-2 map sees every pixel."""

    shape: tuple[int, int] = (16, 16)
    s2_every: int = 5
    l8_every: int | None = 16
    cloud_max: float = 0.7
    missing: float = 0.1
    edge_share: float = 0.2
    fractional_share: float = 0.3
    snow_from: int = FRACTION_SNOW_FROM
    seed: int = 0


@dataclass(frozen=True, eq=False)
class SimulatedProduct:
    """One snow map, and what the simulator knows about it."""

    sensor: str
    nodata: int
    fractional: bool
    observation: DatedCodes
    clear: np.ndarray  # where the map saw the ground (its code then tells the truth)


@dataclass(frozen=True, eq=False)
class SnowScene:
    """The truth (snow periods per pixel) and the snow maps made of it."""

    year: HydrologicalYear
    products: tuple[SimulatedProduct, ...]
    first: np.ndarray  # (periods, rows, cols) first snow day of each period, days since 1 Sept
    last: np.ndarray  # last snow day; first > last where a pixel lacks that period

    @property
    def observations(self) -> tuple[DatedCodes, ...]:
        return tuple(product.observation for product in self.products)

    def truth_daily(self, start: int, stop: int) -> np.ndarray:
        """True snow (stop - start, rows, cols) for the day indices start..stop-1."""
        days = np.arange(start, stop)[:, None, None, None]
        return np.asarray(((self.first[None] <= days) & (days <= self.last[None])).any(axis=1))

    def clear_days(self) -> np.ndarray:
        """(days of the year and margins, rows, cols): whether some map of the day saw the
        pixel; index 0 is the first margin day."""
        span = self.year.n_days + 2 * self.year.margin_days
        seen = np.zeros((span, *self.first.shape[1:]), dtype=bool)
        for product in self.products:
            if self.year.takes(product.observation.date):
                index = self.year.day_index(product.observation.date) + self.year.margin_days
                seen[index] |= product.clear
        return seen

    def truth_layers(self) -> SeasonLayers:
        """SCD, SOD, SMOD, NSP straight from the periods, NOBS from the maps' clear pixels."""
        n_days = self.year.n_days
        length = np.clip(
            np.clip(self.last, -1, n_days - 1) - np.clip(self.first, 0, n_days) + 1, 0, None
        )
        longest = length.argmax(axis=0)[None]
        nobs = self.clear_days().sum(axis=0)
        never = nobs == 0
        dated = ~never & (np.take_along_axis(length, longest, 0)[0] > LONGEST_MORE_THAN)
        first = np.clip(np.take_along_axis(self.first, longest, 0)[0], 0, n_days - 1)
        last = np.clip(np.take_along_axis(self.last, longest, 0)[0], 0, n_days - 1)
        return SeasonLayers(
            np.where(never, DAYS_NODATA, length.sum(axis=0)).astype(np.uint16),
            np.where(dated, first, DAYS_NODATA).astype(np.uint16),
            np.where(dated, last, DAYS_NODATA).astype(np.uint16),
            nobs.astype(np.uint16),
            np.where(never, NSP_NODATA, (length > 0).sum(axis=0)).astype(np.uint8),
        )


def elevation(shape: tuple[int, int]) -> np.ndarray:
    """0 at the top-left corner, 1 at the bottom-right, mostly along the rows."""
    rows = np.linspace(0.0, 1.0, shape[0])[:, None]
    cols = np.linspace(0.0, 1.0, shape[1])[None, :]
    return 0.85 * rows + 0.15 * cols


def snow_periods(height: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) snow days of an early snowfall and of the winter, in time order, with a
    few days of jitter: higher means earlier onset and later melt."""
    shape = height.shape
    jitter = rng.integers(-3, 4, size=(2, *shape))
    winter_first = np.rint(130 - 90 * height).astype(np.int16) + jitter[0]
    winter_last = np.rint(100 + 250 * height).astype(np.int16) + jitter[1]
    glacier = height >= GLACIER_FROM
    winter_first[glacier], winter_last[glacier] = -400, 800
    bare = height < SNOW_LINE
    winter_first[bare], winter_last[bare] = 1, 0
    early_first = (20 + rng.integers(0, 10, size=shape)).astype(np.int16)
    early_last = early_first + rng.integers(5, 16, size=shape)
    no_early = (height < EARLY_BAND[0]) | (height >= EARLY_BAND[1])
    early_first[no_early], early_last[no_early] = 1, 0
    first = np.stack([early_first, winter_first]).astype(np.int16)
    return first, np.stack([early_last, winter_last]).astype(np.int16)


def simulate_snow_scene(year: HydrologicalYear, spec: SnowSceneSpec | None = None) -> SnowScene:
    """A scene for that year; its products come in a shuffled order (the core must not care)."""
    spec = spec or SnowSceneSpec()
    rng = np.random.default_rng(spec.seed)
    first, last = snow_periods(elevation(spec.shape), rng)
    scene = SnowScene(year, (), first, last)
    products = [
        _product(sensor, year.date_of(index), scene.truth_daily(index, index + 1)[0], rng, spec)
        for sensor, index in _acquisitions(year, spec, rng)
        if rng.random() >= spec.missing
    ]
    order = rng.permutation(len(products))
    return SnowScene(year, tuple(products[i] for i in order), first, last)


def _acquisitions(
    year: HydrologicalYear, spec: SnowSceneSpec, rng: np.random.Generator
) -> list[tuple[str, int]]:
    """(sensor, day index) of every acquisition over the year and its margins."""
    found = []
    for sensor, every in ((S2, spec.s2_every), (L8, spec.l8_every)):
        if every is None:
            continue
        start = -year.margin_days + int(rng.integers(0, every))
        found += [(sensor, day) for day in range(start, year.n_days + year.margin_days, every)]
    return found


def _product(
    sensor: str,
    date: dt.date,
    snow: np.ndarray,
    rng: np.random.Generator,
    spec: SnowSceneSpec,
) -> SimulatedProduct:
    """One snow map of the true snow of its day."""
    fractional = bool(rng.random() < spec.fractional_share)
    nodata = NODATA_V1 if rng.random() < 0.5 else NODATA_V2
    cloud = rng.random(snow.shape) < rng.uniform(0.0, spec.cloud_max)
    outside = _outside(sensor, snow.shape, rng, spec.edge_share)
    codes = _codes(snow, fractional, rng, spec.snow_from)
    codes[cloud] = CLOUD
    codes[outside] = nodata
    observation = DatedCodes(date, codes, RANK[sensor])
    return SimulatedProduct(sensor, nodata, fractional, observation, ~cloud & ~outside)


def _outside(
    sensor: str, shape: tuple[int, ...], rng: np.random.Generator, edge_share: float
) -> np.ndarray:
    """No data: a Sentinel-2 swath edge on the left now and then; Landsat-8's footprint
    always stops short of the right-hand side."""
    cols = np.arange(shape[1])[None, :] * np.ones(shape, dtype=bool)
    if sensor == L8:
        return cols >= int(shape[1] * rng.uniform(0.5, 0.9))
    if rng.random() < edge_share:
        return cols < int(shape[1] * rng.uniform(0.1, 0.4))
    return np.zeros(shape, dtype=bool)


def _codes(
    snow: np.ndarray, fractional: bool, rng: np.random.Generator, snow_from: int
) -> np.ndarray:
    """Binary codes (0 / 100), or percentages on the right side of `snow_from` (half the
    no-snow pixels at exactly 0)."""
    if not fractional:
        return np.where(snow, SNOW, NO_SNOW).astype(np.uint8)
    snowy = rng.integers(snow_from, SNOW + 1, size=snow.shape)
    patchy = np.where(rng.random(snow.shape) < 0.5, 0, rng.integers(0, snow_from, size=snow.shape))
    return np.where(snow, snowy, patchy).astype(np.uint8)


def write_season_products(
    scene: SnowScene, tile: str, out_dir: Path, resolution: float
) -> list[Path]:
    """The scene's maps as L2B-SNOW zips of `tile`, to upload: the scene's grid is the tile's
    R2 grid at `resolution` (the R1 pixel size, as in `simulate_snow_product`), Sentinel-2
    maps are written as they are, Landsat-8 maps sampled at the centres of the XS grid's
    pixels (nearest). Version 2 products carry no data 255, version 1 254."""
    from sansnuages.tools.simulate import (
        LANDSAT_PLATFORM,
        group_geometries,
        simulate_snow_product,
    )

    written = []
    for n, product in enumerate(sorted(scene.products, key=lambda p: p.observation.date)):
        landsat = product.sensor == L8
        platform = LANDSAT_PLATFORM if landsat else ("SENTINEL2A", "SENTINEL2B")[n % 2]
        codes = product.observation.codes
        if landsat:
            r2 = group_geometries(tile, "SENTINEL2A", resolution)["R2"]
            xs = group_geometries(tile, platform, resolution)["XS"]
            centres = (np.arange(xs.nrows) + 0.5) * abs(xs.ydim) / abs(r2.ydim)
            index = np.clip(centres.astype(int), 0, codes.shape[0] - 1)
            codes = codes[np.ix_(index, index)]
        when = dt.datetime.combine(product.observation.date, dt.time(10, 40), dt.UTC)
        version = "2-0" if product.nodata == NODATA_V2 else "1-0"
        written.append(
            simulate_snow_product(
                tile, when, platform, out_dir, resolution, version=version, codes=codes
            )
        )
    return written
