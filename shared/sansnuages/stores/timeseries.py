"""Reflectance time series: the products found through the catalog index, a few pixels read
from each of their COGs, in parallel.

The index is searched by collection, date range and the point's (or polygon's) bounding box,
so no S3 listing is ever made; each product then costs one small ranged read per asset (the
COG's header and the block holding the window).

The reads run on worker threads kept for the life of the process, each inside GDAL's
environment from its start: a warm function neither starts threads nor sets GDAL's options
again per request, and each thread keeps its own HTTP connections (`/vsis3/` keeps them per
thread) where the server allows it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import rasterio
from rasterio.env import getenv, hasenv
from rasterio.session import DummySession
from shapely.geometry import shape

from sansnuages import errors
from sansnuages.processing.timeseries import (
    AOT_BAND,
    COLLECTIONS,
    Observation,
    PixelBlock,
    asset_of_band,
    mask_assets,
    newest_versions,
    observe,
    sorted_observations,
)
from sansnuages.raster.pixels import GroundWindow, ground_window, read_window
from sansnuages.raster.thread_env import CREDENTIAL_OPTIONS, in_thread_env
from sansnuages.stac.extents import DatetimeRange
from sansnuages.stores.catalog import Catalog

READ_THREADS = 16
"""Reads at once: each waits on S3 far longer than it computes."""

_T = TypeVar("_T")
_R = TypeVar("_R")
_readers: tuple[tuple[tuple[str, Any], ...], ThreadPoolExecutor] | None = None
"""The reader threads and the process and GDAL options they were made for."""
_readers_lock = threading.Lock()


def _enter_gdal_env(options: dict[str, Any]) -> None:
    """A reader thread's start: GDAL's options (the caller's, credentials excepted: GDAL reads
    them from the process's), kept until the thread ends."""
    rasterio.Env(session=DummySession(), **options).__enter__()


def _reader_pool() -> ThreadPoolExecutor:
    """The reader threads, made on first use and kept; made again if the caller's GDAL
    options changed (a test that moves to another endpoint) or in a forked process (which
    has none of its parent's threads)."""
    global _readers
    options = {
        key: value
        for key, value in (getenv() if hasenv() else {}).items()
        if key not in CREDENTIAL_OPTIONS
    }
    key = (("pid", os.getpid()), *sorted(options.items()))
    with _readers_lock:
        if _readers is None or _readers[0] != key:
            if _readers is not None:
                _readers[1].shutdown(wait=False)
            pool = ThreadPoolExecutor(
                READ_THREADS, "series-read", initializer=_enter_gdal_env, initargs=(options,)
            )
            _readers = (key, pool)
        return _readers[1]


def _with_gdal(task: Callable[[_T], _R], arg: _T) -> _R:
    """`task(arg)` inside GDAL's environment: the caller's, or one for this thread (a thread
    without one would make an AWS session for every rasterio call)."""
    return task(arg) if hasenv() else in_thread_env(task)(arg)


@dataclass(frozen=True)
class SeriesQuery:
    geometry: dict[str, Any]
    """A GeoJSON Point or Polygon in longitude/latitude."""
    datetime_range: DatetimeRange
    bands: tuple[str, ...]
    all_versions: bool = False
    max_products: int = 400
    max_pixels: int = 10_000


@dataclass
class SeriesResult:
    observations: list[Observation]
    products: int
    """Products found in the index over the point and dates (before reading pixels)."""
    reads: int
    """Rasters opened (each a header and the block or blocks of its window)."""


def find_products(catalog: Catalog, query: SeriesQuery) -> list[Mapping[str, Any]]:
    """The L2A Items whose footprint holds the point (or meets the polygon), newest versions
    only unless all are asked; more than `max_products` is a 400."""
    area = shape(query.geometry)
    found: list[Mapping[str, Any]] = []
    for item in catalog.iter_items(
        list(COLLECTIONS), area.bounds, query.datetime_range, page_size=500
    ):
        if item.get("geometry") and not shape(item["geometry"]).intersects(area):
            continue
        found.append(item)
        if len(found) > query.max_products * 2:  # versions and pieces, before choosing
            break
    chosen = found if query.all_versions else newest_versions(found)
    if len(chosen) > query.max_products:
        raise errors.InvalidRequest(
            f"the time series is over the limit of {query.max_products:,} products: "
            "ask for a shorter date range"
        )
    return chosen


@dataclass(frozen=True)
class _Read:
    item_index: int
    asset_key: str
    href: str
    band: int
    version: str


def plan_reads(
    items: Sequence[Mapping[str, Any]], query: SeriesQuery
) -> tuple[list[GroundWindow | None], list[_Read]]:
    """Each product's window (on its finest mask's grid) and the assets to read over it."""
    windows: list[GroundWindow | None] = []
    reads: list[_Read] = []
    for index, item in enumerate(items):
        masks = mask_assets(item)
        assets = item.get("assets", {})
        if "CLM" not in masks:
            windows.append(None)
            continue
        ground = ground_window(assets[masks["CLM"]], query.geometry, query.max_pixels)
        windows.append(ground)
        if ground is None:
            continue
        keys = [masks[k] for k in ("CLM", "MG2", "EDG") if k in masks]
        keys += [k for b in query.bands if (k := asset_of_band(item, b)) is not None]
        bands = {key: 1 for key in keys} | ({masks["ATB"]: AOT_BAND} if "ATB" in masks else {})
        for key, band in bands.items():
            asset = assets[key]
            version = str(asset.get("file:checksum", ""))
            reads.append(_Read(index, key, asset["href"], band, version))
    return windows, reads


def time_series(catalog: Catalog, query: SeriesQuery) -> SeriesResult:
    """The observations of every product over the point or polygon, by date."""
    items = find_products(catalog, query)
    windows, reads = _with_gdal(lambda q: plan_reads(items, q), query)

    def read(job: _Read) -> tuple[_Read, PixelBlock]:
        ground = windows[job.item_index]
        assert ground is not None
        values = read_window(job.href, ground, job.band, job.version)
        return job, PixelBlock(values, ground.inside)

    blocks: dict[int, dict[str, PixelBlock]] = {}
    for job, block in _reader_pool().map(read, reads):
        blocks.setdefault(job.item_index, {})[job.asset_key] = block
    observations = []
    for index, item in enumerate(items):
        if index in blocks:
            observation = observe(item, query.bands, blocks[index])
            if observation is not None:
                observations.append(observation)
    return SeriesResult(sorted_observations(observations), len(items), len(reads))
