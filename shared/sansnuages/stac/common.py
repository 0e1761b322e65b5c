"""What every Item of the catalog shares: assets described from raster facts, projection,
processing, and the document stored on S3. Pure: builders take frozen facts, return pystac."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import datetime as DateTime
from typing import Any

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from shapely.geometry import shape

from sansnuages.formats.bands import bands_of

COG = "image/tiff; application=geotiff; profile=cloud-optimized"


PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"


PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


PROJECTION_V1_2 = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"


CLOUDY_PERCENT = 90.0


CLOUDY_PROPERTY = "sansnuages:cloudy"
"""True when more than CLOUDY_PERCENT % of the valid pixels are cloudy: such products are
ingested (they still hold clear pixels) but production statistics leave them out."""
INGESTED_PROPERTY = "sansnuages:ingested"
"""When a product's Item was indexed (UTC, RFC 3339), set by ingest. The `derived_from` link
to an input carries the input's, so that a corrected input (the same id, other bytes, indexed
later) is known from the version a product was made of."""


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


@dataclass(frozen=True)
class Source:
    """An input Item a product was made from: where it is, and when the version read was
    indexed (its `sansnuages:ingested`), recorded on the `derived_from` link."""

    href: str
    ingested: str | None = None

    @classmethod
    def of(cls, href: str, item: Mapping[str, Any]) -> Source:
        return cls(href, item.get("properties", {}).get(INGESTED_PROPERTY))


def build_item(
    facts: ItemFacts,
    rasters: Iterable[RasterAsset],
    files: Iterable[FileAsset] = (),
    platform: str | None = None,
    derived_from: Iterable[str | Source] = (),
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
    for entry in derived_from:
        source = entry if isinstance(entry, Source) else Source(entry)
        stamp = {INGESTED_PROPERTY: source.ingested} if source.ingested else None
        link = pystac.Link("derived_from", source.href, media_type=pystac.MediaType.GEOJSON)
        link.extra_fields.update(stamp or {})
        item.add_link(link)
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
