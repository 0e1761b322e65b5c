"""Items of the Level-2A products (reflectance and snow maps), from MUSCATE metadata."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pystac
from pystac.extensions.eo import EOExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.sat import SatExtension
from pystac.extensions.view import ViewExtension

from sansnuages import errors
from sansnuages.formats.bands import is_landsat
from sansnuages.stac.common import (
    CLOUDY_PERCENT,
    CLOUDY_PROPERTY,
    FileAsset,
    ItemFacts,
    RasterAsset,
    bbox_of,
    build_item,
    set_processing,
)


def stac_platform(platform: str) -> str:
    """The STAC name of a MUSCATE platform (`SENTINEL2B` -> `sentinel-2b`,
    `LANDSAT8-OLITIRS-XS` -> `landsat-8`), as other catalogs spell it, so that a search for
    `platform = 'sentinel-2b'` finds these Items too."""
    if is_landsat(platform):
        return "landsat-8"
    match = re.fullmatch(r"SENTINEL-?2([A-Z])", platform.upper())
    if match is None:
        raise errors.NotAMuscateProduct(f"unknown platform {platform!r}")
    return f"sentinel-2{match.group(1).lower()}"


def describe_observation(item: pystac.Item, meta: Any, level: str) -> None:
    """Platform, dates, sun and view angles, orbit and tile of a MUSCATE product
    (`meta`: MuscateMetadata), shared by the L2A and the L2B-SNOW Items."""
    item.common_metadata.platform = stac_platform(meta.platform)
    item.common_metadata.constellation = "landsat" if is_landsat(meta.platform) else "sentinel-2"
    item.common_metadata.instruments = ["oli"] if is_landsat(meta.platform) else ["msi"]
    if meta.produced is not None:
        item.common_metadata.created = meta.produced
    view = ViewExtension.ext(item, add_if_missing=True)
    if meta.sun_zenith is not None:
        view.sun_elevation = 90.0 - meta.sun_zenith
    view.sun_azimuth = meta.sun_azimuth
    view.incidence_angle = meta.view_zenith
    view.azimuth = meta.view_azimuth
    if meta.orbit_number is not None:
        SatExtension.ext(item, add_if_missing=True).absolute_orbit = meta.orbit_number
    GridExtension.ext(item, add_if_missing=True).code = f"MGRS-{meta.tile}"
    set_processing(item, level=level, version=meta.product_version, when=meta.produced)


def describe_l2a(item: pystac.Item, meta: Any, cloud_cover: float | None) -> None:
    """Optical and orbital metadata of a MUSCATE L2A product (`meta`: MuscateMetadata)."""
    describe_observation(item, meta, "L2A")
    _set_cover(item, cloud_cover, meta.snow_percent)


def describe_snow(item: pystac.Item, meta: Any) -> None:
    """A Let-It-Snow L2B-SNOW product: the same observation facts, its snow and cloud cover."""
    describe_observation(item, meta, "L2B")
    _set_cover(item, meta.cloud_percent, meta.snow_percent)


def _set_cover(item: pystac.Item, cloud: float | None, snow: float | None) -> None:
    eo = EOExtension.ext(item, add_if_missing=True)
    eo.cloud_cover = cloud
    if snow is not None:
        eo.snow_cover = snow
    item.properties[CLOUDY_PROPERTY] = cloud is not None and cloud > CLOUDY_PERCENT


def l2a_item(
    meta: Any,
    collection: str,
    geometry: dict[str, Any],
    rasters: Sequence[RasterAsset],
    files: Sequence[FileAsset],
) -> pystac.Item:
    """The Item of a Level-2A product or a snow map (`meta`: MuscateMetadata): its rasters,
    its files (metadata, previews, the original archive) and its valid-data footprint."""
    facts = ItemFacts(
        id=meta.product_id,
        collection=collection,
        geometry=geometry,
        bbox=bbox_of(geometry),
        datetime=meta.acquired,
    )
    item = build_item(facts, rasters, files, platform=meta.platform)
    if meta.level.startswith("L2B"):
        describe_snow(item, meta)
    else:
        describe_l2a(item, meta, meta.cloud_percent)
    return item
