"""Let-It-Snow L2B-SNOW products: their classes, no-data value and a preview.

FORMATS.md section 3: `_SNW_R2.tif` (Landsat-8: `_SNW_XS.tif`), uint8, 0 no snow, 100 snow,
205 cloud, 254 no data (255 from version 2 on); fractional products use 1..100 as the snow
cover percentage. Pure functions over arrays, so the same rules serve ingest and the seasons.
"""

from __future__ import annotations

import numpy as np

NO_SNOW, SNOW, CLOUD = 0, 100, 205
NODATA_V1, NODATA_V2 = 254, 255
PREVIEW_COLOURS: dict[int, tuple[int, int, int, int]] = {
    NO_SNOW: (110, 140, 80, 255),
    SNOW: (235, 245, 255, 255),
    CLOUD: (150, 150, 150, 255),
}


def nodata_for(version: tuple[int, int] | None, declared: float | None) -> float:
    """The no-data value: as the file declares it, else by Let-It-Snow's version."""
    if declared is not None:
        return declared
    return NODATA_V2 if version is not None and version[0] >= 2 else NODATA_V1


def valid(classes: np.ndarray) -> np.ndarray:
    """Pixels that were observed (snow, no snow, fractional snow or cloud)."""
    return classes <= CLOUD


def preview(classes: np.ndarray) -> np.ndarray:
    """RGBA preview (4, rows, cols): green no snow, white snow, grey cloud, transparent
    no data; fractional values (1..99) shade from green to white."""
    rgba = np.zeros((4, *classes.shape), dtype=np.uint8)
    fraction = (classes >= 1) & (classes < SNOW)
    for value, colour in PREVIEW_COLOURS.items():
        rgba[:, classes == value] = np.array(colour, dtype=np.uint8)[:, None]
    if fraction.any():
        share = classes[fraction].astype(np.float32) / SNOW
        low = np.array(PREVIEW_COLOURS[NO_SNOW], dtype=np.float32)[:, None]
        high = np.array(PREVIEW_COLOURS[SNOW], dtype=np.float32)[:, None]
        rgba[:, fraction] = (low + (high - low) * share).astype(np.uint8)
    return rgba
