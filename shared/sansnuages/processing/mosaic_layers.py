"""What a mosaic draws: the layer that says how inputs are read, kept and written.

Two layers share the whole mosaic machinery (grid, area cut, nearest-centre choice, parts):
- `TrueColour`: three reflectance bands (bilinear), stretched to 1..255, an RGB uint8 COG with
  0 as no data (or an internal mask with a lossy codec);
- `SingleBand`: one band of values that must never be mixed (day counts, classes), read with
  nearest-neighbour resampling and written as they are, with their own no-data value and
  nearest-neighbour overviews; coloured only when drawn, by its `ColourMap`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from sansnuages.errors import InvalidRequest
from sansnuages.formats.colour_maps import ColourMap
from sansnuages.processing.synthesis import RasterRef

RGB_NODATA = 0
RGB_BANDS = ("Red", "Green", "Blue")
GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16"}
LOSSLESS_WIDE = ("deflate", "zstd")
"""The codecs that keep 16-bit values exactly (WEBP and JPEG take 8 bits)."""


@dataclass(frozen=True)
class MosaicInput:
    """A tile's true colour: FRC rasters (int16 DN, nodata -10000), typically B4, B3, B2 of
    an L3A product, and its flags."""

    tile: str
    red: RasterRef
    green: RasterRef
    blue: RasterRef
    flags: RasterRef | None
    """FLG raster (0 = no data) when available; excludes pixels without any observation."""
    centre_lonlat: tuple[float, float]
    """Tile centre, (longitude, latitude): overlaps go to the nearest centre."""
    extent_lonlat: BaseGeometry | None = None
    """Where the rasters may hold data (the tile's square), when known without opening them:
    a part skips the tiles away from its cell (France has 116; a part meets about 9)."""

    @property
    def reference(self) -> RasterRef:
        """The raster whose bounds are the tile's footprint."""
        return self.red


@dataclass(frozen=True)
class BandInput:
    """A tile's single band of values (a snow season's days of snow cover...)."""

    tile: str
    values: RasterRef
    centre_lonlat: tuple[float, float]
    extent_lonlat: BaseGeometry | None = None

    @property
    def reference(self) -> RasterRef:
        return self.values


TileInput = MosaicInput | BandInput


class ViewReader(Protocol):
    """Reads an input raster's window on the mosaic grid (`mosaic._Views`)."""

    def read(
        self, ref: RasterRef, window: Window, resampling: Resampling, fill: float
    ) -> tuple[np.ndarray, float | None]: ...


class Layer(Protocol):
    """How a mosaic reads its inputs and what it writes."""

    @property
    def count(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def nodata(self) -> int: ...
    @property
    def photometric(self) -> str | None: ...
    @property
    def colours(self) -> tuple[str, ...]:
        """GDAL colour interpretation of each band (in a VRT of the parts)."""
        ...

    @property
    def overview_resampling(self) -> str | None:
        """The COG overviews' resampling, when not the default (average)."""
        ...

    @property
    def colour_map(self) -> ColourMap | None: ...

    def check_codec(self, name: str, lossy: bool) -> None:
        """InvalidRequest when the codec cannot keep this layer's values."""
        ...

    def blank(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """What a window holds before any input gives it a value."""
        ...

    def read(
        self, reader: ViewReader, item: TileInput, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        """(count, h, w) values of one input in `window`, and where it has data."""
        ...

    def encode(self, picked: np.ndarray) -> np.ndarray:
        """The window as written, from the values picked (`blank` where none)."""
        ...


@dataclass(frozen=True)
class TrueColour:
    """B4, B3, B2 reflectance `stretch`ed to 1..255 bytes (0 is no data)."""

    stretch: tuple[float, float] = (0.0, 0.2)
    count: int = 3
    dtype: str = "uint8"
    nodata: int = RGB_NODATA
    photometric: str | None = "RGB"
    colours: tuple[str, ...] = RGB_BANDS
    overview_resampling: str | None = None
    colour_map: ColourMap | None = None

    def check_codec(self, name: str, lossy: bool) -> None:
        return None

    def blank(self, shape_hw: tuple[int, int]) -> np.ndarray:
        return np.full((3, *shape_hw), np.nan, dtype=np.float32)

    def read(
        self, reader: ViewReader, item: TileInput, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(item, MosaicInput):
            raise TypeError(f"a true-colour mosaic reads reflectance, not {type(item).__name__}")
        return read_rgb(reader, item, window)

    def encode(self, picked: np.ndarray) -> np.ndarray:
        out = np.zeros(picked.shape, dtype=np.uint8)
        for band in range(picked.shape[0]):
            out[band] = stretch_to_byte(picked[band], *self.stretch)
        return out


@dataclass(frozen=True)
class SingleBand:
    """One band of values kept exactly: nearest-neighbour everywhere, its own no-data value."""

    dtype: str = "uint16"
    nodata: int = 65535
    colour_map: ColourMap | None = None
    count: int = 1
    photometric: str | None = None
    colours: tuple[str, ...] = ("Gray",)
    overview_resampling: str | None = "NEAREST"

    def check_codec(self, name: str, lossy: bool) -> None:
        wide = np.dtype(self.dtype).itemsize > 1
        if lossy or (wide and name not in LOSSLESS_WIDE):
            choices = ", ".join(LOSSLESS_WIDE)
            raise InvalidRequest(
                f"codec {name!r} cannot keep {self.dtype} values exactly: one of {choices}"
            )

    def blank(self, shape_hw: tuple[int, int]) -> np.ndarray:
        return np.full((1, *shape_hw), self.nodata, dtype=self.dtype)

    def read(
        self, reader: ViewReader, item: TileInput, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        raw, nodata = reader.read(item.reference, window, Resampling.nearest, self.nodata)
        ok = raw != (self.nodata if nodata is None else nodata)
        values = np.where(ok, raw, self.nodata).astype(self.dtype)
        return values[None], np.asarray(ok)

    def encode(self, picked: np.ndarray) -> np.ndarray:
        return picked.astype(self.dtype, copy=False)


TRUE_COLOUR = TrueColour()


def stretch_to_byte(dn: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map DN `low..high` linearly to 1..255 (clipped); NaN -> 0, the no-data value."""
    if high <= low:
        raise ValueError(f"stretch needs low < high, got {low}, {high}")
    scaled = 1.0 + (np.clip(dn, low, high) - low) / (high - low) * 254.0
    return np.where(np.isnan(dn), RGB_NODATA, np.rint(np.nan_to_num(scaled, nan=0))).astype(
        np.uint8
    )


def read_rgb(
    reader: ViewReader, item: MosaicInput, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) reflectance (NaN = missing) and the pixels where all three bands have data."""
    bands = []
    for ref in (item.red, item.green, item.blue):
        raw, nodata = reader.read(ref, window, Resampling.bilinear, -10000)
        reflectance = raw.astype(np.float32) * np.float32(ref.scale)
        if nodata is not None:
            reflectance[raw == nodata] = np.nan
        bands.append(reflectance)
    rgb = np.stack(bands)
    ok = np.asarray(np.isfinite(rgb).all(axis=0))
    if item.flags is not None:
        flags, _ = reader.read(item.flags, window, Resampling.nearest, 0)
        ok &= flags != 0
    return rgb, ok
