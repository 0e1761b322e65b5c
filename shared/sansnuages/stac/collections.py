"""The collections of the catalog: every id, title, licence and provider, defined once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pystac

from sansnuages.formats.bands import is_landsat
from sansnuages.stac.common import COG, ROLES, TITLES, roles_of
from sansnuages.stac.extents import iso

SENTINEL2_L2A = "sentinel2-l2a"
LANDSAT8_L2A = "landsat8-l2a"
SNOW_L2B = "snow-l2b"
SENTINEL2_L3A = "sentinel2-l3a"
SNOW_SEASONS = "snow-seasons"
MOSAICS = "mosaics"
L2A_REFLECTANCE = (SENTINEL2_L2A, LANDSAT8_L2A)
"""The reflectance collections a synthesis reads."""

LICENSE = "etalab-2.0"


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
    SENTINEL2_L2A: CollectionSpec(
        "Sentinel-2 Level-2A (MUSCATE)",
        "Surface reflectance of Sentinel-2A/2B/2C with MAJA cloud masks, as Cloud-Optimized GeoTIFFs.",
        ("sentinel-2a", "sentinel-2b", "sentinel-2c"),
        ("sentinel-2",),
        ("msi",),
        (10.0, 20.0),
        "L2A",
    ),
    LANDSAT8_L2A: CollectionSpec(
        "Landsat-8 Level-2A (MUSCATE)",
        "Surface reflectance of Landsat-8 OLI with MAJA cloud masks, on the Sentinel-2 tiles.",
        ("landsat-8",),
        ("landsat",),
        ("oli",),
        (30.0,),
        "L2A",
    ),
    SNOW_L2B: CollectionSpec(
        "Snow cover (Let-It-Snow L2B-SNOW)",
        "Snow maps of Sentinel-2 (20 m) and Landsat-8 (30 m): 0 no snow, 100 snow, 205 cloud,"
        " 254 or 255 no data.",
        ("sentinel-2a", "sentinel-2b", "sentinel-2c", "landsat-8"),
        ("sentinel-2", "landsat"),
        ("msi", "oli"),
        (20.0, 30.0),
        "L2B",
    ),
    SENTINEL2_L3A: CollectionSpec(
        "Monthly cloud-free syntheses (Level-3A)",
        "Weighted-average syntheses of the clear Sentinel-2 and Landsat-8 observations of a"
        " 46-day window centred on the 15th of each month, per Sentinel-2 tile.",
        level="L3A",
        from_theia=False,
    ),
    SNOW_SEASONS: CollectionSpec(
        "Snow seasons (hydrological years, Sentinel-2 and Landsat-8)",
        "Per tile and hydrological year (1 September to 31 August), from the Let-It-Snow snow"
        " maps of Sentinel-2 and Landsat-8 fused by day and gap-filled daily: snow cover"
        " duration (SCD, days), onset and melt of the longest snow period (SOD, SMOD, days since"
        " 1 September), clear observations (NOBS) and snow periods (NSP), on the 20 m grid.",
        ("sentinel-2a", "sentinel-2b", "sentinel-2c", "landsat-8"),
        ("sentinel-2", "landsat"),
        ("msi", "oli"),
        (20.0,),
        "L3B-SNOW",
        from_theia=False,
    ),
    MOSAICS: CollectionSpec(
        "Country mosaics",
        "Mosaics cut to an area: the true colour of a month's Level-3A syntheses"
        " (`sansnuages:product` = `true-colour`, RGB uint8 asset `visual`) and the snow cover"
        " duration of a snow season (`snow-cover-duration`, asset `SCD`: uint16 days, nodata"
        " 65535, drawn with the colour map its `sansnuages:colour_map` names);"
        " `sansnuages:period` is the month (2018-07) or season (snow-2018).",
        from_theia=False,
    ),
}


def collection_for(platform: str, level: str = "L2A") -> str:
    if level.startswith("L2B-SNOW"):
        return SNOW_L2B
    return LANDSAT8_L2A if is_landsat(platform) else SENTINEL2_L2A


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


MOSAIC_ASSETS: dict[str, tuple[str, None, str, list[str]]] = {
    "visual": ("True colour (B4, B3, B2), RGB uint8, 0 no data", None, COG, ["visual", "data"]),
    "SCD": ("Snow cover duration (days), uint16, 65535 no data", None, COG, ["data"]),
    "overview": ("The whole at a coarser resolution (large mosaics)", None, COG, ["overview"]),
    "thumbnail": ("Preview", None, "image/png", ["thumbnail"]),
}
"""What a mosaic Item may carry: `visual` (true colour) or `SCD` (a snow season), each a COG
or the VRT of the parts of a large mosaic, whose `part-*` assets it lists as well."""


def item_assets_of(
    collection_id: str,
) -> dict[str, pystac.ItemAssetDefinition | dict[str, Any]]:
    """What every Item of an ingested collection carries, so clients can plan before searching."""
    files = {
        "metadata": ("MUSCATE metadata", "application/xml", ["metadata"]),
        "product": ("Original product", "application/zip", ["archive"]),
    }
    if collection_id == MOSAICS:
        return {key: pystac.ItemAssetDefinition.create(*a) for key, a in MOSAIC_ASSETS.items()}
    if collection_id == SNOW_L2B:
        rasters = {
            f"SNW_{g}": (f"Snow classes {g}", COG, list(ROLES["SNW"])) for g in ("R2", "XS")
        } | {"thumbnail": ("Snow map preview", "image/png", ["thumbnail", "overview"])}
    elif collection_id in L2A_REFLECTANCE:
        from sansnuages.formats.muscate import LANDSAT8_GROUPS, SENTINEL2_GROUPS

        groups = LANDSAT8_GROUPS if collection_id == LANDSAT8_L2A else SENTINEL2_GROUPS
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


def new_extent(bbox: Iterable[float] | None, start: datetime, end: datetime) -> dict[str, Any]:
    box = list(bbox) if bbox is not None else [-180.0, -90.0, 180.0, 90.0]
    return {
        "spatial": {"bbox": [box]},
        "temporal": {"interval": [[iso(start), iso(end)]]},
    }


def widened_extent(
    extent: Mapping[str, Any], bbox: Iterable[float] | None, start: datetime, end: datetime
) -> dict[str, Any]:
    """The overall extent (first bbox, first interval) grown to cover a bbox and an interval."""
    boxes = (extent.get("spatial") or {}).get("bbox") or []
    intervals = (extent.get("temporal") or {}).get("interval") or []
    if not boxes or not intervals:
        return new_extent(bbox, start, end)
    box = boxes[0] if bbox is None else union_bbox(boxes[0], list(bbox))
    low, high = intervals[0]
    low = iso(min(_instant(low), start)) if low else None
    high = iso(max(_instant(high), end)) if high else None
    return {
        **extent,
        "spatial": {**extent["spatial"], "bbox": [box, *boxes[1:]]},
        "temporal": {**extent["temporal"], "interval": [[low, high], *intervals[1:]]},
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def union_bbox(a: list[float], b: list[float]) -> list[float]:
    """The smallest lon/lat box covering two boxes, either of which may cross the antimeridian
    (west > east), as STAC writes them."""
    south, north = min(a[1], b[1]), max(a[3], b[3])
    a_west, a_east = a[0], a[2] if a[2] >= a[0] else a[2] + 360
    best: tuple[float, float] | None = None
    for shift in (-360.0, 0.0, 360.0):
        b_west = b[0] + shift
        b_east = (b[2] if b[2] >= b[0] else b[2] + 360) + shift
        span = (min(a_west, b_west), max(a_east, b_east))
        if best is None or span[1] - span[0] < best[1] - best[0]:
            best = span
    assert best is not None
    west, east = best
    if east - west >= 360:
        return [-180.0, south, 180.0, north]
    west = (west + 180) % 360 - 180
    east = (east + 180) % 360 - 180 if east > 180 else east
    return [west, south, east, north]
