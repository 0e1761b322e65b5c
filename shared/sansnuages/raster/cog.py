"""Cloud-Optimized GeoTIFF output, shared by ingest, synthesis and mosaic.

Every product raster goes through GDAL's COG driver, which builds the tiles, overviews and
header order readers expect. Results computed by windows are first written to a tiled scratch
GeoTIFF (a temporary file, so memory never holds a whole band), then copied as a COG: the copy
streams block by block. The destination may be a local path or `/vsis3/bucket/key`; the caller
opens the `rasterio.Env` with `settings.gdal_options()` around the call.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import DatasetReader, DatasetWriter

COG_PROFILE: dict[str, str] = {
    "BLOCKSIZE": "512",
    "COMPRESS": "DEFLATE",
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}
"""COG driver options. DEFLATE rather than ZSTD: every GeoTIFF reader (browsers' geotiff.js,
old QGIS) decodes it. Categorical layers (flags, dates) pass OVERVIEW_RESAMPLING="NEAREST"."""

_SCRATCH_PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "ZSTD",
    "zstd_level": 1,
    "bigtiff": "IF_SAFER",
}
"""Scratch files favour speed: they live for one copy and are then deleted."""


def s3_to_vsi(href: str) -> str:
    """`s3://bucket/key` -> `/vsis3/bucket/key`; other paths are returned unchanged."""
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    return href


PREDICTOR_CODECS = frozenset({"DEFLATE", "ZSTD", "LZW", "LZMA"})
"""The codecs a predictor applies to; JPEG and WEBP refuse one."""


def cog_options(dtype: str | np.dtype[Any], **overrides: str) -> dict[str, str]:
    """COG creation options for a data type: the horizontal predictor helps integers only,
    with the lossless codecs that take one."""
    options = dict(COG_PROFILE)
    options.update({key.upper(): str(value) for key, value in overrides.items()})
    lossless = options["COMPRESS"].upper() in PREDICTOR_CODECS
    if lossless and np.issubdtype(np.dtype(dtype), np.integer):
        options.setdefault("PREDICTOR", "2")
    return options


def copy_as_cog(
    src: str | DatasetReader | DatasetWriter,
    dst_path: str,
    nodata: float | None = None,
    **overrides: str,
) -> str:
    """Copy a raster (path or open dataset) to `dst_path` as a COG and return `dst_path`.

    `nodata`, when given, is declared on the copy through a VRT wrapper, leaving the source
    untouched (a source may be read-only, for instance a file inside a zip).
    """
    with contextlib.ExitStack() as stack:
        dataset = src
        if isinstance(src, str):
            dataset = stack.enter_context(rasterio.open(src))
        assert not isinstance(dataset, str)
        if nodata is not None and dataset.nodata != nodata:
            dataset = stack.enter_context(_with_nodata(dataset, nodata))
        rasterio.shutil.copy(
            dataset, dst_path, driver="COG", **cog_options(dataset.dtypes[0], **overrides)
        )
    return dst_path


@contextlib.contextmanager
def _with_nodata(dataset: DatasetReader | DatasetWriter, nodata: float) -> Iterator[Any]:
    """A VRT of `dataset` in memory that declares `nodata`."""
    path = f"/vsimem/{uuid.uuid4().hex}.vrt"
    rasterio.shutil.copy(dataset, path, driver="VRT")
    try:
        with rasterio.open(path, "r+") as vrt:
            vrt.nodata = nodata
        with rasterio.open(path) as vrt:
            yield vrt
    finally:
        rasterio.shutil.delete(path)


@contextlib.contextmanager
def cog_writer(
    dst_path: str,
    *,
    width: int,
    height: int,
    count: int,
    dtype: str,
    crs: str,
    transform: Affine,
    nodata: float | None = None,
    photometric: str | None = None,
    scratch_dir: str | None = None,
    masked: bool = False,
    **overrides: str,
) -> Iterator[DatasetWriter]:
    """Open a tiled scratch GeoTIFF to fill window by window; on exit it becomes a COG.

    The scratch file sits in `scratch_dir` (default: the temporary directory, /tmp on Lambda)
    and is deleted whatever happens. Nothing is written to `dst_path` if the body raises.
    `masked`: the body also writes a validity mask (`write_mask`), kept as the COG's internal
    mask (with its own overviews): what a lossy codec needs, where no value can mean no data.
    """
    fd, scratch = tempfile.mkstemp(suffix=".tif", dir=scratch_dir)
    os.close(fd)
    profile = dict(_SCRATCH_PROFILE, width=width, height=height, count=count, dtype=dtype)
    profile.update(crs=crs, transform=transform, nodata=nodata)
    if np.issubdtype(np.dtype(dtype), np.integer):
        profile["predictor"] = 2
    if photometric:
        profile["photometric"] = photometric
    try:
        mask_env = (
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True) if masked else contextlib.nullcontext()
        )
        with mask_env, rasterio.open(scratch, "w", **profile) as dst:
            yield dst
        copy_as_cog(scratch, dst_path, None, **overrides)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(scratch)


def write_cog(
    dst_path: str,
    data: np.ndarray,
    *,
    crs: str,
    transform: Affine,
    nodata: float | None = None,
    photometric: str | None = None,
    **overrides: str,
) -> str:
    """Write an in-memory array, (height, width) or (bands, height, width), as a COG.

    For small rasters only (thumbnails, tests, coarse layers); band-sized results go through
    `cog_writer` window by window.
    """
    bands = data[np.newaxis] if data.ndim == 2 else data
    with cog_writer(
        dst_path,
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=str(bands.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
        photometric=photometric,
        masked=False,
        **overrides,
    ) as dst:
        dst.write(bands)
    return dst_path
