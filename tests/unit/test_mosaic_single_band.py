"""Single-band mosaic (a snow season's days of snow cover): two UTM zones on one grid, values
kept exactly (nearest neighbour, never interpolated), 65535 where no tile or outside the area."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.crs
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform
from shapely import contains_xy
from test_mosaic import AREA, EAST, HALF, MOSAIC_CRS, WEST, _area_in_mosaic_crs, _centre_in

from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.formats.colour_maps import SNOW_DAYS
from sansnuages.processing import mosaic, mosaic_parts
from sansnuages.processing.mosaic import BandInput, build_mosaic, write_preview_png
from sansnuages.processing.mosaic_layers import SingleBand
from sansnuages.processing.synthesis import RasterRef
from sansnuages.raster import cog

NODATA = 65535
LAYER = SingleBand("uint16", NODATA, SNOW_DAYS)
SIZE, PIXEL = 300, 100.0
HOLE = (slice(140, 180), slice(220, 250))
"""A block of the western tile without data (no clear observation in the season), where it
is the nearer tile but the eastern one overlaps it."""
HOLE_ALONE = (slice(150, 200), slice(80, 120))
"""Another, where no other tile lies: it stays without data in the mosaic."""


def _values(name: str) -> np.ndarray:
    """Day counts that differ from one pixel to the next, so a wrong pick shows."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    if name == "west":
        days = (rows + 2 * cols) % 367
    else:
        days = (3 * rows + cols + 100) % 367
    out = days.astype("uint16")
    if name == "west":
        out[HOLE] = NODATA
        out[HOLE_ALONE] = NODATA
    return out


def _tile(tmp: Path, name: str, spec: dict[str, Any]) -> tuple[BandInput, Affine]:
    """A COG with AVERAGE overviews (what a careless writer makes): the mosaic must not use
    them, or averaged day counts would appear."""
    x, y = _centre_in(spec, spec["crs"])
    affine = Affine(PIXEL, 0, x - HALF, 0, -PIXEL, y + HALF)
    path = str(tmp / f"{name}_SCD.tif")
    cog.write_cog(
        path, _values(name), crs=spec["crs"], transform=affine, nodata=NODATA,
        OVERVIEW_RESAMPLING="AVERAGE", OVERVIEW_COUNT="3",
    )  # fmt: skip
    ref = RasterRef(path, nodata=NODATA)
    return BandInput(name, ref, spec["centre"]), affine


