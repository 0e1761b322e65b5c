"""Items of the monthly syntheses (Level-3A), from the facts of one run and its input Items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from sansnuages.period import SynthesisPeriod
from sansnuages.stac.collections import SENTINEL2_L3A
from sansnuages.stac.common import (
    FileAsset,
    ItemFacts,
    RasterAsset,
    Source,
    build_item,
    set_processing,
)


@dataclass(frozen=True)
class SynthesisRun:
    """What one synthesis run of a tile and month was: the facts its Item records."""

    product_id: str
    tile: str
    period: SynthesisPeriod
    job_id: str
    version: int
    nadir_normalisation: bool
    flag_percent: Mapping[str, float]
    """Share of the output pixels per flag, in percent."""


def l3a_item(
    run: SynthesisRun,
    inputs: Sequence[Mapping[str, Any]],
    derived_from: Sequence[str | Source],
    rasters: Sequence[RasterAsset],
    files: Sequence[FileAsset],
) -> pystac.Item:
    """The Item of a synthesis: its footprint is the union of its inputs' footprints, and
    `derived_from` holds the href of each input Item (`layout.item_href`), as a `Source` when
    the link is to say which version of the input was read."""
    footprint = unary_union([shape(item["geometry"]) for item in inputs])
    facts = ItemFacts(
        id=run.product_id,
        collection=SENTINEL2_L3A,
        geometry=mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=run.period.centre_datetime,
        start=run.period.start,
        end=run.period.end,
        properties={
            "grid:code": f"MGRS-{run.tile}",
            "sansnuages:platforms": sorted({i["properties"].get("platform", "") for i in inputs}),
            "sansnuages:job": run.job_id,
            "sansnuages:inputs": len(inputs),
            "sansnuages:version": run.version,
            "sansnuages:nadir_normalisation": run.nadir_normalisation,
            **{f"sansnuages:{name}_percent": value for name, value in run.flag_percent.items()},
        },
    )
    item = build_item(facts, rasters, files, derived_from=derived_from)
    set_processing(item, level="L3A", version=f"1.{run.version}")
    return item
