"""One raster of an uploaded product to a local COG, and the check that tells a broken raster
from a failed read. Raster I/O only: where the bytes come from and go to is the caller's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.io import DatasetReader

from sansnuages.formats.grid import Tile
from sansnuages.formats.muscate import MuscateMetadata, ProductLayout
from sansnuages.formats.product_rasters import (
    check_against_metadata,
    check_on_grid,
    cog_overrides,
    nodata_of,
    raster_facts,
)
from sansnuages.raster import cog

GEOTIFF = "GTiff"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
"""The first bytes of a TIFF and of a BigTIFF, little- and big-endian."""
RASTER_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError)
"""What GDAL raises when a raster cannot be opened, read or decoded."""


@dataclass(frozen=True)
class LocalCog:
    """A COG written to local scratch space, with the facts its STAC asset records (its
    checksum is the uploader's: a small COG is hashed from the bytes it sends, without reading
    the file twice)."""

    path: str
    facts: dict[str, Any]
    size_bytes: int


@dataclass(frozen=True)
class ProductGrid:
    """Where a product's rasters must lie: its tile, and whether coarser pixels are allowed."""

    tile: Tile
    reduced: bool = False


def open_geotiff(path: str) -> DatasetReader:
    """Open an uploaded raster, or one made from it, with the GeoTIFF driver alone: GDAL picks
    drivers from content, so a member named `_FRE_B2.tif` that holds a VRT would otherwise be
    read as one (and a VRT reads local files and URLs)."""
    return rasterio.open(path, driver=GEOTIFF)


def member_to_cog(
    source: str,
    local: str,
    asset_key: str,
    layout: ProductLayout,
    meta: MuscateMetadata,
    grid: ProductGrid,
) -> LocalCog:
    """Convert `source` (a GDAL path) to a COG at `local`, after checking it against its tile
    (from the header alone) and the product's metadata. The local copy (Lambda's ephemeral
    storage) lets the caller upload in parallel parts and knows the size and checksum without
    another request."""
    with open_geotiff(source) as dataset:
        check_on_grid(asset_key, dataset, layout.name.platform, grid.tile, grid.reduced)
        check_against_metadata(asset_key, dataset, meta)
        nodata = nodata_of(asset_key, dataset, layout)
        cog.copy_as_cog(dataset, local, nodata=nodata, **cog_overrides(asset_key))
        facts = raster_facts(asset_key, dataset, meta, nodata)
    return LocalCog(local, facts, os.path.getsize(local))


def decode_whole(path: str) -> None:
    """Read every block of a local raster; raises one of `RASTER_ERRORS` if any fails."""
    with open_geotiff(path) as dataset:
        for _, window in dataset.block_windows(1):
            dataset.read(window=window)


def is_tiff(head: bytes) -> bool:
    """Whether a file's first bytes are those of a TIFF (or BigTIFF)."""
    return head[:4] in TIFF_MAGIC
