"""Where a product has valid pixels, in lon/lat, from its edge or snow mask read decimated:
the footprint of its Item, not the tile square."""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from sansnuages import errors
from sansnuages.formats import snow
from sansnuages.raster.conversion import open_geotiff
from sansnuages.stac.common import (
    RasterAsset,
)

FOOTPRINT_MAX_PIXELS = 1024


THUMBNAIL_MAX_PIXELS = 512


def footprint_raster(rasters: list[RasterAsset], prefix: str) -> RasterAsset:
    """The finest raster of the kind that tells valid pixels (EDG, or the snow map)."""
    candidates = [r for r in rasters if r.key.startswith(prefix)]
    return max(candidates, key=lambda r: r.shape)


def decimated(dataset: Any, max_pixels: int = THUMBNAIL_MAX_PIXELS) -> np.ndarray:
    factor = max(1, int(np.ceil(max(dataset.width, dataset.height) / max_pixels)))
    out_shape = (max(1, dataset.height // factor), max(1, dataset.width // factor))
    return np.asarray(dataset.read(1, out_shape=out_shape, resampling=Resampling.nearest))


def footprint(mask_path: str, snow: bool = False, nodata: float | None = None) -> dict[str, Any]:
    """The valid-data area in lon/lat, not the tile square: EDG == 0 for L2A, observed
    classes for snow maps. Split at the antimeridian when the tile crosses it."""
    with open_geotiff(mask_path) as dataset:
        data = decimated(dataset, FOOTPRINT_MAX_PIXELS)
        transform = dataset.transform @ dataset.transform.scale(
            dataset.width / data.shape[1], dataset.height / data.shape[0]
        )
        crs = dataset.crs
    valid = valid_snow(data, nodata) if snow else data == 0
    polygons = [shape(geom) for geom in valid_polygons(valid.astype("uint8"), transform)]
    if not polygons:
        raise errors.InvalidProduct("the product has no valid pixel")
    area = unary_union(polygons).simplify(abs(transform.a), preserve_topology=True)
    return dict(
        transform_geom(crs, "EPSG:4326", mapping(area), antimeridian_cutting=True, precision=6)
    )


def valid_polygons(cells: np.ndarray, transform: Affine) -> list[dict[str, Any]]:
    """The polygons of the cells set to 1, each cell masked by itself. Polygonized from a band
    of a small in-memory GeoTIFF: given arrays, rasterio wraps each in a dataset inside a new
    environment, which makes an AWS session whenever credentials are in the environment (as on
    Lambda): a boto3 one, 50 ms of CPU, twice a footprint, far more than the polygons. The
    polygons are the same (GDAL's polygonize either way)."""
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", "transform": transform}
    with MemoryFile() as memory:
        with memory.open(width=cells.shape[1], height=cells.shape[0], **profile) as dataset:
            dataset.write(cells, 1)
        with memory.open(driver="GTiff") as dataset:
            band = rasterio.band(dataset, 1)
            return [geom for geom, value in shapes(band, mask=band, transform=transform) if value]


def valid_snow(classes: np.ndarray, nodata: float | None) -> np.ndarray:
    observed = snow.valid(classes)
    return observed if nodata is None else observed & (classes != nodata)
