"""Pure builders of STAC Collections and Items from frozen metadata (readers live elsewhere).

Extensions are applied through pystac's extension classes, so the schemas they declare and the
fields they write always agree.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import datetime as DateTime
from typing import Any

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from pystac.extensions.sat import SatExtension
from pystac.extensions.view import ViewExtension

from .bands import bands_of, is_landsat

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
LICENSE = "etalab-2.0"

COLLECTIONS: dict[str, tuple[str, str]] = {
    "sentinel2-l2a": (
        "Sentinel-2 Level-2A (MUSCATE)",
        "Surface reflectance of Sentinel-2A/2B/2C with MAJA cloud masks, as Cloud-Optimized GeoTIFFs.",
    ),
    "landsat8-l2a": (
        "Landsat-8 Level-2A (MUSCATE)",
        "Surface reflectance of Landsat-8 OLI with MAJA cloud masks, on the Sentinel-2 tiles.",
    ),
    "sentinel2-l3a": (
        "Monthly cloud-free syntheses (Level-3A)",
        "Weighted-average syntheses of the clear Sentinel-2 and Landsat-8 observations of a"
        " 46-day window centred on the 15th of each month, per Sentinel-2 tile.",
    ),
    "mosaics": (
        "Country mosaics",
        "True-colour monthly mosaics of the Level-3A syntheses, cut to an area.",
    ),
}


def collection_for(platform: str) -> str:
    return "landsat8-l2a" if is_landsat(platform) else "sentinel2-l2a"


def make_collection(collection_id: str) -> pystac.Collection:
    """A collection with an empty extent: the catalog widens it as Items arrive."""
    title, description = COLLECTIONS[collection_id]
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[datetime(2015, 6, 23, tzinfo=UTC), None]]),
    )
    return pystac.Collection(
        id=collection_id,
        title=title,
        description=description,
        extent=extent,
        license=LICENSE,
        providers=[
            pystac.Provider(
                "sansnuages", roles=[pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.HOST]
            ),
        ],
    )


@dataclass(frozen=True)
class RasterAsset:
    """What a converted raster is, as the Item needs it (read from the written file)."""

    key: str
    href: str
    title: str
    roles: tuple[str, ...]
    shape: tuple[int, int]
    transform: tuple[float, ...]
    epsg: int
    data_type: str
    nodata: float | None
    scales: tuple[float | None, ...] = (None,)
    band_names: tuple[str, ...] = ()
    size_bytes: int | None = None


@dataclass(frozen=True)
class FileAsset:
    key: str
    href: str
    media_type: str
    roles: tuple[str, ...]
    title: str


@dataclass(frozen=True)
class ItemFacts:
    """The metadata of one product, independent of where it came from."""

    id: str
    collection: str
    geometry: dict[str, Any]
    bbox: list[float]
    properties: dict[str, Any] = field(default_factory=dict)
    datetime: datetime | None = None
    start: DateTime | None = None
    end: DateTime | None = None


def build_item(
    facts: ItemFacts,
    rasters: Iterable[RasterAsset],
    files: Iterable[FileAsset] = (),
    platform: str | None = None,
    derived_from: Iterable[str] = (),
) -> pystac.Item:
    item = pystac.Item(
        id=facts.id,
        geometry=facts.geometry,
        bbox=facts.bbox,
        datetime=facts.datetime,
        start_datetime=facts.start,
        end_datetime=facts.end,
        properties=dict(facts.properties),
        collection=facts.collection,
    )
    for raster in rasters:
        asset = pystac.Asset(
            raster.href, title=raster.title, media_type=COG, roles=list(raster.roles)
        )
        item.add_asset(raster.key, asset)  # extensions need the asset's owner to declare schemas
        describe_raster_asset(asset, raster, platform)
    for file in files:
        item.add_asset(
            file.key,
            pystac.Asset(
                file.href, title=file.title, media_type=file.media_type, roles=list(file.roles)
            ),
        )
    for href in derived_from:
        item.add_link(pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON))
    _apply_item_projection(
        item, rasters=[a for a in item.assets.values() if a.roles and "data" in a.roles]
    )
    return item


def describe_raster_asset(asset: pystac.Asset, raster: RasterAsset, platform: str | None) -> None:
    proj = ProjectionExtension.ext(asset, add_if_missing=True)
    proj.apply(
        code=f"EPSG:{raster.epsg}", shape=list(raster.shape), transform=list(raster.transform)
    )
    RasterExtension.ext(asset, add_if_missing=True).bands = [
        RasterBand.create(nodata=raster.nodata, data_type=DataType(raster.data_type), scale=scale)
        for scale in raster.scales
    ]
    if platform and raster.band_names:
        known = bands_of(platform)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(
                name=name,
                common_name=known[name].common_name,
                center_wavelength=known[name].center_wavelength,
                full_width_half_max=known[name].full_width_half_max,
            )
            for name in raster.band_names
            if name in known
        ]
    if raster.size_bytes is not None:
        FileExtension.ext(asset, add_if_missing=True).size = raster.size_bytes


def _apply_item_projection(item: pystac.Item, rasters: list[pystac.Asset]) -> None:
    codes = {a.extra_fields.get("proj:code") for a in rasters}
    if len(codes) == 1:
        ProjectionExtension.ext(item, add_if_missing=True).code = codes.pop()


def describe_l2a(item: pystac.Item, meta: Any, cloud_cover: float | None) -> None:
    """Optical and orbital metadata of a MUSCATE L2A product (`meta`: MuscateMetadata)."""
    item.common_metadata.platform = meta.platform.lower().replace("_", "-")
    item.common_metadata.constellation = "landsat" if is_landsat(meta.platform) else "sentinel-2"
    item.common_metadata.instruments = ["oli"] if is_landsat(meta.platform) else ["msi"]
    if meta.produced is not None:
        item.common_metadata.created = meta.produced
    eo = EOExtension.ext(item, add_if_missing=True)
    eo.cloud_cover = cloud_cover
    if meta.snow_percent is not None:
        eo.snow_cover = meta.snow_percent
    view = ViewExtension.ext(item, add_if_missing=True)
    if meta.sun_zenith is not None:
        view.sun_elevation = 90.0 - meta.sun_zenith
    view.sun_azimuth = meta.sun_azimuth
    view.incidence_angle = meta.view_zenith
    view.azimuth = meta.view_azimuth
    if meta.orbit_number is not None:
        SatExtension.ext(item, add_if_missing=True).absolute_orbit = meta.orbit_number
    GridExtension.ext(item, add_if_missing=True).code = f"MGRS-{meta.tile}"
    set_processing(item, level="L2A", version=meta.product_version)


def set_processing(item: pystac.Item, level: str, version: str | None) -> None:
    item.properties["processing:level"] = level
    if version:
        item.properties["processing:version"] = version
    if PROCESSING_SCHEMA not in item.stac_extensions:
        item.stac_extensions.append(PROCESSING_SCHEMA)


def tile_of(item: dict[str, Any]) -> str | None:
    code = item.get("properties", {}).get("grid:code")
    return code.removeprefix("MGRS-") if isinstance(code, str) else None


def item_document(item: pystac.Item, item_key: str, collection_key: str) -> dict[str, Any]:
    """The Item as stored on S3: links relative to its key, so the bucket browses as a catalog."""
    folder = posixpath.dirname(item_key)
    relative = posixpath.relpath(collection_key, folder)
    item.add_link(pystac.Link("collection", relative, media_type=pystac.MediaType.JSON))
    item.add_link(pystac.Link("parent", relative, media_type=pystac.MediaType.JSON))
    return item.to_dict(include_self_link=False, transform_hrefs=False)
