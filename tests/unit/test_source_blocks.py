"""SourceBlocks: windows read through kept blocks equal GDAL's own reads, with fewer decodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from sansnuages.processing.synthesis import SourceBlocks

SIZE = 300


def _raster(path: Path, **layout: object) -> Path:
    data = np.random.default_rng(7).integers(-100, 10000, (2, SIZE, SIZE), dtype=np.int16)
    profile = {
        "driver": "GTiff", "width": SIZE, "height": SIZE, "count": 2, "dtype": "int16",
        "crs": "EPSG:32631", "transform": Affine(30, 0, 600000, 0, -30, 5700000), **layout,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _windows_with_margins(step: int, margin: int) -> list[Window]:
    """Row-major output windows, each widened by a kernel margin and clipped, as WindowWarp
    asks for them."""
    windows = []
    for row in range(0, SIZE, step):
        for col in range(0, SIZE, step):
            r0, c0 = max(0, row - margin), max(0, col - margin)
            r1, c1 = min(SIZE, row + step + margin), min(SIZE, col + step + margin)
            windows.append(Window(c0, r0, c1 - c0, r1 - r0))
    return windows


@pytest.mark.parametrize("band", [1, 2])
def test_tiled_source_reads_equal_gdal_and_decode_each_block_less_often(
    tmp_path: Path, band: int
) -> None:
    path = _raster(tmp_path / "tiled.tif", tiled=True, blockxsize=64, blockysize=64)
    windows = _windows_with_margins(step=50, margin=3)
    with rasterio.open(path) as src:
        blocks = SourceBlocks(src)
        decoded: list[tuple[int, int]] = []
        read_block = blocks._block

        def counting(band: int, row: int, col: int, height: int, width: int) -> np.ndarray:
            decoded.append((row, col))
            return read_block(band, row, col, height, width)

        blocks._block = counting  # type: ignore[method-assign]
        for window in windows:
            np.testing.assert_array_equal(blocks.read(band, window), src.read(band, window=window))
    touched = 0
    for w in windows:
        rows = (w.row_off + w.height - 1) // 64 - w.row_off // 64 + 1
        cols = (w.col_off + w.width - 1) // 64 - w.col_off // 64 + 1
        touched += rows * cols
    assert len(decoded) < 0.75 * touched  # neighbours in a row share their blocks


def test_striped_source_is_read_directly(tmp_path: Path) -> None:
    path = _raster(tmp_path / "striped.tif", tiled=False, blockysize=1)
    with rasterio.open(path) as src:
        assert src.block_shapes[0][0] < SourceBlocks.MIN_BLOCK_ROWS
        blocks = SourceBlocks(src)
        blocks._block = None  # type: ignore[assignment,method-assign]  # must not be called
        for window in _windows_with_margins(step=100, margin=2):
            np.testing.assert_array_equal(blocks.read(1, window), src.read(1, window=window))
