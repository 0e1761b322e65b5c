"""The snow maps' Items as a season's inputs: which raster, which day, which fusion rank, which
grid. Pure: Item documents in, `SnowMapInput` and grids out, so the season knows nothing of
STAC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from affine import Affine

from sansnuages.formats import grid
from sansnuages.formats.bands import is_landsat
from sansnuages.processing.snow_season_tile import SnowMapInput
from sansnuages.processing.synthesis import OutputGrid
from sansnuages.processing.tile_inputs import grid_of
from sansnuages.raster.cog import s3_to_vsi
from sansnuages.stac.extents import parse_datetime

S2_ASSET, L8_ASSET = "SNW_R2", "SNW_XS"


def snow_map_input(item: Mapping[str, Any]) -> SnowMapInput:
    """The season's view of a snow map's Item: its raster, day, fusion rank and no data."""
    properties = item["properties"]
    platform = str(properties.get("platform", ""))
    landsat = is_landsat(platform)
    asset = item["assets"][L8_ASSET if landsat else S2_ASSET]
    bands = asset.get("raster:bands") or [{}]
    return SnowMapInput(
        path=s3_to_vsi(asset["href"]),
        date=parse_datetime(str(properties["datetime"])).date(),
        rank=1 if landsat else 0,
        product_id=str(item["id"]),
        platform=platform,
        nodata=bands[0].get("nodata"),
    )


def season_grid(tile: str, items: Sequence[Mapping[str, Any]]) -> OutputGrid:
    """The tile's Sentinel-2 20 m grid, as its Sentinel-2 snow maps carry it; from Landsat-8
    alone, the tile's square at two thirds of their pixel size (30 m -> 20 m)."""
    for item in items:
        if S2_ASSET in item["assets"]:
            return grid_of(item["assets"][S2_ASSET])
    landsat = items[0]["assets"][L8_ASSET]
    res = abs(landsat["proj:transform"][0]) * 2 / 3
    square = grid.tile(tile)
    size = round(square.size_m / res)
    return OutputGrid(
        f"EPSG:{square.epsg}", Affine(res, 0, square.ulx, 0, -res, square.uly), size, size
    )


def has_snow_map(item: Mapping[str, Any]) -> bool:
    return any(key in item.get("assets", {}) for key in (S2_ASSET, L8_ASSET))
