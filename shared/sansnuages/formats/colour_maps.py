"""Colour maps of single-band products (snow-season days, counts): one definition for the PNG
previews, the web map tiles and the viewer's legend, so that the three always agree.

A map is a list of stops (value, RGB) with linear interpolation between them; values below the
first stop take its colour, above the last the last one's; no data is transparent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColourMap:
    name: str
    stops: tuple[tuple[float, tuple[int, int, int]], ...]
    unit: str
    """What the values count, for the legend (`days`, `observations`, `periods`)."""

    def __post_init__(self) -> None:
        values = [value for value, _ in self.stops]
        if len(values) < 2 or values != sorted(values) or len(set(values)) != len(values):
            raise ValueError(f"{self.name}: stops must be at least two, in increasing order")

    @property
    def low(self) -> float:
        return self.stops[0][0]

    @property
    def high(self) -> float:
        return self.stops[-1][0]

    def rgba(self, values: np.ndarray, nodata: float | None = None) -> np.ndarray:
        """(4, *values.shape) uint8: the colours of `values`, transparent where no data."""
        data = np.asarray(values, dtype=np.float64)
        points = np.array([value for value, _ in self.stops])
        colours = np.array([rgb for _, rgb in self.stops], dtype=np.float64)
        out = np.empty((4, *data.shape), dtype=np.uint8)
        for channel in range(3):
            out[channel] = np.rint(np.interp(data, points, colours[:, channel]))
        invalid = ~np.isfinite(data)
        if nodata is not None:
            invalid |= data == nodata
        out[3] = np.where(invalid, 0, 255)
        out[:3, invalid] = 0
        return out

    def legend(self, steps: int = 6) -> dict[str, object]:
        """The legend as JSON: evenly spaced values with their CSS colours, and the unit."""
        values = np.linspace(self.low, self.high, steps)
        colours = self.rgba(values)
        return {
            "name": self.name,
            "unit": self.unit,
            "stops": [
                {
                    "value": round(float(value), 1),
                    "colour": "#{:02x}{:02x}{:02x}".format(*colours[:3, i]),
                }
                for i, value in enumerate(values)
            ],
        }


SNOW_DAYS = ColourMap(
    "snow-days",
    (
        (0, (139, 105, 64)),  # bare all year
        (30, (186, 176, 112)),
        (90, (120, 178, 200)),
        (180, (49, 104, 190)),
        (270, (150, 90, 200)),
        (366, (255, 255, 255)),  # snow all year
    ),
    "days",
)
"""Snow cover duration, and the days of onset and melt (days since 1 September)."""

OBSERVATIONS = ColourMap(
    "observations",
    ((0, (60, 0, 0)), (20, (200, 60, 30)), (60, (240, 200, 60)), (150, (250, 250, 210))),
    "observations",
)
"""Clear observations per pixel in a season."""

PERIODS = ColourMap(
    "periods",
    ((0, (139, 105, 64)), (1, (120, 178, 200)), (3, (49, 104, 190)), (8, (200, 40, 120))),
    "periods",
)
"""Snow periods per pixel in a season."""

BY_NAME = {cmap.name: cmap for cmap in (SNOW_DAYS, OBSERVATIONS, PERIODS)}
