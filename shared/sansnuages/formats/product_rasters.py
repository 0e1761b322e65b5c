"""What one raster of a MUSCATE product is: how it agrees with the product's metadata, its\nno-data value, its overview resampling and the facts its STAC asset records."""

from __future__ import annotations

from typing import Any

from sansnuages import errors
from sansnuages.formats import snow
from sansnuages.formats.muscate import MuscateMetadata, ProductLayout
from sansnuages.stac.common import (
    TITLES,
    roles_of,
)


def check_against_metadata(asset_key: str, dataset: Any, meta: MuscateMetadata) -> None:
    group = asset_key.rsplit("_", 1)[-1].split("-", 1)[0]  # DTF_R1-D04: group R1, detector 4
    if asset_key.startswith(("FRE_", "SRE_")):
        group = next((g for g, geo in meta.groups.items() if geo.ncols == dataset.width), group)
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
