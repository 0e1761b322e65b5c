"""Reflectance time series at a point or over a small polygon: what is read from which asset,
how the flags of the masks are decoded, and the documents made of the observations.

Pure: the reader (`stores.timeseries`) finds the Items and reads the pixels; this module says
which assets and pixels to read and what they mean.

Bands are named as Sentinel-2 names them. A Landsat-8 product answers with its twin band
where there is one (B2, B3, B4 alike; B8 and B8A from its B5, B11 from B6, B12 from B7, the
synthesis' mapping) and with nothing for the red-edge bands B5, B6 and B7.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sansnuages import errors

COLLECTIONS = ("sentinel2-l2a", "landsat8-l2a")
DEFAULT_BANDS = ("B2", "B3", "B4", "B8")
SENTINEL2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
LANDSAT_TWINS = {"B2": "B2", "B3": "B3", "B4": "B4", "B8": "B5", "B8A": "B5", "B11": "B6",
                 "B12": "B7"}  # fmt: skip
FLAG_NAMES = ("cloud", "shadow", "snow", "water", "edge")
AOT_BAND = 2
"""ATB band 1 is water vapour, band 2 the aerosol optical thickness (FORMATS.md)."""
AOT_SCALE = 1 / 200
REFLECTANCE_NODATA = -10000

# CLM (Theia order): bit 0 clouds and shadows, bit 1 clouds, bits 5 and 6 shadows.
CLM_NOT_CLEAR, CLM_CLOUD, CLM_SHADOWS = 1, 2, 32 | 64
# MG2: bit 0 water, bit 2 snow.
MG2_WATER, MG2_SNOW = 1, 4


def parse_bands(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`B2,B3,B4` (or a list): known Sentinel-2 band names, each once, in the order asked."""
    if text is None or text == "" or text == []:
        return DEFAULT_BANDS
    names = text.split(",") if isinstance(text, str) else list(text)
    bands: list[str] = []
    for name in names:
        band = str(name).strip().upper()
        if band not in SENTINEL2_BANDS:
            raise errors.InvalidRequest(
                f"unknown band {str(name)[:20]!r}: bands are {', '.join(SENTINEL2_BANDS)}"
            )
        if band not in bands:
            bands.append(band)
    return tuple(bands)


def is_landsat(item: Mapping[str, Any]) -> bool:
    return item.get("collection") == "landsat8-l2a"


def asset_of_band(item: Mapping[str, Any], band: str) -> str | None:
    """The reflectance asset (FRE) answering for a Sentinel-2 band name, if the product has one."""
    name = LANDSAT_TWINS.get(band) if is_landsat(item) else band
    key = f"FRE_{name}"
    return key if name is not None and key in item.get("assets", {}) else None


def mask_assets(item: Mapping[str, Any]) -> dict[str, str]:
    """The finest group's masks and ATB (`CLM_R1`..., or `CLM_XS` for Landsat-8)."""
    assets = item.get("assets", {})
    for group in ("R1", "XS", "R2"):
        if f"CLM_{group}" in assets:
            return {
                kind: f"{kind}_{group}"
                for kind in ("CLM", "MG2", "EDG", "ATB")
                if f"{kind}_{group}" in assets
            }
    return {}


def band_scale(asset: Mapping[str, Any], band_index: int = 1) -> tuple[float, float]:
    """(scale, offset) of one band of an asset, from its `raster:bands`."""
    bands = asset.get("raster:bands") or []
    if len(bands) >= band_index:
        info = bands[band_index - 1]
        return float(info.get("scale", 1.0)), float(info.get("offset", 0.0))
    return 1.0, 0.0


