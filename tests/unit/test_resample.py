"""numpy resampling between grids of one CRS gives GDAL's warper's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject

from sansnuages.raster.resample import resample

CRS_ = CRS.from_epsg(32631)
NODATA = -10000


def _gdal(
    source: np.ndarray, src: Affine, dst: Affine, shape: tuple[int, int], how: Resampling
) -> np.ndarray:
    out = np.full(shape, NODATA, source.dtype)
    with rasterio.Env():
        reproject(
            source, out, src_transform=src, src_crs=CRS_, src_nodata=NODATA, dst_transform=dst,
            dst_crs=CRS_, dst_nodata=NODATA, resampling=how,
        )  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("src_res", "dst_res", "origin", "past_edge"),
    [
        (30, 10, (600000.0, 5700000.0), 5),  # Landsat-8 onto the 10 m grid
        (30, 20, (499980.0, 5600040.0), 5),  # onto the 20 m grid: centres on source edges
        # the 10 m blue onto the 20 m grid: a wider kernel. Only within the source: where the
        # destination runs past it, GDAL narrows its kernel to the clipped chunk (a tile's
        # bands always cover its grid, so the synthesis never meets that case)
        (10, 20, (600000.0, 5700000.0), -5),
    ],
)
@pytest.mark.parametrize("how", [Resampling.nearest, Resampling.bilinear])
def test_values_and_gaps_are_the_warpers(
    src_res: int, dst_res: int, origin: tuple[float, float], past_edge: int, how: Resampling
) -> None:
    rng = np.random.default_rng(src_res + dst_res)
    n = 90
    source = rng.integers(100, 3000, (n, n)).astype(np.int16)
    source[rng.random((n, n)) < 0.05] = NODATA  # scattered holes
    source[:, : n // 5] = NODATA  # and a footprint edge
    src = Affine(src_res, 0, origin[0], 0, -src_res, origin[1])
    # a destination window that starts inside the source (and runs past its far edge)
    dst = Affine(dst_res, 0, origin[0] + 7 * dst_res, 0, -dst_res, origin[1] - 3 * dst_res)
    shape = (n * src_res // dst_res - 3 + past_edge, n * src_res // dst_res - 7 + past_edge)
    expected = _gdal(source, src, dst, shape, how)
    actual = resample(source, src, dst, shape, how, NODATA, NODATA)
    assert actual.dtype == source.dtype
    assert np.array_equal(actual == NODATA, expected == NODATA)  # the same gaps, exactly
    both = (actual != NODATA) & (expected != NODATA)
    difference = np.abs(actual[both].astype(int) - expected[both])
    # nearest is exact; bilinear rounds like GDAL but for pixels next to a hole, where
    # GDAL's 4-sample formula renormalises in single precision: 1 DN at most
    assert difference.max() <= (0 if how == Resampling.nearest else 1)
    assert (difference == 0).mean() > 0.9


def test_without_nodata_every_pixel_under_the_source_has_a_value() -> None:
    source = np.arange(36, dtype=np.uint8).reshape(6, 6)
    src = Affine(30, 0, 0, 0, -30, 0)
    dst = Affine(10, 0, -30, 0, -10, 0)  # from one source pixel west to one east of it
    out = resample(source, src, dst, (18, 24), Resampling.nearest, None, 255)
    assert np.all(out[:, :3] == 255) and np.all(out[:, 21:] == 255)  # outside: the fill
    assert out[0, 3:21].tolist() == np.repeat(np.arange(6), 3).tolist()
    assert out[17, 3:21].tolist() == np.repeat(np.arange(30, 36), 3).tolist()


def test_other_resamplings_are_refused() -> None:
    source = np.zeros((4, 4), np.int16)
    with pytest.raises(ValueError, match="cubic"):
        resample(source, Affine.identity(), Affine.identity(), (4, 4), Resampling.cubic, None, 0)
