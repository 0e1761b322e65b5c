"""Web map tiles of the mosaics: XYZ PNGs (web mercator) cut straight from their COGs.

rio-tiler reads only the blocks of the overview level that a tile needs and reprojects them on
the fly, so no tile pyramid is ever stored. A mosaic written as parts offers two rasters: the
VRT of its parts, for the zooms at which the parts' pixels show, and the overview COG of the
whole, for the zooms at which the VRT would open every part to draw one tile.

A true-colour mosaic is drawn as it is (RGB). A single-band mosaic (a snow season's days of
snow cover) is read as values, nearest-neighbour, and coloured by its colour map
(`formats.colour_maps`, named by its asset's `sansnuages:colour_map`), no data transparent:
the same colours as its preview and the viewer's legend.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import morecantile
import numpy as np
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.utils import render

from sansnuages import errors
from sansnuages.formats.colour_maps import BY_NAME, ColourMap
from sansnuages.raster import cog

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
TILE_SIZE = 256
MIN_ZOOM_SPAN = 6
"""Zoom levels offered below the native one: a country fits the screen at its minimum zoom."""
TRUE_COLOUR = "true-colour"
PRODUCT = "sansnuages:product"
COLOUR_MAP = "sansnuages:colour_map"


@dataclass(frozen=True)
class MapLayer:
    """What a mosaic Item offers a map, read from its assets once."""

    item_id: str
    title: str
    href: str
    """The full-resolution raster: one COG, or the VRT of the parts."""
    resolution: float
    """Ground size of a pixel of `href`, in metres."""
    bounds: tuple[float, float, float, float]
    """(west, south, east, north) in degrees."""
    overview_href: str | None = None
    overview_resolution: float | None = None
    version: str = ""
    """Changes whenever the Item is published again: part of the tiles' ETag."""
    colour_map: ColourMap | None = None
    """Set for a single-band mosaic: its values are drawn in these colours."""
    nodata: float | None = None
    """The single band's no-data value (drawn transparent)."""
    product: str = TRUE_COLOUR

    @property
    def maxzoom(self) -> int:
        """The zoom whose pixels are no larger than the raster's at the area's latitude."""
        return max(0, min(24, WEB_MERCATOR.zoom_for_res(self._mercator(self.resolution))))

    @property
    def minzoom(self) -> int:
        return max(0, self.maxzoom - MIN_ZOOM_SPAN)

    def source_for(self, zoom: int) -> str:
        """The overview COG where a tile's pixels are coarser than the overview's, else `href`."""
        if self.overview_href is None or self.overview_resolution is None:
            return self.href
        tile_pixel = WEB_MERCATOR.matrix(zoom).cellSize
        return (
            self.overview_href
            if tile_pixel >= self._mercator(self.overview_resolution)
            else self.href
        )

    def _mercator(self, metres: float) -> float:
        """Web mercator units are stretched by 1 / cos(latitude) away from the equator."""
        latitude = (self.bounds[1] + self.bounds[3]) / 2
        return metres / max(math.cos(math.radians(latitude)), 0.01)


def layer_of(item: dict[str, Any]) -> MapLayer:
    """The map layer of a mosaic Item (collection `mosaics`): its `visual` asset, or the asset
    of values that names a colour map; NotFound if it has neither."""
    assets = item.get("assets", {})
    key = map_asset(item)
    if key is None:
        raise errors.NotFound(f"item {item.get('id')!r} has no visual asset to draw")
    main = assets[key]
    overview = assets.get("overview")
    props = item.get("properties", {})
    west, south, east, north = item["bbox"][:4]
    stamp = f"{props.get('updated') or props.get('created') or ''}{main['href']}"
    bands = main.get("raster:bands") or [{}]
    return MapLayer(
        item_id=item["id"],
        title=str(props.get("title") or item["id"]),
        href=main["href"],
        resolution=_resolution(main),
        bounds=(west, south, east, north),
        overview_href=overview["href"] if overview else None,
        overview_resolution=_resolution(overview) if overview else None,
        version=hashlib.sha256(stamp.encode()).hexdigest()[:16],
        colour_map=colour_map_of(item),
        nodata=bands[0].get("nodata"),
        product=product_of(item),
    )


