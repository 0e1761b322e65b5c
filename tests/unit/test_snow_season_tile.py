"""The snow season of a tile from COG files: simulated Let-It-Snow maps written to disk
(Sentinel-2 at 20 m on the tile's grid, Landsat-8 at 30 m on a shifted grid covering part of
it), against the core run on the same maps brought onto the grid here by plain numpy."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from sansnuages.errors import NoInputs, OffGrid, UnexpectedFormat
from sansnuages.formats import colour_maps
from sansnuages.formats.snow import CLOUD, NODATA_V1, NODATA_V2
from sansnuages.formats.snow_season_product import LAYERS
from sansnuages.processing import snow_season_tile
from sansnuages.processing.snow_season import (
    DAYS_NODATA,
    NODATA,
    DatedCodes,
    HydrologicalYear,
    SeasonFold,
    SeasonLayers,
    daily_snow,
    season_of_window,
    season_reference,
    stack_days,
)
from sansnuages.processing.snow_season_tile import (
    ObservationDay,
    SeasonSummary,
    SnowMapInput,
    preview_png,
    season_tile,
)
from sansnuages.processing.synthesis import OutputGrid
from sansnuages.raster import cog
from sansnuages.tools.simulate_snow import L8, SnowScene, SnowSceneSpec, simulate_snow_scene

CRS = "EPSG:32631"
X0, Y0 = 600000.0, 5000000.0
L8_ORIGIN = (X0 + 5.0, Y0 - 7.0)  # no 20 m pixel centre falls on a 30 m pixel edge
YEAR = HydrologicalYear(2019)
LEAP = HydrologicalYear(2020)
PLATFORMS = {0: "sentinel-2a", 1: "landsat-8"}


def grid_of(rows: int, cols: int) -> OutputGrid:
    return OutputGrid(CRS, Affine(20.0, 0, X0, 0, -20.0, Y0), cols, rows)


def landsat_on_grid(codes30: np.ndarray, grid: OutputGrid) -> np.ndarray:
    """Nearest neighbour by hand: the 30 m pixel holding each 20 m pixel's centre, no data
    (255) outside the 30 m raster."""
    xs = X0 + 20.0 * (np.arange(grid.width) + 0.5)
    ys = Y0 - 20.0 * (np.arange(grid.height) + 0.5)
    cols = np.floor((xs - L8_ORIGIN[0]) / 30.0).astype(int)
    rows = np.floor((L8_ORIGIN[1] - ys) / 30.0).astype(int)
    inside = ((rows >= 0) & (rows < codes30.shape[0]))[:, None] & (
        (cols >= 0) & (cols < codes30.shape[1])
    )[None, :]
    picked = codes30[np.clip(rows, 0, codes30.shape[0] - 1)][
        :, np.clip(cols, 0, codes30.shape[1] - 1)
    ]
    return np.where(inside, picked, NODATA_V2).astype(np.uint8)


def landsat_at_30m(codes20: np.ndarray, nodata: int) -> np.ndarray:
    """A Landsat-8 map at 30 m from the simulated one at 20 m, covering about two thirds of
    the tile's width and all its height (plus a row beyond)."""
    rows, cols = codes20.shape[0] * 2 // 3 + 2, codes20.shape[1] * 4 // 9
    source_rows = np.clip((np.arange(rows) * 1.5).astype(int), 0, codes20.shape[0] - 1)
    source_cols = np.clip((np.arange(cols) * 1.5).astype(int), 0, codes20.shape[1] - 1)
    out = codes20[source_rows][:, source_cols].copy()
    out[:, -2:] = nodata  # the footprint's edge inside the raster
    return out


