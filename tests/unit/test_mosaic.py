"""Country mosaic: two tiles in UTM zones 31 and 32 merged on one grid, cut to an area."""

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
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform
from rasterio.windows import Window
from shapely import contains_xy
from shapely.geometry import Polygon

from sansnuages.errors import NoInputs
from sansnuages.processing import mosaic, mosaic_parts
from sansnuages.processing.mosaic import (
    MosaicInput,
    build_mosaic,
    nearest_valid,
    stretch_to_byte,
    write_preview_png,
)
from sansnuages.processing.synthesis import OutputGrid, RasterRef

MOSAIC_CRS = "EPSG:3035"
RES = 200.0
HALF = 15000.0  # tiles are 30 km squares of 100 m pixels
WEST: dict[str, Any] = {"crs": "EPSG:32631", "centre": (5.85, 50.0), "rgb": (1000, 400, 10)}
EAST: dict[str, Any] = {"crs": "EPSG:32632", "centre": (6.15, 50.0), "rgb": (2000, 1600, 0)}
# 1 + DN / 2000 * 254, worked out by hand: dark blue stays >= 1, never the no-data 0
WEST_BYTES = (128, 52, 2)
EAST_BYTES = (255, 204, 1)
AREA = Polygon([(5.7, 49.95), (6.3, 49.95), (6.0, 50.1)])


def _write(path: Path, data: np.ndarray, crs: str, affine: Affine, nodata: float) -> str:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
        dtype=str(data.dtype), crs=crs, transform=affine, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    return str(path)


def _centre_in(spec: dict[str, Any], crs: str) -> tuple[float, float]:
    (x,), (y,) = transform("EPSG:4326", crs, [spec["centre"][0]], [spec["centre"][1]])
    return x, y


def _tile(tmp: Path, name: str, spec: dict[str, Any], flags: bool = False) -> MosaicInput:
    x, y = _centre_in(spec, spec["crs"])
    affine = Affine(100, 0, x - HALF, 0, -100, y + HALF)
    refs = [
        RasterRef(
            _write(
                tmp / f"{name}_{band}.tif",
                np.full((300, 300), dn, "int16"),
                spec["crs"],
                affine,
                -10000,
            ),
            scale=1e-4,
        )
        for band, dn in zip(("B4", "B3", "B2"), spec["rgb"], strict=True)
    ]
    flag_ref = None
    if flags:
        flag_data = np.full((300, 300), 4, dtype="uint8")
        flag_data[:, 150:] = 0  # eastern half: no data
        flag_ref = RasterRef(_write(tmp / f"{name}_FLG.tif", flag_data, spec["crs"], affine, 0))
    return MosaicInput(name, refs[0], refs[1], refs[2], flag_ref, spec["centre"])


