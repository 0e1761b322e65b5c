"""GDAL's reads from S3 under throttling: S3 answers `503 SlowDown` under load, and a read that
failed on it would fail the whole tile or upload, or worse, give wrong pixels.

The local S3 server's fault switch throttles a share of one bucket's ranged reads. A read of
one range at a time is tried again (`GDAL_HTTP_MAX_RETRY`, `Settings.gdal_options`): it returns
the right pixels, and without the setting it fails (so the switch, and the test, can fail).
GDAL's parallel multi-range reads (`GDAL_NUM_THREADS` > 1) are not retried by GDAL 3.10: for
a DEFLATE COG, like every COG this project writes, a throttled one raises, and the unit is
retried by its queue; it never returns wrong pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.io import MemoryFile

from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket
from sansnuages.tools.local.read_faults import read_faults, set_read_faults

RATE = 0.3
KEY = "read-faults/a.tif"


@pytest.fixture()
def pixels(function_settings: Settings) -> Iterator[np.ndarray]:
    """A DEFLATE tiled GeoTIFF in the bucket, then the bucket's reads throttled."""
    assert function_settings.endpoint_url
    values = np.random.default_rng(1).integers(1, 10000, (1, 1024, 1024), dtype="uint16")
    profile = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 1, "dtype": "uint16"}
    with MemoryFile() as memory:
        with memory.open(
            **profile, tiled=True, blockxsize=256, blockysize=256, compress="deflate"
        ) as dataset:
            dataset.write(values)
        DataBucket(function_settings).put_bytes(KEY, memory.read(), "image/tiff")
    set_read_faults(function_settings.endpoint_url, function_settings.data_bucket, RATE, seed=3)
    try:
        yield values
    finally:
        set_read_faults(function_settings.endpoint_url, None, 0.0)


def _reads(settings: Settings, times: int, **options: str) -> list[np.ndarray | None]:
    """Open and read the raster `times` times, nothing cached between them; None for a read
    that raised."""
    uncached = f"/vsis3/{settings.data_bucket}"
    results: list[np.ndarray | None] = []
    for _ in range(times):
        with gdal_env(settings, CPL_VSIL_CURL_NON_CACHED=uncached, **options):
            try:
                with rasterio.open(f"/vsis3/{settings.data_bucket}/{KEY}") as src:
                    results.append(src.read())
            except RasterioIOError:
                results.append(None)
    return results


def test_a_throttled_read_of_one_range_is_retried(
    function_settings: Settings, pixels: np.ndarray
) -> None:
    assert function_settings.endpoint_url
    reads = _reads(function_settings, 8, GDAL_NUM_THREADS="1")
    assert all(r is not None and np.array_equal(r, pixels) for r in reads)
    assert read_faults(function_settings.endpoint_url)["failed"] > 0
    unretried = _reads(function_settings, 8, GDAL_NUM_THREADS="1", GDAL_HTTP_MAX_RETRY="0")
    assert any(r is None for r in unretried)


def test_a_throttled_parallel_read_raises_or_is_right(
    function_settings: Settings, pixels: np.ndarray
) -> None:
    assert function_settings.endpoint_url
    reads = _reads(function_settings, 12)
    assert all(r is None or np.array_equal(r, pixels) for r in reads)
    assert read_faults(function_settings.endpoint_url)["failed"] > 0
