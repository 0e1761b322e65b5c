"""Items of the snow seasons: one per tile and hydrological year, from the facts of one run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from sansnuages.period import HydrologicalYear
from sansnuages.stac.collections import SNOW_SEASONS
from sansnuages.stac.common import (
    FileAsset,
    ItemFacts,
    RasterAsset,
    Source,
    build_item,
    set_processing,
)


@dataclass(frozen=True)
class SeasonRun:
    """What one run of a tile's season was: the facts its Item records."""

    product_id: str
    tile: str
    year: HydrologicalYear
    job_id: str
    version: int
    sentinel2_observations: int
    landsat8_observations: int
    snow_from: int
    """Fractional snow maps count as snow from this percentage on."""
    pixels: int
    """Pixels with a season (clear at least once)."""


def season_item(
    run: SeasonRun,
    inputs: Sequence[Mapping[str, Any]],
    derived_from: Sequence[str | Source],
    rasters: Sequence[RasterAsset],
    files: Sequence[FileAsset],
) -> pystac.Item:
    """The Item of a tile's season: `datetime` is the season's first day (it also carries
    `start_datetime` and `end_datetime`), its footprint the union of its inputs' footprints,
    and `derived_from` holds the href of each snow map's Item that entered it."""
    footprint = unary_union([shape(item["geometry"]) for item in inputs])
    facts = ItemFacts(
        id=run.product_id,
        collection=SNOW_SEASONS,
        geometry=mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=run.year.start_datetime,
        start=run.year.start_datetime,
        end=run.year.end_datetime,
        properties={
            "grid:code": f"MGRS-{run.tile}",
            "sansnuages:season": run.year.year,
            "sansnuages:platforms": sorted({i["properties"].get("platform", "") for i in inputs}),
            "sansnuages:job": run.job_id,
            "sansnuages:inputs": len(inputs),
            "sansnuages:sentinel2_observations": run.sentinel2_observations,
            "sansnuages:landsat8_observations": run.landsat8_observations,
            "sansnuages:margin_days": run.year.margin_days,
            "sansnuages:snow_from_percent": run.snow_from,
            "sansnuages:pixels_with_season": run.pixels,
            "sansnuages:version": run.version,
        },
    )
    item = build_item(facts, rasters, files, derived_from=derived_from)
    set_processing(item, level="L3B-SNOW", version=f"1.{run.version}")
    return item