def write_map(
    path: Path, data: np.ndarray, transform: Affine, nodata: int, block: int | None
) -> None:
    """A COG, or with `block` a tiled GeoTIFF of blocks that size (the COG driver's are at
    least 128 px: small grids need smaller blocks to be cut into several strips)."""
    if block is None:
        cog.write_cog(str(path), data, crs=CRS, transform=transform, nodata=nodata)
        return
    profile = {"driver": "GTiff", "tiled": True, "blockxsize": block, "blockysize": block}
    with rasterio.open(
        path, "w", **profile, width=data.shape[1], height=data.shape[0], count=1,
        dtype="uint8", crs=CRS, transform=transform, nodata=nodata, compress="DEFLATE",
    ) as dst:  # fmt: skip
        dst.write(data, 1)


def write_scene(
    scene: SnowScene, folder: Path, grid: OutputGrid, block: int | None = None
) -> tuple[list[SnowMapInput], list[DatedCodes]]:
    """The scene's maps as files (Landsat-8 at 30 m), their inputs, and their codes on the
    grid as the core should see them."""
    inputs, expected = [], []
    for number, product in enumerate(scene.products):
        obs = product.observation
        path = folder / f"map{number:03d}.tif"
        if product.sensor == L8:
            data = landsat_at_30m(obs.codes, product.nodata)
            transform = Affine(30.0, 0, L8_ORIGIN[0], 0, -30.0, L8_ORIGIN[1])
            on_grid = landsat_on_grid(data, grid)
        else:
            data, transform, on_grid = obs.codes, grid.transform, obs.codes
        declared = None if number % 3 == 0 else product.nodata  # the file says it, or the Item
        write_map(path, data, transform, product.nodata, block)
        platform = PLATFORMS[obs.rank]
        inputs.append(SnowMapInput(str(path), obs.date, obs.rank, f"P{number}", platform, declared))
        expected.append(DatedCodes(obs.date, on_grid, obs.rank))
    return inputs, expected


def read_layer(path: Path) -> tuple[np.ndarray, float | None]:
    with rasterio.open(path) as src:
        return src.read(1), src.nodata


def assert_written(folder: Path, want: SeasonLayers) -> None:
    for name, values in want.as_dict().items():
        got, nodata = read_layer(folder / f"{name}.tif")
        assert got.dtype == values.dtype, name
        assert nodata == NODATA[name], name
        np.testing.assert_array_equal(got, values, err_msg=name)


def observed_days(
    expected: list[DatedCodes], year: HydrologicalYear, keep: np.ndarray | None = None
) -> list[tuple[int, int, int]]:
    """(day, clear, snow) per observation day, pixel by pixel: the first clear code of the
    day in rank order."""
    by_day: dict[int, list[DatedCodes]] = {}
    for obs in sorted(expected, key=lambda o: (o.date, o.rank)):
        if year.takes(obs.date):
            by_day.setdefault(year.day_index(obs.date), []).append(obs)
    found = []
    for day, maps in sorted(by_day.items()):
        shape = maps[0].codes.shape
        clear = np.zeros(shape, bool)
        snow = np.zeros(shape, bool)
        for obs in maps:
            fresh = ~clear & (obs.codes <= 100)
            snow |= fresh & (obs.codes >= 50)
            clear |= fresh
        if keep is not None:
            clear &= keep
            snow &= keep
        found.append((day, int(clear.sum()), int(snow.sum())))
    return found


@pytest.fixture(scope="module")
def scene_files(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]]:
    """150 x 140 px, maps in blocks of 64 px: three strips of rows, cut into many sub-windows."""
    grid = grid_of(150, 140)
    spec = SnowSceneSpec(shape=(150, 140), s2_every=3, l8_every=8, missing=0.15, seed=3)
    scene = simulate_snow_scene(YEAR, spec)
    folder = tmp_path_factory.mktemp("maps")  # written once for the module: tests only read
    inputs, expected = write_scene(scene, folder, grid, block=64)
    return grid, scene, inputs, expected


def outputs_in(folder: Path) -> dict[str, str]:
    return {name: str(folder / f"{name}.tif") for name in NODATA}


# --- the season of a whole grid ---------------------------------------------------------------


