"""Pure builders of STAC Collections and Items from frozen metadata (readers live elsewhere).

Extensions are applied through pystac's extension classes, so the schemas they declare and the
fields they write always agree. One deliberate exception: the projection extension is pinned to
v1.2.0, the one version whose schema allows both `proj:code` (read by odc-stac and pystac) and
`proj:epsg` (the only field stackstac reads), so that Items load unchanged in both.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping
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
from pystac.extensions.version import VersionExtension, VersionRelType
from pystac.extensions.view import ViewExtension
from shapely.geometry import shape

from sansnuages import errors
from sansnuages.formats.bands import bands_of, is_landsat

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROJECTION_V1_2 = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
LICENSE = "etalab-2.0"
CLOUDY_PERCENT = 90.0
CLOUDY_PROPERTY = "sansnuages:cloudy"
"""True when more than CLOUDY_PERCENT % of the valid pixels are cloudy: such products are
ingested (they still hold clear pixels) but production statistics leave them out."""

THEIA = pystac.Provider(
    "CNES / Theia (MUSCATE, MAJA, Let-It-Snow)",
    roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR],
    url="https://www.theia-land.fr",
)
SANSNUAGES = pystac.Provider(
    "sansnuages", roles=[pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.HOST]
)


@dataclass(frozen=True)
class CollectionSpec:
    title: str
    description: str
    platforms: tuple[str, ...] = ()
    constellation: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    gsd: tuple[float, ...] = ()
    level: str | None = None
    from_theia: bool = True


COLLECTIONS: dict[str, CollectionSpec] = {
    "sentinel2-l2a": CollectionSpec(
        "Sentinel-2 Level-2A (MUSCATE)",
        "Surface reflectance of Sentinel-2A/2B/2C with MAJA cloud masks, as Cloud-Optimized GeoTIFFs.",
        ("sentinel-2a", "sentinel-2b", "sentinel-2c"),
        ("sentinel-2",),
        ("msi",),
        (10.0, 20.0),
        "L2A",
    ),
    "landsat8-l2a": CollectionSpec(
        "Landsat-8 Level-2A (MUSCATE)",
        "Surface reflectance of Landsat-8 OLI with MAJA cloud masks, on the Sentinel-2 tiles.",
        ("landsat-8",),
        ("landsat",),
        ("oli",),
        (30.0,),
        "L2A",
    ),
    "snow-l2b": CollectionSpec(
        "Snow cover (Let-It-Snow L2B-SNOW)",
        "Snow maps of Sentinel-2 (20 m) and Landsat-8 (30 m): 0 no snow, 100 snow, 205 cloud,"
        " 254 or 255 no data.",
        ("sentinel-2a", "sentinel-2b", "sentinel-2c", "landsat-8"),
        ("sentinel-2", "landsat"),
        ("msi", "oli"),
        (20.0, 30.0),
        "L2B",
    ),
    "sentinel2-l3a": CollectionSpec(
        "Monthly cloud-free syntheses (Level-3A)",
        "Weighted-average syntheses of the clear Sentinel-2 and Landsat-8 observations of a"
        " 46-day window centred on the 15th of each month, per Sentinel-2 tile.",
        level="L3A",
        from_theia=False,
    ),
    "mosaics": CollectionSpec(
        "Country mosaics",
        "True-colour monthly mosaics of the Level-3A syntheses, cut to an area.",
        from_theia=False,
    ),
}


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


def collection_for(platform: str, level: str = "L2A") -> str:
    if level.startswith("L2B-SNOW"):
        return "snow-l2b"
    return "landsat8-l2a" if is_landsat(platform) else "sentinel2-l2a"


def make_collection(collection_id: str) -> pystac.Collection:
    """A collection with an empty extent: the catalog widens it as Items arrive."""
    spec = COLLECTIONS[collection_id]
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[datetime(2015, 6, 23, tzinfo=UTC), None]]),
    )
    collection = pystac.Collection(
        id=collection_id,
        title=spec.title,
        description=spec.description,
        extent=extent,
        license=LICENSE,
        providers=[THEIA, SANSNUAGES] if spec.from_theia else [SANSNUAGES],
    )
    summaries: dict[str, list[Any]] = {
        "platform": list(spec.platforms),
        "constellation": list(spec.constellation),
        "instruments": list(spec.instruments),
        "gsd": list(spec.gsd),
        "processing:level": [spec.level] if spec.level else [],
    }
    for name, values in summaries.items():
        if values:
            collection.summaries.add(name, values)
    collection.item_assets = {**item_assets_of(collection_id)}
    return collection


def item_assets_of(
    collection_id: str,
) -> dict[str, pystac.ItemAssetDefinition | dict[str, Any]]:
    """What every Item of an ingested collection carries, so clients can plan before searching."""
    files = {
        "metadata": ("MUSCATE metadata", "application/xml", ["metadata"]),
        "product": ("Original product", "application/zip", ["archive"]),
    }
    if collection_id == "snow-l2b":
        rasters = {
            f"SNW_{g}": (f"Snow classes {g}", COG, list(ROLES["SNW"])) for g in ("R2", "XS")
        } | {"thumbnail": ("Snow map preview", "image/png", ["thumbnail", "overview"])}
    elif collection_id in ("sentinel2-l2a", "landsat8-l2a"):
        from sansnuages.formats.muscate import LANDSAT8_GROUPS, SENTINEL2_GROUPS

        groups = LANDSAT8_GROUPS if collection_id == "landsat8-l2a" else SENTINEL2_GROUPS
        rasters = {}
        for group, bands in groups.items():
            for band in bands:
                for kind in ("FRE", "SRE"):
                    rasters[f"{kind}_{band}"] = (f"{TITLES[kind]} {band}", COG, list(ROLES[kind]))
            for kind in ("ATB", "CLM", "MG2", "EDG", "SAT", "DFP"):
                rasters[f"{kind}_{group}"] = (f"{TITLES[kind]} {group}", COG, list(roles_of(kind)))
        rasters["thumbnail"] = ("Quicklook", "image/jpeg", ["thumbnail", "overview"])
    else:
        return {}
    return {
        key: pystac.ItemAssetDefinition.create(title, None, media_type, roles)
        for key, (title, media_type, roles) in (rasters | files).items()
    }


ROLES: dict[str, tuple[str, ...]] = {
    "FRE": ("data", "reflectance"),
    "SRE": ("data", "reflectance"),
    "ATB": ("data",),
    "CLM": ("cloud", "data-mask"),
    "SNW": ("data", "snow-ice"),
}
TITLES = {
    "FRE": "Flat reflectance (slope corrected)",
    "SRE": "Surface reflectance",
    "ATB": "Water vapour and aerosol optical thickness",
    "CLM": "Cloud mask",
    "MG2": "Geophysical mask",
    "EDG": "No-data mask",
    "SAT": "Saturation mask",
    "DFP": "Defective pixels mask",
    "IAB": "Interpolated atmosphere mask",
    "SNW": "Snow classes",
}


def roles_of(kind: str) -> tuple[str, ...]:
    return ROLES.get(kind, ("data-mask",))


def multihash_sha256(data: bytes) -> str:
    """`file:checksum` as the file extension wants it: a multihash (0x12 sha2-256, 0x20 bytes)."""
    return "1220" + hashlib.sha256(data).hexdigest()


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
    checksum: str | None = None


@dataclass(frozen=True)
class FileAsset:
    key: str
    href: str
    media_type: str
    roles: tuple[str, ...]
    title: str
    size_bytes: int | None = None
    checksum: str | None = None


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
        asset = pystac.Asset(
            file.href, title=file.title, media_type=file.media_type, roles=list(file.roles)
        )
        item.add_asset(file.key, asset)
        _describe_file(asset, file.size_bytes, file.checksum)
    for href in derived_from:
        item.add_link(pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON))
    _apply_item_projection(
        item, rasters=[a for a in item.assets.values() if a.roles and "data" in a.roles]
    )
    pin_projection(item)
    return item


def describe_raster_asset(asset: pystac.Asset, raster: RasterAsset, platform: str | None) -> None:
    proj = ProjectionExtension.ext(asset, add_if_missing=True)
    proj.apply(
        code=f"EPSG:{raster.epsg}", shape=list(raster.shape), transform=list(raster.transform)
    )
    asset.common_metadata.gsd = abs(raster.transform[0])
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
    _describe_file(asset, raster.size_bytes, raster.checksum)


def _describe_file(asset: pystac.Asset, size: int | None, checksum: str | None) -> None:
    if size is None and checksum is None:
        return
    file = FileExtension.ext(asset, add_if_missing=True)
    file.apply(size=size, checksum=checksum)


def _apply_item_projection(item: pystac.Item, rasters: list[pystac.Asset]) -> None:
    codes = {a.extra_fields.get("proj:code") for a in rasters}
    if len(codes) == 1:
        ProjectionExtension.ext(item, add_if_missing=True).code = codes.pop()


def pin_projection(item: pystac.Item) -> None:
    """Declare projection v1.2.0 and write `proj:epsg` beside every EPSG `proj:code`.

    Called last: pystac's extension classes write v2.0.0 (`proj:code` only), which stackstac
    cannot read; v1.2.0 defines both fields, so one document serves both kinds of client.
    """
    holders: list[dict[str, Any]] = [item.properties]
    holders += [asset.extra_fields for asset in item.assets.values()]
    for fields in holders:
        code = fields.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            fields["proj:epsg"] = int(code.split(":", 1)[1])
    item.stac_extensions = [
        PROJECTION_V1_2 if uri == PROJECTION_V2 else uri for uri in item.stac_extensions
    ]


def bbox_of(geometry: Mapping[str, Any]) -> list[float]:
    """The STAC bbox of a lon/lat geometry; for one split at the antimeridian the bbox crosses
    it (west > east), as the spec says, instead of spanning the whole globe."""
    geom = shape(geometry)
    west, south, east, north = geom.bounds
    parts = list(getattr(geom, "geoms", [geom]))
    if len(parts) < 2 or west > -179.999 or east < 179.999:
        return [west, south, east, north]
    eastern = [p.bounds for p in parts if p.bounds[0] >= 0]
    western = [p.bounds for p in parts if p.bounds[2] <= 0]
    if not eastern or not western:
        return [west, south, east, north]
    return [min(b[0] for b in eastern), south, max(b[2] for b in western), north]


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


def set_processing(
    item: pystac.Item, level: str, version: str | None, when: DateTime | None = None
) -> None:
    item.properties["processing:level"] = level
    if version:
        item.properties["processing:version"] = version
    if when is not None:
        item.properties["processing:datetime"] = (
            when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        )
    if PROCESSING_SCHEMA not in item.stac_extensions:
        item.stac_extensions.append(PROCESSING_SCHEMA)


@dataclass(frozen=True)
class VersionLinks:
    """Where one product stands among the versions of the same acquisition."""

    deprecated: bool
    predecessor: str | None
    successor: str | None
    latest: str


def version_history(ids_by_version: Mapping[str, tuple[int, int]]) -> dict[str, VersionLinks]:
    """Order the products of one acquisition by version: every one but the newest is
    deprecated, and each points to its neighbours and to the newest."""
    ordered = sorted(ids_by_version, key=lambda i: (ids_by_version[i], i))
    latest = ordered[-1]
    return {
        product: VersionLinks(
            deprecated=product != latest,
            predecessor=ordered[n - 1] if n > 0 else None,
            successor=ordered[n + 1] if n + 1 < len(ordered) else None,
            latest=latest,
        )
        for n, product in enumerate(ordered)
    }


def set_version(
    item: pystac.Item, version: str, links: VersionLinks, href_of: Mapping[str, str]
) -> None:
    """Versioning indicators: `version`, `deprecated`, and the links between versions."""
    ext = VersionExtension.ext(item, add_if_missing=True)
    ext.version = version
    ext.deprecated = links.deprecated
    rels = {
        VersionRelType.LATEST: links.latest,
        VersionRelType.PREDECESSOR: links.predecessor,
        VersionRelType.SUCCESSOR: links.successor,
    }
    for rel, target in rels.items():
        item.clear_links(rel)
        if target is not None and target != item.id:
            item.add_link(pystac.Link(rel, href_of[target], media_type=pystac.MediaType.GEOJSON))


def tile_of(item: dict[str, Any]) -> str | None:
    code = item.get("properties", {}).get("grid:code")
    return code.removeprefix("MGRS-") if isinstance(code, str) else None


def item_document(item: pystac.Item, item_key: str, collection_key: str) -> dict[str, Any]:
    """The Item as stored on S3: links relative to its key, so the bucket browses as a catalog."""
    folder = posixpath.dirname(item_key)
    relative = posixpath.relpath(collection_key, folder)
    for rel in ("collection", "parent"):
        item.clear_links(rel)
        item.add_link(pystac.Link(rel, relative, media_type=pystac.MediaType.JSON))
    return item.to_dict(include_self_link=False, transform_hrefs=False)
