"""Spectral bands of the sensors: names, common names, wavelengths and the Landsat-8 mapping.

The synthesis works on Sentinel-2 band names; Landsat-8 bands are renamed to their Sentinel-2
twins (FORMATS.md section 2) before they are fused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BandInfo:
    name: str
    common_name: str | None
    center_wavelength: float
    full_width_half_max: float


SENTINEL2_BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        BandInfo("B2", "blue", 0.490, 0.098),
        BandInfo("B3", "green", 0.560, 0.045),
        BandInfo("B4", "red", 0.665, 0.038),
        BandInfo("B5", "rededge", 0.705, 0.019),
        BandInfo("B6", "rededge", 0.740, 0.018),
        BandInfo("B7", "rededge", 0.783, 0.028),
        BandInfo("B8", "nir", 0.842, 0.145),
        BandInfo("B8A", "nir08", 0.865, 0.033),
        BandInfo("B11", "swir16", 1.610, 0.143),
        BandInfo("B12", "swir22", 2.190, 0.242),
    )
}

LANDSAT8_BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        BandInfo("B1", "coastal", 0.443, 0.016),
        BandInfo("B2", "blue", 0.482, 0.060),
        BandInfo("B3", "green", 0.561, 0.057),
        BandInfo("B4", "red", 0.655, 0.037),
        BandInfo("B5", "nir08", 0.865, 0.028),
        BandInfo("B6", "swir16", 1.609, 0.085),
        BandInfo("B7", "swir22", 2.201, 0.187),
    )
}

# Sentinel-2 band <- Landsat-8 band (B5, B6, B7 of Sentinel-2 have no Landsat twin).
LANDSAT8_TO_SENTINEL2 = {
    "B2": "B2",
    "B3": "B3",
    "B4": "B4",
    "B8": "B5",
    "B8A": "B5",
    "B11": "B6",
    "B12": "B7",
}

SENTINEL2_GROUPS = {"R1": ("B2", "B3", "B4", "B8"), "R2": ("B5", "B6", "B7", "B8A", "B11", "B12")}


def is_landsat(platform: str) -> bool:
    return platform.upper().startswith("LANDSAT")


def bands_of(platform: str) -> dict[str, BandInfo]:
    return LANDSAT8_BANDS if is_landsat(platform) else SENTINEL2_BANDS