def test_the_scene_has_what_the_cases_need(
    scene_files: tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]],
) -> None:
    _, scene, inputs, expected = scene_files
    nodata = {p.nodata for p in scene.products}
    assert nodata == {NODATA_V1, NODATA_V2}
    assert any(p.fractional for p in scene.products) and any(p.sensor == L8 for p in scene.products)
    assert any(i.nodata is None for i in inputs) and any(i.nodata is not None for i in inputs)
    days = [YEAR.day_index(i.date) for i in inputs]
    assert len(set(days)) < len(days)  # some days have both sensors: the fusion runs
    l8 = [e.codes for e, i in zip(expected, inputs, strict=True) if i.rank == 1]
    assert all((codes[:, -10:] == NODATA_V2).all() for codes in l8)  # beyond the footprint


def test_the_expected_landsat_maps_are_those_of_gdal_warper(
    scene_files: tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]],
) -> None:
    """The rule is a `WarpedVRT` with nearest neighbour: the hand-made expectation agrees with
    it on every clear code, and on where codes are clear."""
    grid, _, inputs, expected = scene_files
    landsat = [(i, e) for i, e in zip(inputs, expected, strict=True) if i.rank == 1]
    for item, want in landsat:
        with rasterio.open(item.path) as src, WarpedVRT(
            src, crs=CRS, transform=grid.transform, width=grid.width, height=grid.height,
            resampling=Resampling.nearest, nodata=NODATA_V2,
        ) as vrt:  # fmt: skip
            warped = vrt.read(1)
        clear = warped <= 100
        np.testing.assert_array_equal(clear, want.codes <= 100)
        np.testing.assert_array_equal(warped[clear], want.codes[clear])


