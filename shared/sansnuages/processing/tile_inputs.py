"""How a tile's L2A Items become the synthesis's inputs and outputs: observations with their
rasters, weights and view geometry, the output grids and layers. Pure of AWS."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from affine import Affine

from sansnuages.formats import grid
from sansnuages.formats.bands import LANDSAT8_TO_SENTINEL2, SENTINEL2_GROUPS, is_landsat
from sansnuages.processing.synthesis import (
    AOT_MAX,
    AOT_MIN_WEIGHT,
    CLOUD_CELL_M,
    DATE_MIN_WEIGHT,
    DTS_NODATA,
    LANDSAT8_WEIGHT,
    SENTINEL2_WEIGHT,
    Observation,
    OutputGrid,
    RasterRef,
)
from sansnuages.raster.brdf import AngleGrid, NadirNormalisation, ViewGeometry

SENSOR_WEIGHTS = {"sentinel-2": SENTINEL2_WEIGHT, "landsat": LANDSAT8_WEIGHT}


METHOD_PARAMETERS = {
    "aot_max": AOT_MAX,
    "aot_min_weight": AOT_MIN_WEIGHT,
    "date_min_weight": DATE_MIN_WEIGHT,
    "cloud_cell_m": CLOUD_CELL_M,
    "sentinel2_weight": SENTINEL2_WEIGHT,
    "landsat8_weight": LANDSAT8_WEIGHT,
}


@dataclass(frozen=True)
class OutputLayer:
    """One synthesis output as the Item describes it."""

    name: str
    title: str
    roles: tuple[str, ...]
    data_type: str
    nodata: float | None
    scale: float | None = None
    band_names: tuple[str, ...] = ()


def output_layers(
    group: str, bands: tuple[str, ...], subsets: tuple[tuple[str, ...], ...] = ()
) -> list[OutputLayer]:
    reflectance = [
        OutputLayer(
            f"FRC_{b}",
            f"Composite reflectance {b}",
            ("data", "reflectance"),
            "int16",
            -10000,
            1e-4,
            (b,),
        )
        for b in bands
    ]
    quality = []
    for members in ((), *subsets):
        name = group + ("_" + "".join(members) if members else "")
        about = f"{group} ({' '.join(members)})" if members else group
        quality += [
            OutputLayer(
                f"FLG_{name}",
                f"Flags {about}: 0 no data, 1 cloud, 2 snow, 3 water, 4 clear land",
                ("data", "cloud"),
                "uint8",
                None,
            ),
            OutputLayer(f"WGT_{name}", f"Total weight x 1000 {about}", ("data",), "int16", None),
            OutputLayer(
                f"DTS_{name}",
                f"Weighted mean date {about}, days from the 15th",
                ("data",),
                "int16",
                DTS_NODATA,
            ),
        ]
    return [*reflectance, *quality]


def newest_versions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of several products for one platform and date, keep every piece of the newest version."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        props = item["properties"]
        groups[(props.get("platform", ""), props["datetime"][:10])].append(item)

    def version(item: dict[str, Any]) -> tuple[int, ...]:
        text = str(item["properties"].get("processing:version", "0"))
        return tuple(int(part) for part in text.replace(".", "-").split("-") if part.isdigit())

    kept: list[dict[str, Any]] = []
    for group in groups.values():
        newest = max(version(item) for item in group)
        kept.extend(item for item in group if version(item) == newest)
    return sorted(kept, key=lambda item: (item["properties"]["datetime"], item["id"]))


def raster_ref(item: dict[str, Any], key: str, band: int = 1) -> RasterRef:
    asset = item["assets"][key]
    raster_bands = asset.get("raster:bands", [{}])
    info = raster_bands[band - 1] if len(raster_bands) >= band else {}
    return RasterRef(
        path=asset["href"].replace("s3://", "/vsis3/", 1),
        band=band,
        scale=float(info.get("scale") or 1.0),
        nodata=info.get("nodata"),
    )


def view_geometry(properties: dict[str, Any]) -> ViewGeometry | None:
    """The mean sun and view angles an L2A Item carries (`view:*`); None if one is missing."""
    names = ("view:sun_elevation", "view:sun_azimuth", "view:incidence_angle", "view:azimuth")
    values = [float(properties[name]) for name in names if properties.get(name) is not None]
    if len(values) < len(names):
        return None
    elevation, sun_azimuth, incidence, azimuth = values
    return ViewGeometry(90.0 - elevation, sun_azimuth, incidence, azimuth)


def observation_from_item(
    item: dict[str, Any], nadir: bool = False, grid: AngleGrid | None = None
) -> Observation:
    """`nadir`: normalise the observation to nadir view with the Item's mean angles, and the
    product's view angle `grid` where it has one (an Item without angles is used as it is)."""
    platform = item["properties"].get("platform", "")
    landsat = is_landsat(platform)
    reflectance, cloud, edge, aot = {}, {}, {}, {}
    for group, bands in SENTINEL2_GROUPS.items():
        for band in bands:
            source_band = LANDSAT8_TO_SENTINEL2.get(band) if landsat else band
            source_group = "XS" if landsat else group
            if source_band is None or f"FRE_{source_band}" not in item["assets"]:
                continue
            reflectance[band] = raster_ref(item, f"FRE_{source_band}")
            cloud[band] = raster_ref(item, f"CLM_{source_group}")
            edge[band] = raster_ref(item, f"EDG_{source_group}")
            aot[band] = raster_ref(item, f"ATB_{source_group}", band=2)
    return Observation(
        product_id=item["id"],
        platform=platform,
        acquired=datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00")),
        sensor_weight=SENSOR_WEIGHTS["landsat" if landsat else "sentinel-2"],
        reflectance=reflectance,
        cloud=cloud,
        edge=edge,
        aot=aot,
        nadir=NadirNormalisation(replace(geometry, grid=grid))
        if nadir and (geometry := view_geometry(item["properties"]))
        else None,
    )


def output_grids(tile: str, items: list[dict[str, Any]]) -> dict[str, OutputGrid]:
    """The Sentinel-2 10/20 m grids of the tile, at the resolution the products carry."""
    sentinel = next((i for i in items if not is_landsat(i["properties"].get("platform", ""))), None)
    if sentinel is not None:
        return {
            group: grid_of(sentinel["assets"][f"FRE_{bands[0]}"])
            for group, bands in SENTINEL2_GROUPS.items()
        }
    landsat = items[0]["assets"]["FRE_B2"]
    res = abs(landsat["proj:transform"][0]) / 3
    square = grid.tile(tile)
    size = round(square.size_m / res)
    crs = f"EPSG:{square.epsg}"
    return {
        "R1": OutputGrid(crs, Affine(res, 0, square.ulx, 0, -res, square.uly), size, size),
        "R2": OutputGrid(
            crs, Affine(2 * res, 0, square.ulx, 0, -2 * res, square.uly), size // 2, size // 2
        ),
    }


def grid_of(asset: dict[str, Any]) -> OutputGrid:
    height, width = asset["proj:shape"]
    return OutputGrid(asset["proj:code"], Affine(*asset["proj:transform"][:6]), width, height)