def _pixel_centres(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with rasterio.open(path) as src:
        data = src.read()
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        t = src.transform
    return data, t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e


def _in_tile_coords(spec: dict[str, Any], xs: np.ndarray, ys: np.ndarray) -> tuple[Any, Any]:
    tx, ty = transform(MOSAIC_CRS, spec["crs"], xs.ravel(), ys.ravel())
    return np.array(tx).reshape(xs.shape), np.array(ty).reshape(xs.shape)


def _inside_tile(spec: dict[str, Any], xs: np.ndarray, ys: np.ndarray, margin: float) -> np.ndarray:
    """Pixel centres (mosaic CRS) inside a tile's square, shrunk by `margin` metres."""
    cx, cy = _centre_in(spec, spec["crs"])
    tx, ty = _in_tile_coords(spec, xs, ys)
    return (np.abs(tx - cx) < HALF - margin) & (np.abs(ty - cy) < HALF - margin)


def _distance(spec: dict[str, Any], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    cx, cy = _centre_in(spec, MOSAIC_CRS)
    return np.hypot(xs - cx, ys - cy)


def _area_in_mosaic_crs() -> Polygon:
    xs, ys = transform("EPSG:4326", MOSAIC_CRS, *AREA.exterior.xy)
    return Polygon(zip(xs, ys, strict=True))


def _mosaic(tmp_path: Path, west_flags: bool = False) -> tuple[Path, Any]:
    out = tmp_path / "mosaic.tif"
    inputs = [_tile(tmp_path, "31UFR", WEST, west_flags), _tile(tmp_path, "32ULA", EAST)]
    result = build_mosaic(inputs, AREA, str(out), crs=MOSAIC_CRS, resolution=RES)
    return out, result


def test_two_utm_zones_merge_without_gaps_by_nearest_centre(tmp_path: Path) -> None:
    out, result = _mosaic(tmp_path)
    data, xs, ys = _pixel_centres(out)
    area = _area_in_mosaic_crs()
    in_area = contains_xy(area.buffer(-2 * RES), xs, ys)
    out_area = ~contains_xy(area.buffer(2 * RES), xs, ys)
    west_in = _inside_tile(WEST, xs, ys, 2 * RES)
    east_in = _inside_tile(EAST, xs, ys, 2 * RES)
    assert (west_in & east_in & in_area).sum() > 100  # the overlap is really exercised
    west_nearer = _distance(WEST, xs, ys) < _distance(EAST, xs, ys)
    expect_west = in_area & west_in & (west_nearer | ~east_in)
    expect_east = in_area & east_in & (~west_nearer | ~west_in)
    assert expect_west.sum() > 1000 and expect_east.sum() > 1000
    for band in range(3):
        assert np.all(data[band][expect_west] == WEST_BYTES[band])
        assert np.all(data[band][expect_east] == EAST_BYTES[band])
    covered = in_area & (_inside_tile(WEST, xs, ys, 0) | _inside_tile(EAST, xs, ys, 0))
    assert covered.sum() > 2000
    assert np.all(data[:, covered] > 0)  # no gap at the zone edge or in the overlap
    assert out_area.sum() > 1000
    assert np.all(data[:, out_area] == 0)

    with rasterio.open(out) as src:
        assert src.count == 3 and src.dtypes == ("uint8",) * 3 and src.nodata == 0
        assert src.crs.to_epsg() == 3035
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.colorinterp[:3] == (
            rasterio.enums.ColorInterp.red,
            rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.blue,
        )
        assert src.transform.a == RES and src.transform.c % RES == 0 and src.transform.f % RES == 0
        assert result.shape == (src.height, src.width)
    assert result.tiles_used == ("31UFR", "32ULA")
    assert result.crs == MOSAIC_CRS
    assert 0.95 < result.valid_fraction <= 1.0


def test_nearest_tile_without_data_falls_back_to_the_other(tmp_path: Path) -> None:
    """The western tile's flags say 'no data' over its eastern half: the east tile fills it."""
    out, _ = _mosaic(tmp_path, west_flags=True)
    data, xs, ys = _pixel_centres(out)
    cx, _ = _centre_in(WEST, WEST["crs"])
    tx, _ = _in_tile_coords(WEST, xs, ys)
    west_empty_half = tx > cx + 2 * RES
    target = west_empty_half & _inside_tile(EAST, xs, ys, 2 * RES) & (data[0] > 0)
    assert target.sum() > 100
    assert np.all(data[0][target] == EAST_BYTES[0])


def test_disjoint_area_gives_no_inputs(tmp_path: Path) -> None:
    far = Polygon([(20, 40), (21, 40), (21, 41)])
    with pytest.raises(NoInputs):
        build_mosaic([_tile(tmp_path, "31UFR", WEST)], far, str(tmp_path / "m.tif"))
    with pytest.raises(NoInputs):
        build_mosaic([], AREA, str(tmp_path / "m.tif"))
    assert not (tmp_path / "m.tif").exists()


def test_stretch_to_byte() -> None:
    dn = np.array([-50.0, 0.0, 1000.0, 2000.0, 5000.0, np.nan])
    assert stretch_to_byte(dn, 0, 2000).tolist() == [1, 1, 128, 255, 255, 0]
    with pytest.raises(ValueError):
        stretch_to_byte(dn, 100, 100)


def test_nearest_valid_skips_sources_without_data() -> None:
    distances = np.array([[[1.0, 1.0, 5.0]], [[2.0, 2.0, 3.0]]])
    valid = np.array([[[True, False, False]], [[True, True, False]]])
    assert nearest_valid(distances, valid).tolist() == [[0, 1, -1]]


def test_preview_png_is_small_and_transparent_outside(tmp_path: Path) -> None:
    out, _ = _mosaic(tmp_path)
    png = tmp_path / "preview.png"
    height, width = write_preview_png(str(out), str(png), max_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a thumbnail has no georef
        src = rasterio.open(png)
    with src:
        assert src.driver == "PNG" and src.count == 4
        assert max(src.width, src.height) == 64 and (src.height, src.width) == (height, width)
        alpha = src.read(4)
    assert alpha[0, 0] == 0  # outside the triangle
    assert alpha[height - 3, width // 2] == 255  # inside, near its base


def test_parts_on_a_fixed_grid_match_the_single_mosaic(tmp_path: Path) -> None:
    """Cells of 48 px: parts + VRT read back equal the one-piece mosaic, without seams."""
    single, _ = _mosaic(tmp_path)
    inputs = [_tile(tmp_path, "31UFR", WEST), _tile(tmp_path, "32ULA", EAST)]
    area = mosaic.area_in_crs(AREA, MOSAIC_CRS)
    covered = area.intersection(shapely.union_all(mosaic.footprints(inputs, MOSAIC_CRS)))
    cells = mosaic_parts.cells_for(covered, RES, part_pixels=48)
    assert len(cells) > 4
    assert all(c.bounds[0] % (48 * RES) == 0 and c.bounds[1] % (48 * RES) == 0 for c in cells)
    parts = []
    for cell in cells:
        path = str(tmp_path / f"{cell.name}.tif")
        try:
            build_mosaic(inputs, AREA, path, crs=MOSAIC_CRS, resolution=RES, cell=cell.bounds)
        except NoInputs:
            continue
        parts.append(mosaic_parts.part_source(path))
    assert max(p.width for p in parts) <= 48 and max(p.height for p in parts) <= 48
    vrt = tmp_path / "mosaic.vrt"
    crs_wkt = rasterio.crs.CRS.from_epsg(3035).to_wkt()
    vrt.write_text(mosaic_parts.vrt_xml(parts, crs_wkt, str(tmp_path)))
    with rasterio.open(single) as one, rasterio.open(vrt) as stitched:
        assert (stitched.transform, stitched.shape) == (one.transform, one.shape)
        assert stitched.nodata == 0 and stitched.crs.to_epsg() == 3035
        difference = np.abs(one.read().astype(int) - stitched.read().astype(int))
    assert difference.max() <= 1  # same pixels on both sides of every cell edge
    overview = tmp_path / "overview.tif"
    mosaic_parts.write_overview(str(vrt), str(overview), factor=4)
    with rasterio.open(overview) as src, rasterio.open(single) as one:
        assert src.transform.a == 4 * RES and src.transform.c == one.transform.c
        assert src.width == -(-one.width // 4)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        coarse = src.read()
    assert (coarse[0] == WEST_BYTES[0]).any() and (coarse[0] == EAST_BYTES[0]).any()
    assert set(np.unique(coarse[0]).tolist()) <= {0, WEST_BYTES[0], EAST_BYTES[0]}


def test_parts_plan_and_overview_factor() -> None:
    assert not mosaic_parts.needs_parts(8192, 8192) and mosaic_parts.needs_parts(8193, 10)
    assert mosaic_parts.overview_factor(100_000, 90_000) == 32  # 100000 / 32 = 3125 <= 4096
    assert mosaic_parts.overview_factor(4000, 10) == 1
    with pytest.raises(NoInputs):
        mosaic_parts.cells_for(Polygon(), 10.0)
    with pytest.raises(NoInputs):
        mosaic_parts.union_grid([])


def test_windows_of_any_size_give_the_same_mosaic(tmp_path: Path) -> None:
    """Views are closed after the last window that meets their input, and reopened by none:
    small windows (several per tile) give the pixels of one window over everything."""
    inputs = [_tile(tmp_path, "31UFR", WEST, True), _tile(tmp_path, "32ULA", EAST)]
    pixels = []
    for block in (512, 32):
        out = tmp_path / f"mosaic-{block}.tif"
        build_mosaic(inputs, AREA, str(out), crs=MOSAIC_CRS, resolution=RES, block_size=block)
        with rasterio.open(out) as src:
            pixels.append(src.read())
    assert pixels[0].shape[1] > 2 * 32 and (pixels[0] > 0).sum() > 1000
    assert pixels[0].tobytes() == pixels[1].tobytes()


def test_a_view_read_for_the_last_time_is_closed(tmp_path: Path) -> None:
    west = _tile(tmp_path, "31UFR", WEST)
    x, y = _centre_in(WEST, MOSAIC_CRS)
    x0, y0 = RES * (x // RES) - 20 * RES, RES * (y // RES) + 20 * RES
    grid = OutputGrid(MOSAIC_CRS, Affine(RES, 0, x0, 0, -RES, y0), 64, 40)
    windows = [Window(0, 0, 32, 40), Window(32, 0, 32, 40)]
    source = mosaic._source(west, MOSAIC_CRS)
    assert mosaic._last_windows([source], grid, windows) == {id(source): 1}
    reader = mosaic._Views(grid)
    kept, _ = reader.read(west.red, windows[0], Resampling.bilinear, -10000)
    assert len(reader._open) == 1
    with reader.once():
        again, _ = reader.read(west.red, windows[0], Resampling.bilinear, -10000)
        reader.read(west.green, windows[0], Resampling.bilinear, -10000)
    assert len(reader._open) == 0  # both closed, the one kept open before too
    assert kept.tobytes() == again.tobytes() and (kept == 1000).sum() > 500
    reader.close()
