"""Snow seasons in the catalog: the snow maps a tile's season reads, the seasons made, and the
season plot's data of a tile (its stored curve) or of a small polygon (computed from the snow
maps' pixels under it, read by windows)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shapely.geometry import shape

from sansnuages import errors, layout
from sansnuages.period import HydrologicalYear
from sansnuages.processing.season_curve import curve_document
from sansnuages.processing.season_inputs import has_snow_map, snow_map_input
from sansnuages.processing.snow_season_tile import season_tile
from sansnuages.processing.synthesis import OutputGrid
from sansnuages.processing.tile_inputs import grid_of, newest_versions
from sansnuages.raster.pixels import ground_window
from sansnuages.stac.collections import SNOW_L2B, SNOW_SEASONS
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog

CURVE_ASSET = "season-curve"
"""The asset of a season's Item that holds the tile's curve (`processing.season_curve`)."""


def snow_items(catalog: Catalog, tile: str, year: HydrologicalYear) -> list[dict[str, Any]]:
    """The tile's snow maps over the season and its margins, the newest version of each."""
    items = catalog.iter_items(
        [SNOW_L2B], datetime_range=year.inputs_range, filters={"grid:code": f"MGRS-{tile}"}
    )
    return [i for i in newest_versions(list(items)) if has_snow_map(i)]


def season_items(
    catalog: Catalog, year: HydrologicalYear, tile: str | None = None, bbox: Any = None
) -> list[dict[str, Any]]:
    """The seasons of `year` (of one tile, or over a bbox), newest run first."""
    filters: dict[str, object] | None = {"grid:code": f"MGRS-{tile}"} if tile else None
    found = catalog.iter_items(
        [SNOW_SEASONS],
        bbox=tuple(bbox) if bbox is not None else None,
        datetime_range=(year.start_datetime, year.start_datetime),
        filters=filters,
    )
    return sorted(found, key=lambda i: -int(i["properties"].get("sansnuages:version", 0)))


def tile_curve(
    catalog: Catalog, bucket: DataBucket, year: HydrologicalYear, tile: str
) -> dict[str, Any]:
    """The stored curve of a tile's season (its newest run)."""
    items = season_items(catalog, year, tile=tile)
    if not items:
        raise errors.NotFound(f"no snow season {year.label} of tile {tile}")
    asset = items[0]["assets"].get(CURVE_ASSET)
    if asset is None:
        raise errors.NotFound(f"the season {items[0]['id']} has no curve")
    bucket_name, key = layout.split_s3_href(asset["href"])
    if bucket_name != bucket.name:
        raise errors.NotFound(f"the curve of {items[0]['id']} is not in this catalog's bucket")
    return dict(json.loads(bucket.get_bytes(key)))


def polygon_curve(
    catalog: Catalog,
    year: HydrologicalYear,
    geometry: Mapping[str, Any],
    max_pixels: int,
) -> dict[str, Any]:
    """The curve of a point (its pixel) or a small polygon, from the pixels of the snow maps
    under it: those of the tile whose season covers it whole (the first found of the newest
    runs). A polygon over more than `max_pixels` pixels of the 20 m grid is a 400."""
    polygon = shape(geometry)
    seasons = [
        item
        for item in season_items(catalog, year, bbox=polygon.bounds)
        if shape(item["geometry"]).contains(polygon)
    ]
    if not seasons:
        raise errors.NotFound(f"no snow season {year.label} covers the whole {polygon.geom_type}")
    season = seasons[0]
    tile = str(season["properties"]["grid:code"]).removeprefix("MGRS-")
    grid_asset = season["assets"]["SCD"]
    ground = ground_window(grid_asset, geometry, max_pixels)
    if ground is None or not ground.inside.any():
        raise errors.NotFound("the polygon covers no pixel of the season's grid")
    grid: OutputGrid = grid_of(grid_asset)
    inputs = [snow_map_input(item) for item in snow_items(catalog, tile, year)]
    summary = season_tile(inputs, year, grid, None, window=ground.window, mask=ground.inside)
    where = {"tile": tile, "season_item": season["id"], "polygon_pixels": int(ground.inside.sum())}
    return curve_document(where, year, summary)