def test_written_layers_equal_the_core_on_the_same_maps(
    scene_files: tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grid, _, inputs, expected = scene_files
    monkeypatch.setattr(snow_season_tile, "PART_PIXELS", 1000)  # parts of 7 rows, fewer last
    out = tmp_path / "out"
    out.mkdir()
    summary = season_tile(inputs, YEAR, grid, outputs_in(out), scratch_dir=str(tmp_path))
    want = season_of_window(expected, YEAR)
    assert_written(out, want)
    with rasterio.open(out / "SCD.tif") as src:
        assert (src.crs, src.transform, src.shape) == (CRS, grid.transform, (150, 140))
    daily = daily_snow(expected, YEAR)
    assert summary.daily_snow == tuple(int(n) for n in daily.sum(axis=(1, 2)))
    assert summary.pixels == int((want.nobs > 0).sum())
    assert [(o.day, o.clear, o.snow) for o in summary.observed] == observed_days(expected, YEAR)
    by_date = sorted(range(len(inputs)), key=lambda i: (inputs[i].date, inputs[i].rank))
    assert summary.used == tuple(inputs[i].product_id for i in by_date)
    assert summary.sentinel2_observations == sum(i.rank == 0 for i in inputs)
    assert summary.landsat8_observations == sum(i.rank == 1 for i in inputs)
    both = [o for o in summary.observed if len(o.platforms) == 2]
    assert both and all(o.platforms == ("sentinel-2a", "landsat-8") for o in both)
    assert list(tmp_path.glob("*.tif")) == []  # the scratch files are gone


def test_a_small_grid_equals_the_plain_python_reference(tmp_path: Path) -> None:
    """Leap year, every product fractional or binary at random, one input twice on a day."""
    grid = grid_of(9, 8)
    scene = simulate_snow_scene(LEAP, SnowSceneSpec(shape=(9, 8), s2_every=6, seed=8))
    inputs, expected = write_scene(scene, tmp_path, grid)
    summary = season_tile(inputs, LEAP, grid, outputs_in(tmp_path))
    assert_written(tmp_path, season_reference(expected, LEAP))
    assert len(summary.daily_snow) == 366
    any_fraction = tmp_path / "any"
    any_fraction.mkdir()
    season_tile(inputs, LEAP, grid, outputs_in(any_fraction), snow_from=1)
    assert_written(any_fraction, season_reference(expected, LEAP, snow_from=1))


def test_layers_of_a_large_grid_have_overviews(tmp_path: Path) -> None:
    grid = grid_of(600, 640)
    spec = SnowSceneSpec(shape=(600, 640), s2_every=60, l8_every=None, seed=5)
    scene = simulate_snow_scene(YEAR, spec)
    inputs, expected = write_scene(scene, tmp_path, grid)
    season_tile(inputs, YEAR, grid, outputs_in(tmp_path))
    assert_written(tmp_path, season_of_window(expected, YEAR))
    for name in NODATA:
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            assert src.overviews(1) == [2], name
            assert src.profile["blockxsize"] == 512, name


def test_maps_outside_the_year_and_margins_are_ignored(tmp_path: Path) -> None:
    grid = grid_of(12, 10)
    scene = simulate_snow_scene(YEAR, SnowSceneSpec(shape=(12, 10), s2_every=9, l8_every=None))
    inputs, expected = write_scene(scene, tmp_path, grid)
    outside = tmp_path / "outside.tif"
    cog.write_cog(str(outside), np.full((12, 10), 100, np.uint8), crs=CRS, transform=grid.transform)
    late = SnowMapInput(str(outside), YEAR.last_input + dt.timedelta(days=1), 0, "late", "s")
    early = SnowMapInput(str(outside), YEAR.first_input - dt.timedelta(days=1), 0, "early", "s")
    summary = season_tile([late, *inputs, early], YEAR, grid, outputs_in(tmp_path))
    assert "late" not in summary.used and "early" not in summary.used
    assert len(summary.used) == len(inputs)
    assert_written(tmp_path, season_of_window(expected, YEAR))


def test_a_map_on_the_last_margin_day_counts(tmp_path: Path) -> None:
    """Snow seen only on the margin days themselves: they take part in the gap filling."""
    grid = grid_of(4, 5)
    path = tmp_path / "snow.tif"
    cog.write_cog(str(path), np.full((4, 5), 100, np.uint8), crs=CRS, transform=grid.transform)
    maps = [
        SnowMapInput(str(path), day, 0, str(day), "s")
        for day in (YEAR.first_input, YEAR.last_input)
    ]
    summary = season_tile(maps, YEAR, grid, None)
    assert summary.daily_snow == (20,) * YEAR.n_days
    assert [o.day for o in summary.observed] == [-15, YEAR.n_days + 14]


# --- a window and a mask ----------------------------------------------------------------------


def test_window_and_mask_give_the_window_and_count_the_mask(
    scene_files: tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]],
    tmp_path: Path,
) -> None:
    grid, _, inputs, expected = scene_files
    window = Window(17, 50, 60, 90)  # starts inside a block row, ends inside another
    rows, cols = slice(50, 140), slice(17, 77)
    keep = np.random.default_rng(2).random((90, 60)) < 0.4
    out = tmp_path / "out"
    out.mkdir()
    summary = season_tile(inputs, YEAR, grid, outputs_in(out), window=window, mask=keep)
    cropped = [DatedCodes(o.date, o.codes[rows, cols], o.rank) for o in expected]
    want = season_of_window(cropped, YEAR)
    assert_written(out, want)
    with rasterio.open(out / "NOBS.tif") as src:
        assert src.transform == grid.transform @ Affine.translation(17, 50)
    daily = daily_snow(cropped, YEAR)
    assert summary.daily_snow == tuple(int(n) for n in daily[:, keep].sum(axis=1))
    assert summary.pixels == int((want.nobs[keep] > 0).sum())
    want_days = observed_days(cropped, YEAR, keep)
    assert [(o.day, o.clear, o.snow) for o in summary.observed] == want_days
    assert sum(o.clear for o in summary.observed) == int(want.nobs[keep].sum())