def newest_versions(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Items that are the newest version of their acquisition (`deprecated` false)."""
    return [item for item in items if not item.get("properties", {}).get("deprecated", False)]


@dataclass(frozen=True)
class PixelBlock:
    """The pixels of one asset under the point or polygon: values and where they count."""

    values: np.ndarray
    inside: np.ndarray
    """Boolean, same shape: the pixels of the polygon (a single True for a point)."""


def decode_flags(
    clm: np.ndarray, mg2: np.ndarray | None, edg: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Boolean maps of the five flags from the mask values."""
    clm = clm.astype(np.int64)
    flags = {
        "cloud": (clm & CLM_CLOUD) != 0,
        "shadow": (clm & CLM_SHADOWS) != 0,
        "snow": np.zeros(clm.shape, bool)
        if mg2 is None
        else (mg2.astype(np.int64) & MG2_SNOW) != 0,
        "water": np.zeros(clm.shape, bool)
        if mg2 is None
        else (mg2.astype(np.int64) & MG2_WATER) != 0,
        "edge": np.zeros(clm.shape, bool) if edg is None else edg != 0,
    }
    return flags


def clear_map(clm: np.ndarray, edg: np.ndarray | None) -> np.ndarray:
    """Clear as the synthesis counts it: CLM bit 0 unset and EDG = 0."""
    clear = (clm.astype(np.int64) & CLM_NOT_CLEAR) == 0
    return clear if edg is None else clear & (edg == 0)


@dataclass
class Observation:
    """One product's answer at the point (or its mean over the polygon)."""

    datetime: str
    platform: str
    collection: str
    product: str
    version: str | None
    deprecated: bool
    clear: bool
    reflectance: dict[str, float | None]
    aot: float | None
    flags: dict[str, float]
    """0 or 1 at a point; the share of the polygon's pixels over a polygon."""
    sun_elevation: float | None
    sun_azimuth: float | None
    view_incidence: float | None
    view_azimuth: float | None
    pixels: int = 1
    clear_fraction: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        document = {
            "datetime": self.datetime,
            "platform": self.platform,
            "collection": self.collection,
            "product": self.product,
            "version": self.version,
            "deprecated": self.deprecated,
            "clear": self.clear,
            "clear_fraction": self.clear_fraction,
            "pixels": self.pixels,
            "reflectance": self.reflectance,
            "aot": self.aot,
            "flags": self.flags,
            "sun_elevation": self.sun_elevation,
            "sun_azimuth": self.sun_azimuth,
            "view_incidence_angle": self.view_incidence,
            "view_azimuth": self.view_azimuth,
        }
        return document


def _scaled_mean(
    block: PixelBlock, use: np.ndarray, scale: float, offset: float, nodata: float | None
) -> float | None:
    values = block.values.astype(np.float64)
    valid = use & block.inside
    if nodata is not None:
        valid &= block.values != nodata
    if not valid.any():
        return None
    return round(float(values[valid].mean() * scale + offset), 6)


def observe(
    item: Mapping[str, Any],
    bands: Sequence[str],
    blocks: Mapping[str, PixelBlock],
) -> Observation | None:
    """The observation of one product from its blocks (`FRE_*`, `CLM`, `MG2`, `EDG`, `ATB`
    keyed by asset key), all on the same pixels; None where the point is outside its data."""
    masks = mask_assets(item)
    assets = item.get("assets", {})
    clm_block = blocks[masks["CLM"]]
    inside = clm_block.inside
    if not inside.any():
        return None
    mg2 = blocks[masks["MG2"]].values if "MG2" in masks and masks["MG2"] in blocks else None
    edg = blocks[masks["EDG"]].values if "EDG" in masks and masks["EDG"] in blocks else None
    flags = decode_flags(clm_block.values, mg2, edg)
    clear = clear_map(clm_block.values, edg) & inside
    valid = inside if edg is None else inside & (edg == 0)
    if not valid.any():
        return None
    count = int(inside.sum())
    clear_fraction = float(clear.sum()) / count
    use = clear if clear.any() else valid  # the mean of the clear pixels where there are some
    reflectance: dict[str, float | None] = {}
    for band in bands:
        key = asset_of_band(item, band)
        if key is None or key not in blocks:
            reflectance[band] = None
            continue
        scale, offset = band_scale(assets[key])
        nodata = assets[key].get("raster:bands", [{}])[0].get("nodata", REFLECTANCE_NODATA)
        reflectance[band] = _scaled_mean(blocks[key], use, scale, offset, nodata)
    aot: float | None = None
    if "ATB" in masks and masks["ATB"] in blocks:
        scale, offset = band_scale(assets[masks["ATB"]], AOT_BAND)
        if scale == 1.0 and offset == 0.0:
            scale = AOT_SCALE
        aot = _scaled_mean(blocks[masks["ATB"]], use, scale, offset, 0)
    properties = item.get("properties", {})
    return Observation(
        datetime=str(properties.get("datetime")),
        platform=str(properties.get("platform")),
        collection=str(item.get("collection")),
        product=str(item.get("id")),
        version=properties.get("version"),
        deprecated=bool(properties.get("deprecated", False)),
        clear=clear_fraction >= 0.5,
        clear_fraction=round(clear_fraction, 4),
        pixels=count,
        reflectance=reflectance,
        aot=aot,
        flags={name: round(float(flags[name][inside].mean()), 4) for name in FLAG_NAMES},
        sun_elevation=properties.get("view:sun_elevation"),
        sun_azimuth=properties.get("view:sun_azimuth"),
        view_incidence=properties.get("view:incidence_angle"),
        view_azimuth=properties.get("view:azimuth"),
    )


def sorted_observations(observations: Iterable[Observation]) -> list[Observation]:
    return sorted(observations, key=lambda o: (o.datetime, o.product))


def series_document(
    observations: Sequence[Observation], bands: Sequence[str], query: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON answer: the query as understood, the bands and the observations by date."""
    return {
        "type": "TimeSeries",
        "query": dict(query),
        "bands": list(bands),
        "count": len(observations),
        "observations": [o.to_dict() for o in observations],
    }


CSV_FIXED = ("datetime", "platform", "collection", "product", "version", "clear",
             "clear_fraction", "pixels")  # fmt: skip
CSV_ANGLES = ("sun_elevation", "sun_azimuth", "view_incidence_angle", "view_azimuth")


def series_csv(observations: Sequence[Observation], bands: Sequence[str]) -> str:
    """One row per observation: fixed columns, a column per band, AOT, flags, angles."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_FIXED, *bands, "aot", *FLAG_NAMES, *CSV_ANGLES])
    for o in observations:
        d = o.to_dict()
        writer.writerow(
            [_cell(d[c]) for c in CSV_FIXED]
            + [_cell(o.reflectance.get(b)) for b in bands]
            + [_cell(o.aot)]
            + [_cell(o.flags[f]) for f in FLAG_NAMES]
            + [_cell(d[c]) for c in CSV_ANGLES]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
