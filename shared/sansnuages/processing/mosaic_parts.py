"""Large mosaics as parts: COGs on a fixed grid, a VRT of them, and an overview COG of the whole.

One COG of France at 10 m would be ~10 billion pixels per band over its bounding box: more
than /tmp and 15 minutes of one function allow. The mosaic CRS is therefore cut into square
cells of `part_pixels` x `part_pixels` pixels, anchored at the CRS origin so that a cell is the
same from one month to the next; every cell that meets the area becomes one COG, built by its
own function invocation, and all of them are snapped to the same pixel lattice, so they fit
edge to edge without resampling. A VRT (a few kB of XML) stitches the parts for GDAL, QGIS and
the tile server; an overview COG of the whole at a coarser resolution serves the zooms where
opening every part would be too slow, and the thumbnail.
"""

from __future__ import annotations

import contextlib
import math
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sansnuages.errors import NoInputs
from sansnuages.processing.mosaic_layers import GDAL_TYPES, TRUE_COLOUR, Layer
from sansnuages.raster import cog

PART_PIXELS = 8192
"""Side of a part: 8192 px is 82 km at 10 m, a 200 MB scratch file, a few minutes of work."""
OVERVIEW_MAX_PIXELS = 4096
"""The overview COG is at most this wide or high: it stays small at any area size."""


@dataclass(frozen=True)
class PartCell:
    row: int
    """Counted upwards from the CRS origin (northing / cell size)."""
    col: int
    bounds: tuple[float, float, float, float]
    """(left, bottom, right, top) in the mosaic CRS."""

    @property
    def name(self) -> str:
        return f"r{self.row:+04d}c{self.col:+04d}".replace("+", "p").replace("-", "m")


@dataclass(frozen=True)
class PartSource:
    """A finished part: where it is and where it sits on the mosaic grid."""

    path: str
    transform: Affine
    width: int
    height: int


def cells_for(
    covered: BaseGeometry, resolution: float, part_pixels: int = PART_PIXELS
) -> list[PartCell]:
    """The fixed-grid cells that meet `covered` (area with data, in the mosaic CRS)."""
    if covered.is_empty:
        raise NoInputs("nothing to mosaic: the area and the tiles do not meet")
    size = resolution * part_pixels
    left, bottom, right, top = covered.bounds
    shapely.prepare(covered)
    cells = []
    for row in range(math.floor(bottom / size), math.ceil(top / size)):
        for col in range(math.floor(left / size), math.ceil(right / size)):
            bounds = (col * size, row * size, (col + 1) * size, (row + 1) * size)
            if covered.intersects(box(*bounds)):
                cells.append(PartCell(row, col, bounds))
    return sorted(cells, key=lambda c: (-c.row, c.col))


def needs_parts(width: int, height: int, part_pixels: int = PART_PIXELS) -> bool:
    """A mosaic larger than one cell either way is written as parts."""
    return width > part_pixels or height > part_pixels


def union_grid(parts: Sequence[PartSource]) -> tuple[Affine, int, int]:
    """The grid holding every part (all share one resolution and lattice)."""
    if not parts:
        raise NoInputs("no part to assemble")
    resolution = parts[0].transform.a
    left = min(p.transform.c for p in parts)
    top = max(p.transform.f for p in parts)
    right = max(p.transform.c + p.width * resolution for p in parts)
    bottom = min(p.transform.f - p.height * resolution for p in parts)
    width = round((right - left) / resolution)
    height = round((top - bottom) / resolution)
    return Affine(resolution, 0, left, 0, -resolution, top), width, height