def test_without_outputs_nothing_is_written(
    scene_files: tuple[OutputGrid, SnowScene, list[SnowMapInput], list[DatedCodes]],
    tmp_path: Path,
) -> None:
    grid, _, inputs, expected = scene_files
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = sorted(tmp_path.rglob("*"))
    summary = season_tile(inputs, YEAR, grid, None, scratch_dir=str(scratch))
    assert sorted(tmp_path.rglob("*")) == before
    assert summary.pixels == int((season_of_window(expected, YEAR).nobs > 0).sum())


# --- bad inputs -------------------------------------------------------------------------------


def one_map(tmp_path: Path, name: str, shape: tuple[int, int], **profile: object) -> str:
    path = tmp_path / name
    data = np.full(shape, CLOUD, np.uint8)
    options = {"crs": CRS, "transform": grid_of(*shape).transform, **profile}
    cog.write_cog(str(path), data, **options)  # type: ignore[arg-type]
    return str(path)


def test_a_sentinel2_map_off_the_grid_is_refused(tmp_path: Path) -> None:
    path = one_map(tmp_path, "small.tif", (8, 10))
    with pytest.raises(OffGrid, match="must lie on the tile's grid"):
        season_tile([SnowMapInput(path, YEAR.start, 0, "P", "s")], YEAR, grid_of(12, 10), None)


def test_a_map_in_another_crs_is_refused(tmp_path: Path) -> None:
    path = one_map(tmp_path, "utm32.tif", (12, 10), crs="EPSG:32632")
    with pytest.raises(OffGrid, match="EPSG:32632"):
        season_tile([SnowMapInput(path, YEAR.start, 1, "L", "l")], YEAR, grid_of(12, 10), None)


def test_a_map_of_another_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "int16.tif"
    grid = grid_of(12, 10)
    cog.write_cog(str(path), np.zeros((12, 10), np.int16), crs=CRS, transform=grid.transform)
    with pytest.raises(OffGrid, match="uint8"):
        season_tile([SnowMapInput(str(path), YEAR.start, 0, "P", "s")], YEAR, grid, None)


def test_a_file_that_is_not_a_geotiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "map.tif"  # a PNG under a GeoTIFF's name
    with MemoryFile() as memory:
        with memory.open(driver="PNG", width=10, height=12, count=1, dtype="uint8") as png:
            png.write(np.zeros((1, 12, 10), np.uint8))
        path.write_bytes(memory.read())
    with pytest.raises(UnexpectedFormat, match="not a GeoTIFF"):
        season_tile([SnowMapInput(str(path), YEAR.start, 0, "P", "s")], YEAR, grid_of(12, 10), None)


def test_no_map_in_the_season_is_no_inputs(tmp_path: Path) -> None:
    path = one_map(tmp_path, "old.tif", (12, 10))
    old = SnowMapInput(path, dt.date(2010, 1, 1), 0, "P", "s")
    with pytest.raises(NoInputs):
        season_tile([old], YEAR, grid_of(12, 10), None)


def test_a_wrong_window_mask_or_layer_name_is_refused(tmp_path: Path) -> None:
    grid = grid_of(12, 10)
    maps = [SnowMapInput(one_map(tmp_path, "m.tif", (12, 10)), YEAR.start, 0, "P", "s")]
    with pytest.raises(ValueError, match="not inside"):
        season_tile(maps, YEAR, grid, None, window=Window(5, 5, 10, 10))
    with pytest.raises(ValueError, match="mask"):
        season_tile(maps, YEAR, grid, None, mask=np.ones((10, 12), bool))
    with pytest.raises(ValueError, match="unknown"):
        season_tile(maps, YEAR, grid, {"SNOW_OCCURENCE": str(tmp_path / "x.tif")})


# --- the core's counts and the product description --------------------------------------------


