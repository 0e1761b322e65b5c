"""What a mosaic of an area is made of, before any pixel: its pieces, each piece's inputs and
grid. Pure of AWS: the stage stores the plan and sends its parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import shape

from sansnuages import areas, layout
from sansnuages.formats import grid
from sansnuages.period import SynthesisPeriod
from sansnuages.processing import mosaic_parts
from sansnuages.processing.mosaic import (
    DEFAULT_CODEC,
    MosaicInput,
    area_in_crs,
    codec_named,
    footprints,
    mosaic_grid,
)
from sansnuages.processing.tile_inputs import raster_ref
from sansnuages.stac.common import tile_of

DEFAULT_CRS = areas.EUROPE_CRS


@dataclass(frozen=True)
class PieceSpec:
    """One piece of an area to mosaic for one month: everything a part invocation needs."""

    area_id: str
    area_name: str
    piece: int
    geometry: dict[str, Any]
    """GeoJSON, longitude/latitude."""
    crs: str
    resolution: float
    month: str
    job_id: str
    codec: str = DEFAULT_CODEC
    """Compression of the true-colour COGs (`mosaic.CODECS`); plans written before it: DEFLATE."""

    @property
    def lossy(self) -> bool:
        """Lossy codec: no data is the COGs' internal mask, not the value 0."""
        return codec_named(self.codec).lossy

    @property
    def product_id(self) -> str:
        piece = f"-p{self.piece}" if self.piece else ""
        return f"mosaic-{self.area_id}{piece}-{self.month}"

    @property
    def prefix(self) -> str:
        period = SynthesisPeriod.parse(self.month)
        base = layout.mosaic_prefix(self.area_id, period.year, period.month)
        return base + (f"p{self.piece}/" if self.piece else "")


def mosaic_id(area_id: str, period: SynthesisPeriod) -> str:
    return f"mosaic-{area_id}-{period.label}"


def mosaic_input(item: dict[str, Any]) -> MosaicInput:
    tile = tile_of(item) or ""
    square = grid.tile(tile)
    centre = square.centre_lonlat
    return MosaicInput(
        tile=tile,
        red=raster_ref(item, "FRC_B4"),
        green=raster_ref(item, "FRC_B3"),
        blue=raster_ref(item, "FRC_B2"),
        flags=raster_ref(item, "FLG_R1") if "FLG_R1" in item["assets"] else None,
        centre_lonlat=(float(centre[0]), float(centre[1])),
        extent_lonlat=square.footprint_lonlat(),
    )


def pieces_with_data(
    pieces: list[areas.AreaPart], items: list[dict[str, Any]]
) -> list[tuple[areas.AreaPart, list[dict[str, Any]]]]:
    """The pieces that some Item's footprint meets, each with those Items; largest first."""
    found = []
    for piece in pieces:
        mine = [i for i in items if piece.geometry.intersects(shape(i["geometry"]))]
        if mine:
            found.append((piece, mine))
    return found


def native_resolution(items: list[dict[str, Any]]) -> float:
    """The coarsest pixel of the inputs' red band (10 m for Sentinel-2 syntheses)."""
    return max(10.0, max(abs(i["assets"]["FRC_B4"]["proj:transform"][0]) for i in items))


def part_cells(
    spec: PieceSpec, inputs: list[MosaicInput], part_pixels: int
) -> list[mosaic_parts.PartCell] | None:
    """The cells of the parts a piece is built in, or None when it fits one COG."""
    area = area_in_crs(shape(spec.geometry), spec.crs)
    feet = footprints(inputs, spec.crs)
    _, width, height = mosaic_grid(area, feet, spec.resolution)
    if not mosaic_parts.needs_parts(width, height, part_pixels):
        return None
    covered = area.intersection(shapely.union_all(feet))
    return mosaic_parts.cells_for(covered, spec.resolution, part_pixels)