def vrt_xml(
    parts: Sequence[PartSource],
    crs_wkt: str,
    vrt_dir: str,
    masked: bool = False,
    layer: Layer = TRUE_COLOUR,
) -> str:
    """A VRT of the parts (RGB by default, else the `layer`'s bands), with paths relative to
    the VRT's folder `vrt_dir`.

    `masked`: the parts carry internal masks (lossy codec) rather than a nodata value; the VRT
    then stitches the masks too, and is invalid between parts where no part lies.
    """
    transform, width, height = union_grid(parts)
    geo = ", ".join(repr(v) for v in (transform.c, transform.a, 0.0, transform.f, 0.0, transform.e))
    nodata = "" if masked else f"<NoDataValue>{layer.nodata}</NoDataValue>"
    data_type = GDAL_TYPES[layer.dtype]
    bands = []
    for band, colour in enumerate(layer.colours, start=1):
        sources = "".join(_simple_source(p, transform, str(band), vrt_dir) for p in parts)
        bands.append(
            f'<VRTRasterBand dataType="{data_type}" band="{band}">{nodata}'
            f"<ColorInterp>{colour}</ColorInterp>{sources}</VRTRasterBand>"
        )
    if masked:
        sources = "".join(_simple_source(p, transform, "mask,1", vrt_dir) for p in parts)
        bands.append(
            f'<MaskBand><VRTRasterBand dataType="Byte">{sources}</VRTRasterBand></MaskBand>'
        )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(crs_wkt)}</SRS><GeoTransform>{geo}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )


def _simple_source(part: PartSource, grid: Affine, band: str, vrt_dir: str) -> str:
    col = round((part.transform.c - grid.c) / grid.a)
    row = round((part.transform.f - grid.f) / grid.e)
    relative = posixpath.relpath(part.path, vrt_dir)
    return (
        f'<SimpleSource><SourceFilename relativeToVRT="1">{escape(relative)}</SourceFilename>'
        f"<SourceBand>{band}</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{part.width}" ySize="{part.height}"/>'
        f'<DstRect xOff="{col}" yOff="{row}" xSize="{part.width}" ySize="{part.height}"/>'
        "</SimpleSource>"
    )


def overview_factor(width: int, height: int, max_pixels: int = OVERVIEW_MAX_PIXELS) -> int:
    """The power of two that brings the mosaic under `max_pixels` on its longer side."""
    return 2 ** max(0, math.ceil(math.log2(max(width, height) / max_pixels)))


def write_overview(
    vrt_path: str,
    out_path: str,
    factor: int,
    block_size: int = 512,
    options: Sequence[tuple[str, str]] = (),
    masked: bool = False,
    layer: Layer = TRUE_COLOUR,
) -> str:
    """The whole mosaic at `factor` times its resolution, as one COG.

    Read by output windows from the VRT with a reduced `out_shape`: GDAL takes each part's own
    overviews (average for true colour, nearest for a single band of values), so memory holds
    one window and the parts are read once, coarsely. `options` are COG options (the parts'
    codec); `masked` copies the VRT's mask as the overview's internal mask instead of
    declaring the layer's nodata (0 in true colour).
    """
    indexes = list(range(1, layer.count + 1))
    with rasterio.open(vrt_path) as src:
        width = math.ceil(src.width / factor)
        height = math.ceil(src.height / factor)
        transform = src.transform @ Affine.scale(factor)
        with cog.cog_writer(
            out_path,
            width=width,
            height=height,
            count=layer.count,
            dtype=layer.dtype,
            crs=src.crs.to_wkt(),
            transform=transform,
            nodata=None if masked else layer.nodata,
            photometric=layer.photometric,
            masked=masked,
            **dict(options),
        ) as dst:
            for window in _windows(width, height, block_size):
                col, row = window.col_off * factor, window.row_off * factor
                source = Window(
                    col,
                    row,
                    min(window.width * factor, src.width - col),
                    min(window.height * factor, src.height - row),
                )
                data = src.read(
                    indexes,
                    window=source,
                    out_shape=(layer.count, int(window.height), int(window.width)),
                    resampling=Resampling.nearest,
                )
                dst.write(data, window=window)
                if masked:
                    mask = src.dataset_mask(
                        window=source,
                        out_shape=(int(window.height), int(window.width)),
                        resampling=Resampling.nearest,
                    )
                    dst.write_mask(mask, window=window)
    return out_path


def _windows(width: int, height: int, block_size: int) -> Iterator[Window]:
    for row in range(0, height, block_size):
        for col in range(0, width, block_size):
            yield Window(col, row, min(block_size, width - col), min(block_size, height - row))


def part_source(path: str) -> PartSource:
    """The grid facts of a written part, read from its header."""
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(path))
        return PartSource(path, src.transform, src.width, src.height)