def test_the_fold_counts_equal_the_daily_series() -> None:
    scene = simulate_snow_scene(LEAP, SnowSceneSpec(shape=(20, 18), seed=11))
    stack = stack_days(scene.observations, LEAP)
    keep = np.random.default_rng(0).random((20, 18)) < 0.5
    want = season_of_window(scene.observations, LEAP)
    series = daily_snow(scene.observations, LEAP)
    for counted in (keep, None):
        fold = SeasonFold(20 * 18, LEAP.n_days, counted=counted)
        days = zip(stack.days, stack.codes, strict=True)
        seen = [fold.add(int(day), codes.reshape(-1)) for day, codes in days]
        layers, counts = fold.finish()
        for name, values in want.as_dict().items():
            np.testing.assert_array_equal(layers.as_dict()[name].reshape(20, 18), values, name)
        pixels = np.ones((20, 18), bool) if counted is None else counted
        np.testing.assert_array_equal(counts, series[:, pixels].sum(axis=1))
        clear = (stack.codes <= 100) & pixels
        snow = clear & (stack.codes >= 50)
        assert seen == list(zip(clear.sum(axis=(1, 2)), snow.sum(axis=(1, 2)), strict=True))


def test_the_fold_takes_days_in_order_only() -> None:
    fold = SeasonFold(3, LEAP.n_days)
    fold.add(10, np.array([0, 100, 205], np.uint8))
    with pytest.raises(ValueError, match="ascend"):
        fold.add(10, np.array([0, 100, 205], np.uint8))
    with pytest.raises(ValueError, match="percentage"):
        SeasonFold(3, LEAP.n_days, snow_from=0)


def test_the_product_description_matches_what_the_core_writes() -> None:
    layers = season_of_window([DatedCodes(YEAR.start, np.zeros((1, 1), np.uint8))], YEAR)
    for name, values in layers.as_dict().items():
        layer = LAYERS[name]
        assert (layer.dtype, layer.nodata) == (str(values.dtype), NODATA[name])
        assert layer.title and layer.description and layer.unit
    assert [n for n, layer in LAYERS.items() if layer.addition] == ["SOD", "SMOD", "NOBS", "NSP"]
    assert LAYERS["SCD"].colour_map is colour_maps.SNOW_DAYS
    assert LAYERS["NOBS"].colour_map is colour_maps.OBSERVATIONS
    assert LAYERS["NSP"].colour_map is colour_maps.PERIODS


def test_preview_reads_an_overview_and_colours_it(tmp_path: Path) -> None:
    """A 1100 px layer with overviews of 550 and 275 px: at most 300 px reads the 275 px one;
    its left half is 0 days, its right half no data."""
    path = tmp_path / "SCD.tif"
    data = np.zeros((1100, 1100), np.uint16)
    data[:, 550:] = DAYS_NODATA
    grid = grid_of(1100, 1100)
    cog.write_cog(
        str(path), data, crs=CRS, transform=grid.transform, nodata=NODATA["SCD"],
        overview_resampling="NEAREST",
    )  # fmt: skip
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
    png = preview_png(str(path), "SCD", max_size=300)
    with MemoryFile(png) as memory, memory.open() as image:
        assert image.driver == "PNG" and image.shape == (275, 275) and image.count == 4
        rgba = image.read()
    bare = colour_maps.SNOW_DAYS.rgba(np.zeros(1))[:, 0]
    np.testing.assert_array_equal(
        rgba[:, :, :137], np.broadcast_to(bare[:, None, None], (4, 275, 137))
    )
    assert (rgba[3, :, 138:] == 0).all()
    small = preview_png(str(path), "NSP", max_size=2000)  # fits: the full raster
    with MemoryFile(small) as memory, memory.open() as image:
        assert image.shape == (1100, 1100)
    with pytest.raises(ValueError, match="unknown"):
        preview_png(str(path), "CLOUD_OCCURENCE")


def test_the_summary_types_are_frozen() -> None:
    day = ObservationDay(0, ("sentinel-2a",), 1, 0)
    summary = SeasonSummary((), 0, 0, 0, (), (day,))
    with pytest.raises(AttributeError):
        summary.pixels = 1  # type: ignore[misc]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_keeps_freed_memory_under_glibc() -> None:
    assert snow_season_tile.keep_freed_memory() is True
