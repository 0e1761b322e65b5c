"""What one raster of a MUSCATE product is: how it agrees with the product's metadata, its
no-data value, its overview resampling and the facts its STAC asset records."""

from __future__ import annotations

from typing import Any

from sansnuages import errors
from sansnuages.formats import grid, snow
from sansnuages.formats.muscate import MuscateMetadata, ProductLayout, groups_for
from sansnuages.stac.common import (
    TITLES,
    roles_of,
)

NATIVE_PIXEL_M = {"R1": 10.0, "R2": 20.0, "XS": 30.0}
"""The pixel size of each resolution group (Landsat-8 `XS` on the Sentinel-2 tiles)."""
KINDS: dict[str, tuple[frozenset[str], int]] = {
    "FRE": (frozenset({"int16"}), 1),
    "SRE": (frozenset({"int16"}), 1),
    "ATB": (frozenset({"uint8", "uint16"}), 2),
    **{mask: (frozenset({"uint8"}), 1) for mask in ("CLM", "EDG", "MG2", "SAT", "IAB", "DFP")},
    "DTF": (frozenset({"uint8"}), 1),
    "SNW": (frozenset({"uint8"}), 1),
}
"""The data types and band count of each kind of raster."""


def group_of(asset_key: str, platform: str) -> str:
    """The resolution group of an asset: FRE_B5 -> R2, CLM_R1 -> R1, DTF_R1-D04 -> R1."""
    suffix = asset_key.split("_", 1)[1].split("-", 1)[0]
    for group, bands in groups_for(platform).items():
        if suffix == group or suffix in bands:
            return group
    if suffix in NATIVE_PIXEL_M:  # a snow map of a group the platform's bands do not name
        return suffix
    raise errors.OffGrid(f"{asset_key}: no resolution group {suffix!r} for {platform}")


def check_on_grid(
    asset_key: str, dataset: Any, platform: str, tile: grid.Tile, reduced: bool = False
) -> None:
    """The raster must be of its kind (type, bands) and lie exactly on its MGRS tile: the
    tile's CRS, its upper-left corner, its 109,800 m extent, at the group's pixel size (or, with
    `reduced`, a coarser one). Judged from the header alone, before any pixel is read, so that
    a sparse file declaring billions of pixels costs nothing."""
    kind = asset_key.split("_", 1)[0]
    dtypes, count = KINDS.get(kind, (frozenset(), 0))
    if dataset.dtypes[0] not in dtypes or dataset.count != count:
        raise errors.OffGrid(
            f"{asset_key}: {dataset.count} band(s) of {dataset.dtypes[0]}, where a {kind} "
            f"raster has {count} of {' or '.join(sorted(dtypes)) or 'nothing'}"
        )
    epsg = dataset.crs.to_epsg() if dataset.crs else None
    if epsg != tile.epsg:
        raise errors.OffGrid(f"{asset_key}: CRS EPSG:{epsg}, tile {tile.name} is EPSG:{tile.epsg}")
    a, b, c, d, e, f = tuple(dataset.transform)[:6]
    native = NATIVE_PIXEL_M[group_of(asset_key, platform)]
    if b or d or a <= 0 or e != -a or not (a == native or (reduced and a > native)):
        raise errors.OffGrid(
            f"{asset_key}: pixel of {a} x {-e} m, {native} m expected"
            + (" (or coarser)" if reduced else "")
        )
    if abs(c - tile.ulx) > 1e-6 or abs(f - tile.uly) > 1e-6:
        raise errors.OffGrid(
            f"{asset_key}: upper-left corner ({c}, {f}), tile {tile.name} starts at "
            f"({tile.ulx}, {tile.uly})"
        )
    if abs(dataset.width * a - tile.size_m) > 1e-6 or abs(dataset.height * a - tile.size_m) > 1e-6:
        raise errors.OffGrid(
            f"{asset_key}: {dataset.width} x {dataset.height} px of {a} m do not cover the "
            f"tile's {tile.size_m:.0f} m"
        )


def check_against_metadata(asset_key: str, dataset: Any, meta: MuscateMetadata) -> None:
    """The raster must have the size the metadata gives its group."""
    group = group_of(asset_key, meta.platform)
    geo = meta.groups.get(group)
    if geo is None:
        raise errors.InconsistentMetadata(f"{asset_key}: no group {group} in the metadata")
    if (dataset.width, dataset.height) != (geo.ncols, geo.nrows):
        raise errors.InconsistentMetadata(
            f"{asset_key}: raster is {dataset.width}x{dataset.height} px, metadata says {geo.ncols}x{geo.nrows}"
        )
    epsg = dataset.crs.to_epsg() if dataset.crs else None
    if epsg != meta.epsg:
        raise errors.InconsistentMetadata(
            f"{asset_key}: raster CRS EPSG:{epsg}, metadata EPSG:{meta.epsg}"
        )


def nodata_of(asset_key: str, dataset: Any, layout: ProductLayout) -> float | None:
    if asset_key.startswith("SNW_"):
        return snow.nodata_for(layout.name.version, dataset.nodata)
    return dataset.nodata


def cog_overrides(asset_key: str) -> dict[str, str]:
    """Masks and classes are categorical: their overviews pick, they do not average."""
    if asset_key.startswith(("FRE_", "SRE_", "ATB_")):
        return {}
    return {"OVERVIEW_RESAMPLING": "NEAREST"}


def raster_facts(
    asset_key: str, dataset: Any, meta: MuscateMetadata, nodata: float | None
) -> dict[str, Any]:
    kind, _, suffix = asset_key.partition("_")
    if kind in ("FRE", "SRE"):
        scales: tuple[float | None, ...] = (meta.reflectance_scale,)
        band_names: tuple[str, ...] = (suffix,)
    elif kind == "ATB":
        scales, band_names = (meta.wvc_scale, meta.aot_scale), ()
    else:
        scales, band_names = (None,) * dataset.count, ()
    return {
        "key": asset_key,
        "title": f"{TITLES.get(kind, kind)} {suffix}",
        "roles": roles_of(kind),
        "shape": (dataset.height, dataset.width),
        "transform": tuple(dataset.transform)[:6],
        "epsg": meta.epsg,
        "data_type": dataset.dtypes[0],
        "nodata": nodata,
        "scales": scales,
        "band_names": band_names,
    }
