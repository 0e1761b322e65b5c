"""Small encodings of rasters and files: a PNG in memory, the multihash of a file."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

HASH_CHUNK = 8 * 1024**2


def png_bytes(rgba: np.ndarray) -> bytes:
    """A PNG in memory; a preview has no georeferencing, which GDAL would warn about."""
    profile = {"driver": "PNG", "count": rgba.shape[0], "dtype": "uint8"}
    with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(width=rgba.shape[2], height=rgba.shape[1], **profile) as png:
            png.write(rgba)
        return bytes(memory.read())


def file_multihash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return "1220" + digest.hexdigest()
