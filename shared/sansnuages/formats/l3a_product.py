"""The Level-3A product beside its rasters: its name, its metadata document, its quicklook.

FORMATS.md section 2: `SENTINEL2X_YYYYMM15-000000-000_L3A_T<tile>_C_V<maj>-<min>` (the platform
is the one satellite when only one contributed), `_MTD_ALL.xml` with the synthesis period and
the contributing products, `_QKL_ALL.jpg` in true colour. Builders here are pure (bytes out);
the compositor stores them.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sansnuages.formats.bands import is_landsat

QUICKLOOK_MAX_SIDE = 1000
QUICKLOOK_REFLECTANCE_MAX = 0.25
"""Reflectance shown as white: land is dark, clouds saturate, as in MUSCATE quicklooks."""


def l3a_platform(platforms: Sequence[str]) -> str:
    """`SENTINEL2X` when several satellites (Landsat-8 included) contributed, else the one."""
    distinct = sorted({p.upper().replace("-", "") for p in platforms})  # sentinel-2b: STAC
    if len(distinct) == 1 and not is_landsat(distinct[0]):
        return distinct[0]
    return "SENTINEL2X"


def l3a_product_id(tile: str, centre: date, platforms: Sequence[str], version: int) -> str:
    """Name of the synthesis; `version` counts the runs of the month (0 for the first)."""
    return f"{l3a_platform(platforms)}_{centre:%Y%m%d}-000000-000_L3A_T{tile}_C_V1-{int(version)}"


@dataclass(frozen=True)
class SynthesisFacts:
    product_id: str
    tile: str
    centre: date
    start: date
    end: date
    half_window_days: int
    inputs: Sequence[str]
    """Every product of the window (newest versions), in acquisition order."""
    contributing: Sequence[str]
    """Those that gave at least one output pixel."""
    flag_percent: Mapping[str, float]
    parameters: Mapping[str, float]


def metadata_xml(facts: SynthesisFacts) -> bytes:
    """`_MTD_ALL.xml`: MUSCATE-like root, the period, the method's parameters and inputs."""
    root = ET.Element("Muscate_Metadata_Document")
    characteristics = ET.SubElement(root, "Product_Characteristics")
    for tag, text in (
        ("PRODUCT_ID", facts.product_id),
        ("ACQUISITION_DATE", f"{facts.centre.isoformat()}T00:00:00.000Z"),
        ("PRODUCT_LEVEL", "L3A"),
        ("PRODUCT_VERSION", facts.product_id.rsplit("_V", 1)[-1].replace("-", ".")),
    ):
        ET.SubElement(characteristics, tag).text = text
    ET.SubElement(
        ET.SubElement(root, "Dataset_Identification"), "GEOGRAPHICAL_ZONE", type="Tile"
    ).text = f"T{facts.tile}"
    period = ET.SubElement(root, "Synthesis_Period")
    ET.SubElement(period, "BEGIN_DATE").text = facts.start.isoformat()
    ET.SubElement(period, "END_DATE").text = facts.end.isoformat()
    ET.SubElement(period, "HALF_SYNTHESIS").text = str(facts.half_window_days)
    method = ET.SubElement(root, "Synthesis_Parameters", method="WASP weighted average")
    for name, value in facts.parameters.items():
        ET.SubElement(method, "PARAMETER", name=name).text = f"{value:g}"
    products = ET.SubElement(root, "Product_List")
    used = set(facts.contributing)
    for product in facts.inputs:
        ET.SubElement(
            products, "PRODUCT", contributing="true" if product in used else "false"
        ).text = product
    quality = ET.SubElement(root, "Quality_Informations")
    for name, value in facts.flag_percent.items():
        ET.SubElement(quality, "QUALITY_INDEX", name=f"{name}_percent").text = f"{value:.2f}"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def to_bytes_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Reflectance (NaN = no data) -> (3, h, w) uint8, 0..QUICKLOOK_REFLECTANCE_MAX stretched."""
    stack = np.stack([red, green, blue]).astype(np.float32)
    scaled = np.clip(stack / QUICKLOOK_REFLECTANCE_MAX, 0.0, 1.0) * 254 + 1
    return np.where(np.isfinite(stack), np.rint(scaled), 0).astype(np.uint8)


def quicklook_jpeg(paths: Sequence[str], scale: float = 1e-4) -> bytes:
    """JPEG of three reflectance rasters (red, green, blue), read at most 1000 px wide from
    their overviews, so that it costs little whatever the tile size."""
    bands = []
    for path in paths:
        with rasterio.open(path) as src:
            factor = max(1, -(-max(src.width, src.height) // QUICKLOOK_MAX_SIDE))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            data = src.read(1, out_shape=shape, resampling=Resampling.average, masked=True)
            bands.append(np.ma.filled(data.astype(np.float32) * scale, np.nan))
    rgb = to_bytes_rgb(*bands)
    with warnings.catch_warnings(), MemoryFile() as memory:
        # a quicklook is a picture, not a georeferenced raster: GDAL's notice is expected
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(
            driver="JPEG", width=rgb.shape[2], height=rgb.shape[1], count=3, dtype="uint8"
        ) as dst:
            dst.write(rgb)
        return bytes(memory.read())
