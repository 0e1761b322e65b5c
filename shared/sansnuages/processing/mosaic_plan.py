"""What a mosaic of an area is made of, before any pixel: its product, its pieces, each
piece's inputs and grid. Pure of AWS: the stage stores the plan and sends its parts.

A job's period says the product: a month mosaics the true colour of its L3A syntheses, a snow
season (`snow-2018`) the days of snow cover (`SCD`) of its snow-season tiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import shape

from sansnuages import areas, layout
from sansnuages.formats import grid
from sansnuages.formats.colour_maps import SNOW_DAYS
from sansnuages.period import HydrologicalYear, SynthesisPeriod, parse_job_period
from sansnuages.processing import mosaic_parts
from sansnuages.processing.mosaic import (
    DEFAULT_CODEC,
    area_in_crs,
    codec_named,
    footprints,
    mosaic_grid,
)
from sansnuages.processing.mosaic_layers import (
    TRUE_COLOUR,
    BandInput,
    Layer,
    MosaicInput,
    SingleBand,
    TileInput,
    TrueColour,
)
from sansnuages.processing.tile_inputs import raster_ref
from sansnuages.stac.collections import SENTINEL2_L3A, SNOW_SEASONS
from sansnuages.stac.common import tile_of

DEFAULT_CRS = areas.EUROPE_CRS


@dataclass(frozen=True)
class MosaicProduct:
    """What kind of mosaic a job makes: its inputs, its layer, and how its Item names it."""

    name: str
    """`sansnuages:product` of the mosaic Items."""
    collection: str
    """The collection of the tile Items it reads."""
    inputs: str
    """What those Items are called in messages (`no synthesis of 2018-07 over Belgium`)."""
    input_asset: str
    """The tile Items' asset it reads (the red band stands for the three of true colour)."""
    asset: str
    """The mosaic Item's raster asset (a COG, or the VRT of the parts)."""
    title: str
    layer: Layer
    roles: tuple[str, ...]
    unit: str | None = None

    def tile_input(self, item: dict[str, Any]) -> TileInput:
        """The input of one tile Item."""
        if isinstance(self.layer, TrueColour):
            return mosaic_input(item)
        return band_input(item, self.input_asset)


TRUE_COLOUR_PRODUCT = MosaicProduct(
    "true-colour", SENTINEL2_L3A, "synthesis", "FRC_B4", "visual", "True colour (B4, B3, B2)",
    TRUE_COLOUR, ("visual", "data"),
)  # fmt: skip
SNOW_COVER_DURATION = MosaicProduct(
    "snow-cover-duration", SNOW_SEASONS, "snow season", "SCD", "SCD",
    "Snow cover duration (days)", SingleBand("uint16", 65535, SNOW_DAYS), ("data",),
    unit="days",
)  # fmt: skip
PRODUCTS = {p.name: p for p in (TRUE_COLOUR_PRODUCT, SNOW_COVER_DURATION)}


def product_of(period: SynthesisPeriod | HydrologicalYear) -> MosaicProduct:
    """A month makes a true-colour mosaic, a snow season a snow-cover-duration one."""
    return SNOW_COVER_DURATION if isinstance(period, HydrologicalYear) else TRUE_COLOUR_PRODUCT


@dataclass(frozen=True)
class PieceSpec:
    """One piece of an area to mosaic for one period: everything a part invocation needs."""

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
    """Compression of the COGs (`mosaic.CODECS`); plans written before it: DEFLATE."""
    product: str = TRUE_COLOUR_PRODUCT.name
    """`PRODUCTS` key; plans written before it: true colour."""

    @property
    def kind(self) -> MosaicProduct:
        return PRODUCTS[self.product]

    @property
    def layer(self) -> Layer:
        return self.kind.layer

    @property
    def lossy(self) -> bool:
        """Lossy codec: no data is the COGs' internal mask, not the value 0."""
        return codec_named(self.codec).lossy

    @property
    def period(self) -> SynthesisPeriod | HydrologicalYear:
        return parse_job_period(self.month)

    @property
    def product_id(self) -> str:
        piece = f"-p{self.piece}" if self.piece else ""
        return f"mosaic-{self.area_id}{piece}-{self.month}"

    @property
    def prefix(self) -> str:
        """`mosaics/<area>/<yyyy>/<mm>/`, of the month, or of the month a season starts in
        (where `layout.item_key` finds the Item from its datetime, the season's start)."""
        period = self.period
        if isinstance(period, HydrologicalYear):
            base = layout.mosaic_prefix(self.area_id, period.start.year, period.start.month)
        else:
            base = layout.mosaic_prefix(self.area_id, period.year, period.month)
        return base + (f"p{self.piece}/" if self.piece else "")


def mosaic_id(area_id: str, period: SynthesisPeriod) -> str:
    return f"mosaic-{area_id}-{period.label}"


def mosaic_input(item: dict[str, Any]) -> MosaicInput:
    """The true-colour input of an L3A Item."""
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


def band_input(item: dict[str, Any], asset: str) -> BandInput:
    """The single-band input of a tile Item: its asset `asset` (nodata from `raster:bands`)."""
    tile = tile_of(item) or ""
    square = grid.tile(tile)
    centre = square.centre_lonlat
    return BandInput(
        tile=tile,
        values=raster_ref(item, asset),
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


def native_resolution(items: list[dict[str, Any]], asset: str = "FRC_B4") -> float:
    """The coarsest pixel of the inputs' `asset` (10 m for the red band of Sentinel-2
    syntheses, 20 m for snow seasons)."""
    return max(10.0, max(abs(i["assets"][asset]["proj:transform"][0]) for i in items))


def part_cells(
    spec: PieceSpec, inputs: list[TileInput], part_pixels: int
) -> list[mosaic_parts.PartCell] | None:
    """The cells of the parts a piece is built in, or None when it fits one COG."""
    area = area_in_crs(shape(spec.geometry), spec.crs)
    feet = footprints(inputs, spec.crs)
    _, width, height = mosaic_grid(area, feet, spec.resolution)
    if not mosaic_parts.needs_parts(width, height, part_pixels):
        return None
    covered = area.intersection(shapely.union_all(feet))
    return mosaic_parts.cells_for(covered, spec.resolution, part_pixels)
