"""Items of the area mosaics, from the facts of one piece and the synthesis Items it mosaics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from shapely.geometry import mapping, shape

from sansnuages.period import SynthesisPeriod
from sansnuages.stac.collections import MOSAICS
from sansnuages.stac.common import FileAsset, ItemFacts, RasterAsset, build_item, tile_of

VRT = "application/x-vrt"


@dataclass(frozen=True)
class MosaicPiece:
    """One mosaicked piece of an area for one month: what its Item records."""

    product_id: str
    area_id: str
    area_name: str
    piece: int
    job_id: str
    month: str
    geometry: Mapping[str, Any]
    """GeoJSON, longitude/latitude."""


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
    `derived_from` with the href of each input synthesis Item (`layout.item_href`). With
    `vrt`, the visual asset is the VRT of the parts."""
    period = SynthesisPeriod.parse(piece.month)
    geometry = shape(piece.geometry)
    item_facts = ItemFacts(
        id=piece.product_id,
        collection=MOSAICS,
        geometry=mapping(geometry.simplify(0.01, preserve_topology=True)),
        bbox=list(geometry.bounds),
        datetime=period.centre_datetime,
        start=period.start,
        end=period.end,
        properties={
            "sansnuages:area": piece.area_name,
            "sansnuages:area_id": piece.area_id,
            "sansnuages:piece": piece.piece,
            "sansnuages:tiles": sorted({tile_of(dict(i)) or "" for i in inputs}),
            "sansnuages:job": piece.job_id,
            **facts,
        },
    )
    item = build_item(item_facts, rasters, [preview], derived_from=derived_from)
    if vrt:
        item.assets["visual"].media_type = VRT
    return item
