"""Items of the area mosaics, from the facts of one piece and the tile Items it mosaics.

Every mosaic Item says what it shows in `sansnuages:product` (`true-colour`: an RGB `visual`
asset; `snow-cover-duration`: a uint16 `SCD` asset of days, with its colour map's name in the
asset's `sansnuages:colour_map`) and its job's period in `sansnuages:period` (`2018-07`,
`snow-2018`). A season's Item spans the season (`start_datetime`, `end_datetime`); its
`datetime` is the season's first day. Items made before these properties are true colour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from shapely.geometry import mapping, shape

from sansnuages.period import HydrologicalYear, parse_job_period
from sansnuages.stac.collections import MOSAICS
from sansnuages.stac.common import FileAsset, ItemFacts, RasterAsset, build_item, tile_of

VRT = "application/x-vrt"


@dataclass(frozen=True)
class MosaicPiece:
    """One mosaicked piece of an area for one month or season: what its Item records."""

    product_id: str
    area_id: str
    area_name: str
    piece: int
    job_id: str
    month: str
    geometry: Mapping[str, Any]
    """GeoJSON, longitude/latitude."""
    product: str = "true-colour"
    unit: str | None = None
    """What the values of a single-band product count (`days`)."""
    colour_map: str | None = None
    """The `colour_maps` name a single-band product is drawn with."""


def mosaic_item(
    piece: MosaicPiece,
    inputs: Sequence[Mapping[str, Any]],
    derived_from: Sequence[str],
    rasters: Sequence[RasterAsset],
    preview: FileAsset,
    facts: Mapping[str, Any],
    vrt: bool = False,
) -> pystac.Item:
    """The Item of a mosaic: the piece's simplified outline, the tiles of its inputs, and
    `derived_from` with the href of each input tile Item. With `vrt`, the main asset (the
    first raster) is the VRT of the parts."""
    period = parse_job_period(piece.month)
    if isinstance(period, HydrologicalYear):
        when, start, end = period.start_datetime, period.start_datetime, period.end_datetime
    else:
        when, start, end = period.centre_datetime, period.start, period.end
    geometry = shape(piece.geometry)
    item_facts = ItemFacts(
        id=piece.product_id,
        collection=MOSAICS,
        geometry=mapping(geometry.simplify(0.01, preserve_topology=True)),
        bbox=list(geometry.bounds),
        datetime=when,
        start=start,
        end=end,
        properties={
            "sansnuages:product": piece.product,
            "sansnuages:period": period.label,
            "sansnuages:area": piece.area_name,
            "sansnuages:area_id": piece.area_id,
            "sansnuages:piece": piece.piece,
            "sansnuages:tiles": sorted({tile_of(dict(i)) or "" for i in inputs}),
            "sansnuages:job": piece.job_id,
            **facts,
        },
    )
    item = build_item(item_facts, rasters, [preview], derived_from=derived_from)
    if vrt and rasters:
        item.assets[rasters[0].key].media_type = VRT
    for raster in rasters:
        _describe_values(item.assets[raster.key], piece)
    return item


def _describe_values(asset: pystac.Asset, piece: MosaicPiece) -> None:
    """A single-band product's unit (`raster:bands`) and colour map, on each of its rasters."""
    if piece.unit is not None:
        for band in asset.extra_fields.get("raster:bands", []):
            band["unit"] = piece.unit
    if piece.colour_map is not None:
        asset.extra_fields["sansnuages:colour_map"] = piece.colour_map