def map_asset(item: dict[str, Any]) -> str | None:
    """The key of the asset a map draws: `visual`, else the first one with a colour map that
    is neither the overview nor a part."""
    assets = item.get("assets", {})
    if "visual" in assets:
        return "visual"
    for key, asset in assets.items():
        if COLOUR_MAP in asset and key != "overview" and not key.startswith("part-"):
            return str(key)
    return None


def colour_map_of(item: dict[str, Any]) -> ColourMap | None:
    """The colour map a mosaic Item is drawn with; None for true colour."""
    key = map_asset(item)
    if key is None or key == "visual":
        return None
    name = item["assets"][key].get(COLOUR_MAP)
    found = BY_NAME.get(str(name))
    if found is None:
        raise errors.NotFound(f"item {item.get('id')!r} names an unknown colour map {name!r}")
    return found


def product_of(item: dict[str, Any]) -> str:
    """What a mosaic shows (`sansnuages:product`); Items made before it are true colour."""
    return str(item.get("properties", {}).get(PRODUCT) or TRUE_COLOUR)


def _resolution(asset: dict[str, Any]) -> float:
    transform = asset.get("proj:transform")
    if not transform:
        raise errors.NotFound(f"asset {asset.get('href')!r} has no proj:transform")
    return abs(float(transform[0]))


def tile_png(layer: MapLayer, z: int, x: int, y: int) -> bytes:
    """One 256 px PNG tile, transparent where the mosaic has no data.

    Raises NotFound outside the mosaic or its zoom range. The caller sets the GDAL environment.
    """
    if not layer.minzoom <= z <= layer.maxzoom + 2:
        raise errors.NotFound(f"zoom {z} is outside {layer.minzoom}..{layer.maxzoom + 2}")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise errors.NotFound(f"tile {z}/{x}/{y} does not exist")
    with (
        warnings.catch_warnings(),
        Reader(cog.s3_to_vsi(layer.source_for(z)), tms=WEB_MERCATOR) as src,
    ):
        # rasterio 1.4 multiplies Affines with `*`, which affine 3 flags as pending deprecation
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        try:
            if layer.colour_map is not None:  # values: never interpolated
                image = src.tile(
                    x, y, z, tilesize=TILE_SIZE, indexes=(1,), reproject_method="nearest",
                    resampling_method="nearest",
                )  # fmt: skip
            else:
                image = src.tile(
                    x, y, z, tilesize=TILE_SIZE, indexes=(1, 2, 3), reproject_method="bilinear"
                )
        except TileOutsideBounds as exc:
            raise errors.NotFound(f"tile {z}/{x}/{y} is outside the mosaic") from exc
    if layer.colour_map is not None:
        return coloured_png(image, layer.colour_map, layer.nodata)
    return bytes(image.render(img_format="PNG"))


def coloured_png(image: ImageData, colour_map: ColourMap, nodata: float | None) -> bytes:
    """A single band's tile in the colours of `colour_map`, transparent where the band has no
    data (its nodata value, or outside the raster)."""
    values = np.asarray(image.array.data[0])
    rgba = colour_map.rgba(values, nodata)
    alpha = np.where(image.mask > 0, rgba[3], 0).astype(np.uint8)
    return bytes(render(rgba[:3], mask=alpha, img_format="PNG"))


def tilejson(layer: MapLayer, tiles_url: str) -> dict[str, Any]:
    """TileJSON 3.0.0 of a layer; `tiles_url` holds {z}/{x}/{y}."""
    west, south, east, north = layer.bounds
    centre_zoom = max(layer.minzoom, layer.maxzoom - 4)
    return {
        "tilejson": "3.0.0",
        "name": layer.title,
        "scheme": "xyz",
        "tiles": [f"{tiles_url}?v={layer.version}"],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom + 2,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, centre_zoom],
        PRODUCT: layer.product,
        "sansnuages:legend": layer.colour_map.legend() if layer.colour_map else None,
    }