def _build(tmp: Path, resolution: float, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
    west, west_affine = _tile(tmp, "west", WEST)
    east, east_affine = _tile(tmp, "east", EAST)
    out = tmp / f"mosaic-{resolution:g}.tif"
    build_mosaic(
        [west, east], AREA, str(out), crs=MOSAIC_CRS, resolution=resolution, layer=LAYER,
        **kwargs,
    )  # fmt: skip
    return out, {"west": (WEST, west_affine), "east": (EAST, east_affine)}


def _source_pixel(
    spec: dict[str, Any], affine: Affine, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of the source pixel holding each mosaic pixel centre; whether the centre
    is well inside that pixel (not within 0.2 px of its edge, where the warper's approximate
    transform may pick the neighbour); and whether it is surely outside the tile (by 2 px)."""
    tx, ty = transform(MOSAIC_CRS, spec["crs"], xs.ravel(), ys.ravel())
    col_f = (np.array(tx).reshape(xs.shape) - affine.c) / affine.a
    row_f = (np.array(ty).reshape(xs.shape) - affine.f) / affine.e
    inside = (col_f >= 0) & (col_f < SIZE) & (row_f >= 0) & (row_f < SIZE)
    off_edge = (np.abs(col_f - np.round(col_f)) > 0.2) & (np.abs(row_f - np.round(row_f)) > 0.2)
    outside = (col_f < -2) | (col_f > SIZE + 2) | (row_f < -2) | (row_f > SIZE + 2)
    rows = np.clip(np.floor(row_f).astype(int), 0, SIZE - 1)
    cols = np.clip(np.floor(col_f).astype(int), 0, SIZE - 1)
    return rows, cols, inside & off_edge, outside


def _grid(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    with rasterio.open(path) as src:
        data = src.read(1)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        t = src.transform
        profile = (src.count, src.dtypes, src.nodata, src.crs.to_epsg())
    return data, t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e, profile


@pytest.mark.parametrize("resolution", [200.0, 800.0])
def test_two_zones_keep_each_value_of_the_nearest_tile(tmp_path: Path, resolution: float) -> None:
    """At 2x and 8x the source pixel (where averaged overviews would be tempting), every pixel
    is exactly the value of the source pixel under its centre, from the tile whose centre is
    nearest among those with data there."""
    out, sources = _build(tmp_path, resolution)
    data, xs, ys, profile = _grid(out)
    assert profile == (1, ("uint16",), NODATA, 3035)
    area = _area_in_mosaic_crs()
    in_area = contains_xy(area.buffer(-2 * resolution), xs, ys)
    picks = {}
    for name, (spec, affine) in sources.items():
        rows, cols, clear, outside = _source_pixel(spec, affine, xs, ys)
        value = _values(name)[rows, cols]
        cx, cy = _centre_in(spec, MOSAIC_CRS)
        has = clear & (value != NODATA)
        none = outside | (clear & (value == NODATA))
        picks[name] = (value, has, none, np.hypot(xs - cx, ys - cy))
    west_value, west_has, west_none, west_distance = picks["west"]
    east_value, east_has, east_none, east_distance = picks["east"]
    west_nearer = west_distance < east_distance
    expect_west = in_area & west_has & (west_nearer | east_none)
    expect_east = in_area & east_has & (~west_nearer | west_none)
    assert expect_west.sum() > 30 and expect_east.sum() > 30
    np.testing.assert_array_equal(data[expect_west], west_value[expect_west])
    np.testing.assert_array_equal(data[expect_east], east_value[expect_east])
    if resolution == 200.0:
        # the west tile's hole, nearer to it than to the east: filled by the east tile
        filled = in_area & west_nearer & (west_value == NODATA) & west_none & east_has
        assert filled.sum() > 5
        np.testing.assert_array_equal(data[filled], east_value[filled])
    assert set(np.unique(data).tolist()) <= set(range(367)) | {NODATA}


def test_outside_the_area_and_the_tiles_is_nodata(tmp_path: Path) -> None:
    out, sources = _build(tmp_path, 200.0)
    data, xs, ys, _ = _grid(out)
    area = _area_in_mosaic_crs()
    outside = ~contains_xy(area.buffer(400.0), xs, ys)
    assert outside.sum() > 1000
    assert (data[outside] == NODATA).all()
    # inside the area, where the only tile has no data: no value either
    spec, affine = sources["west"]
    rows, cols, clear, _ = _source_pixel(spec, affine, xs, ys)
    rows_alone, cols_alone = HOLE_ALONE
    in_hole = (rows >= rows_alone.start) & (rows < rows_alone.stop)
    in_hole &= (cols >= cols_alone.start) & (cols < cols_alone.stop)
    hole = contains_xy(area.buffer(-400.0), xs, ys) & clear & in_hole
    assert hole.sum() > 10
    assert (data[hole] == NODATA).all()
    assert (data[contains_xy(area.buffer(-400.0), xs, ys) & ~hole] != NODATA).mean() > 0.9


def test_overviews_are_nearest_and_the_preview_uses_the_colour_map(tmp_path: Path) -> None:
    """Each overview pixel is one of the pixels it covers, never a mean (at 50 m, many 2 x 2
    blocks hold two day counts: averaged overviews miss thousands), and the preview shows the
    colour map."""
    out, _ = _build(tmp_path, 50.0)
    with rasterio.open(out) as src:
        full = src.read(1)
        assert src.overviews(1)[0] == 2
    with rasterio.open(out, overview_level=0) as src:
        half = src.read(1)
    (height, width), (h, w) = full.shape, half.shape
    mixed = picked = 0
    for i in range(h):
        rows = slice(i * height // h, -(-(i + 1) * height // h))
        for j in range(w):
            block = full[rows, j * width // w : -(-(j + 1) * width // w)]
            picked += int(half[i, j] in block)
            mixed += int(len(np.unique(block)) > 1)
    assert mixed > 1000 and picked == h * w
    png = tmp_path / "preview.png"
    height, width = write_preview_png(str(out), str(png), max_size=64, colour_map=SNOW_DAYS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(png) as src:
            rgba = src.read()
        with rasterio.open(out) as src:
            values = src.read(1, out_shape=(height, width))
    np.testing.assert_array_equal(rgba, SNOW_DAYS.rgba(values, NODATA))
    assert (rgba[3][values == NODATA] == 0).all() and (rgba[3][values != NODATA] == 255).all()


def test_parts_and_their_vrt_match_the_single_mosaic(tmp_path: Path) -> None:
    """Cells of 48 px, their VRT read back as the one-piece mosaic, and an overview of it."""
    single, _ = _build(tmp_path, 200.0)
    inputs = [_tile(tmp_path, "west", WEST)[0], _tile(tmp_path, "east", EAST)[0]]
    area = mosaic.area_in_crs(AREA, MOSAIC_CRS)
    covered = area.intersection(shapely.union_all(mosaic.footprints(inputs, MOSAIC_CRS)))
    cells = mosaic_parts.cells_for(covered, 200.0, part_pixels=48)
    parts = []
    for cell in cells:
        path = str(tmp_path / f"{cell.name}.tif")
        try:
            build_mosaic(
                inputs, AREA, path, crs=MOSAIC_CRS, resolution=200.0, cell=cell.bounds,
                layer=LAYER,
            )  # fmt: skip
        except NoInputs:
            continue
        parts.append(mosaic_parts.part_source(path))
    assert len(parts) > 4
    vrt = tmp_path / "mosaic.vrt"
    crs_wkt = rasterio.crs.CRS.from_epsg(3035).to_wkt()
    vrt.write_text(mosaic_parts.vrt_xml(parts, crs_wkt, str(tmp_path), layer=LAYER))
    with rasterio.open(single) as one, rasterio.open(vrt) as stitched:
        assert (stitched.transform, stitched.shape) == (one.transform, one.shape)
        assert stitched.nodata == NODATA and stitched.dtypes == ("uint16",)
        whole, joined = one.read(1), stitched.read(1)
    # the same pixels, but where a pixel centre lies within the warper's tolerance (1/8 px) of
    # a source pixel's edge: either neighbour is then a nearest pick, and each grid may differ
    assert (whole != joined).mean() < 0.01
    assert ((whole == NODATA) != (joined == NODATA)).mean() < 0.002
    overview = tmp_path / "overview.tif"
    options = tuple(mosaic.cog_overrides(LAYER, "deflate").items())
    mosaic_parts.write_overview(str(vrt), str(overview), factor=4, options=options, layer=LAYER)
    with rasterio.open(overview) as src, rasterio.open(single) as one:
        assert src.count == 1 and src.nodata == NODATA and src.transform.a == 800.0
        assert set(np.unique(src.read(1)).tolist()) <= set(np.unique(one.read(1)).tolist())


@pytest.mark.parametrize("codec", ["jpeg", "webp", "webp-lossless"])
def test_codecs_that_would_change_day_counts_are_refused(tmp_path: Path, codec: str) -> None:
    west, _ = _tile(tmp_path, "west", WEST)
    with pytest.raises(InvalidRequest, match="cannot keep uint16"):
        build_mosaic([west], AREA, str(tmp_path / "m.tif"), layer=LAYER, codec=codec)
    assert not (tmp_path / "m.tif").exists()


def test_zstd_keeps_the_values(tmp_path: Path) -> None:
    deflate, _ = _build(tmp_path, 400.0)
    zstd = tmp_path / "zstd.tif"
    inputs = [_tile(tmp_path, "west", WEST)[0], _tile(tmp_path, "east", EAST)[0]]
    build_mosaic(
        inputs, AREA, str(zstd), crs=MOSAIC_CRS, resolution=400.0, layer=LAYER, codec="zstd"
    )
    with rasterio.open(deflate) as a, rasterio.open(zstd) as b:
        np.testing.assert_array_equal(a.read(), b.read())
