"""Codecs of the true-colour mosaic: lossless ones keep 0 as no data, lossy ones an exact mask."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.crs
import shapely
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from test_mosaic import AREA, EAST, MOSAIC_CRS, RES, WEST, _tile

from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.processing import mosaic, mosaic_parts
from sansnuages.processing.mosaic import build_mosaic, fill_outside, write_preview_png


def _build(tmp_path: Path, codec: str) -> Path:
    inputs = [_tile(tmp_path, "31UFR", WEST), _tile(tmp_path, "32ULA", EAST)]
    out = tmp_path / f"{codec}.tif"
    build_mosaic(inputs, AREA, str(out), crs=MOSAIC_CRS, resolution=RES, codec=codec)
    return out


@pytest.fixture
def reference(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The DEFLATE mosaic's values and its valid pixels (value != 0)."""
    with rasterio.open(_build(tmp_path, "deflate")) as src:
        data = src.read()
    return data, data[0] != 0


@pytest.mark.parametrize("codec", ["zstd", "webp-lossless"])
def test_lossless_codecs_give_the_same_pixels_and_nodata_0(
    tmp_path: Path, codec: str, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    with rasterio.open(_build(tmp_path, codec)) as src:
        assert src.nodata == 0
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"].startswith(codec.split("-")[0].upper())
        np.testing.assert_array_equal(src.read(), reference[0])


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_lossy_codecs_keep_no_data_exact_in_an_internal_mask(
    tmp_path: Path, codec: str, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    data, valid = reference
    with rasterio.open(_build(tmp_path, codec)) as src:
        assert src.nodata is None  # no value can mean no data after lossy coding
        assert src.mask_flag_enums[0] == [MaskFlags.per_dataset]
        mask = src.dataset_mask()
        decoded = src.read()
        overview_mask = src.dataset_mask(out_shape=(src.height // 2, src.width // 2))
    np.testing.assert_array_equal(mask > 0, valid)  # the border, exactly
    assert overview_mask.min() == 0 and overview_mask.max() == 255
    # where what the codec sees (the valid pixels, and outside them the fill) is flat around a
    # pixel, it comes back within a few DN: the fill leaves no step at the border to ring
    flat = valid & _flat_around(fill_outside(data, valid), radius=16)  # a JPEG MCU
    # ... but not next to the image's own edge: the codec also codes the padding of the partial
    # 512 px tiles, which no fill reaches (at the outer edge of a mosaic, rarely valid)
    flat[:, -16:] = flat[-16:, :] = False
    assert flat.sum() > 0.3 * valid.sum()
    assert np.abs(decoded.astype(int) - data.astype(int))[:, flat].max() <= 2
    # a valid pixel may decode to 0 (the blue of the east tile is 1, coded within 1 DN): the
    # mask, not the value, says that it is valid (the exact mask is checked above)


def _flat_around(data: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose neighbours within `radius` (inside the image) all have their colour."""
    size = 2 * radius + 1
    pad = ((0, 0), (radius, radius), (radius, radius))
    windows = np.lib.stride_tricks.sliding_window_view
    top = windows(np.pad(data, pad, mode="edge"), (size, size), axis=(1, 2)).max(axis=(-2, -1))
    bottom = windows(np.pad(data, pad, mode="edge"), (size, size), axis=(1, 2)).min(axis=(-2, -1))
    return np.asarray((top == bottom).all(axis=0))


def test_fill_outside_extends_the_nearest_valid_pixel() -> None:
    valid = np.array(
        [[False, True, False, False, True], [False] * 5, [True, False, False, False, False]]
    )
    rgb = np.zeros((1, 3, 5), dtype=np.uint8)
    rgb[0][valid] = [10, 50, 90]
    filled = fill_outside(rgb, valid)
    np.testing.assert_array_equal(
        filled[0], [[10, 10, 10, 50, 50], [10, 10, 10, 50, 50], [90, 90, 90, 90, 90]]
    )
    np.testing.assert_array_equal(filled[0][valid], rgb[0][valid])  # valid pixels untouched
    nothing = np.zeros((1, 3, 5), dtype=np.uint8)
    assert fill_outside(nothing, np.zeros((3, 5), dtype=bool)) is nothing


def test_an_unknown_codec_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="jpeg"):
        _build(tmp_path, "gif")
    assert not (tmp_path / "gif.tif").exists()


def test_lossy_parts_stitch_their_masks_and_the_overview_keeps_them(
    tmp_path: Path, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    _, valid = reference
    inputs = [_tile(tmp_path, "31UFR", WEST), _tile(tmp_path, "32ULA", EAST)]
    area = mosaic.area_in_crs(AREA, MOSAIC_CRS)
    covered = area.intersection(shapely.union_all(mosaic.footprints(inputs, MOSAIC_CRS)))
    parts = []
    for cell in mosaic_parts.cells_for(covered, RES, part_pixels=48):
        path = str(tmp_path / f"{cell.name}.tif")
        try:
            build_mosaic(
                inputs, AREA, path, crs=MOSAIC_CRS, resolution=RES, cell=cell.bounds, codec="jpeg"
            )
        except NoInputs:
            continue
        parts.append(mosaic_parts.part_source(path))
    vrt = tmp_path / "mosaic.vrt"
    wkt = rasterio.crs.CRS.from_epsg(3035).to_wkt()
    vrt.write_text(mosaic_parts.vrt_xml(parts, wkt, str(tmp_path), masked=True))
    with rasterio.open(vrt) as stitched:
        assert stitched.nodata is None
        np.testing.assert_array_equal(stitched.dataset_mask() > 0, valid)
    overview = tmp_path / "overview.tif"
    codec = mosaic.codec_named("jpeg")
    mosaic_parts.write_overview(str(vrt), str(overview), 2, options=codec.options, masked=True)
    with rasterio.open(overview) as src, rasterio.open(vrt) as stitched:
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "YCbCr JPEG"
        expected = stitched.dataset_mask(out_shape=(src.height, src.width)) > 0
        np.testing.assert_array_equal(src.dataset_mask() > 0, expected)


def test_preview_of_a_lossy_mosaic_is_transparent_where_the_mask_says(tmp_path: Path) -> None:
    out = _build(tmp_path, "jpeg")
    png = tmp_path / "preview.png"
    height, width = write_preview_png(str(out), str(png), max_size=64)
    with rasterio.open(out) as src:
        expected = src.dataset_mask(out_shape=(height, width)) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(png) as src:
            alpha = src.read(4)
    np.testing.assert_array_equal(alpha == 255, expected)
    assert 0 < expected.mean() < 1
