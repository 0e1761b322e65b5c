"""The product simulator: its zips must read back as MUSCATE products with plausible content."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sansnuages.formats import grid, muscate
from sansnuages.formats.muscate import GroupGeometry
from sansnuages.tools import simulate

WHEN = dt.datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=dt.UTC)
SMALL = 1098.0  # 100 x 100 px R1, 50 x 50 px R2


def layout_of(path: Path) -> muscate.ProductLayout:
    with zipfile.ZipFile(path) as archive:
        return muscate.ProductLayout.from_members(archive.namelist())


def metadata_of(path: Path) -> muscate.MuscateMetadata:
    with zipfile.ZipFile(path) as archive:
        return muscate.parse_metadata(archive.read(layout_of(path).metadata))


def read(path: Path, key: str, band: int = 1) -> np.ndarray:
    with rasterio.open(f"/vsizip/{path}/{layout_of(path).rasters[key]}") as src:
        return src.read(band)


@pytest.fixture(scope="module")
def s2_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s2")
    return simulate.simulate_product(
        "31UFS", WHEN, "SENTINEL2B", out, resolution=SMALL, seed=3, cloud_cover=0.4
    )


def test_round_trip_sentinel2(s2_product):
    assert s2_product.name == "SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8.zip"
    layout = layout_of(s2_product)
    meta = metadata_of(s2_product)
    tile = grid.tile("31UFS")
    assert meta.product_id == layout.product_id == s2_product.stem
    assert (meta.tile, meta.epsg, meta.platform, meta.acquired) == (
        "31UFS",
        tile.epsg,
        "SENTINEL2B",
        WHEN,
    )
    assert meta.groups == {
        "R1": GroupGeometry(tile.ulx, tile.uly, SMALL, -SMALL, 100, 100),
        "R2": GroupGeometry(tile.ulx, tile.uly, 2 * SMALL, -2 * SMALL, 50, 50),
    }
    assert meta.reflectance_scale == pytest.approx(1e-4)
    assert (meta.aot_scale, meta.wvc_scale) == (pytest.approx(1 / 200), pytest.approx(1 / 20))
    assert meta.reflectance_nodata == -10000
    assert 10 < meta.cloud_percent < 80
    assert 15 < meta.sun_zenith < 40 and 100 < meta.sun_azimuth < 200  # July, 51 N, late morning
    assert meta.orbit_number > 5000
    assert (meta.view_zenith, meta.view_azimuth) == (0.0, 0.0)  # no directional effects: nadir
    assert layout.quicklook is not None


def test_rasters_are_plain_tiled_geotiffs_on_the_tile_grid(s2_product):
    meta = metadata_of(s2_product)
    layout = layout_of(s2_product)
    for key, group, dtype, count in [
        ("FRE_B2", "R1", "int16", 1),
        ("SRE_B12", "R2", "int16", 1),
        ("ATB_R2", "R2", "uint8", 2),
        ("CLM_R1", "R1", "uint8", 1),
        ("EDG_R2", "R2", "uint8", 1),
    ]:
        with rasterio.open(f"/vsizip/{s2_product}/{layout.rasters[key]}") as src:
            assert src.crs.to_epsg() == meta.epsg
            assert src.transform == meta.groups[group].transform
            assert src.shape == meta.groups[group].shape
            assert (src.dtypes[0], src.count) == (dtype, count)
            assert src.profile["tiled"] and src.overviews(1) == []
            if dtype == "int16":
                assert src.nodata == -10000


def test_cloud_mask_marks_the_bright_pixels(s2_product):
    blue = read(s2_product, "FRE_B2") / 1e4
    nir = read(s2_product, "FRE_B8") / 1e4
    clm = read(s2_product, "CLM_R1")
    valid = read(s2_product, "EDG_R1") == 0
    cloud = (clm & 2) > 0
    shadow = (clm & 32) > 0
    clear = valid & (clm == 0)
    assert cloud.any() and shadow.any() and clear.sum() > 1000
    assert np.all((clm[cloud | shadow] & 1) == 1)  # bit 0 = clouds and shadows
    assert np.median(blue[cloud & valid]) > 0.3
    assert np.percentile(blue[clear], 99) < 0.15
    assert nir[shadow & valid].mean() < 0.7 * nir[clear].mean()


def test_clear_pixels_are_close_to_the_truth(s2_product):
    meta = metadata_of(s2_product)
    truth = simulate.truth_reflectance("31UFS", "B4", WHEN.date(), meta.groups["R1"])
    red = read(s2_product, "FRE_B4") / 1e4
    clear = (read(s2_product, "CLM_R1") == 0) & (read(s2_product, "EDG_R1") == 0)
    error = np.abs(red - truth)[clear]
    assert np.median(error) < 0.015


def test_water_is_dark_and_flagged(s2_product):
    mg2 = read(s2_product, "MG2_R2")
    nir = read(s2_product, "FRE_B8A") / 1e4
    water = (mg2 & 1) > 0
    assert water.any()
    assert np.median(nir[water]) < 0.05


def test_atb_holds_aot_in_range(s2_product):
    meta = metadata_of(s2_product)
    aot = read(s2_product, "ATB_R1", band=2) * meta.aot_scale
    valid = read(s2_product, "EDG_R1") == 0
    assert 0.05 <= aot[valid].min() and aot[valid].max() <= 0.5


def test_truth_has_realistic_reflectances():
    tile = grid.tile("31TCJ")
    geom = GroupGeometry(tile.ulx, tile.uly, 60.0, -60.0, 300, 300)
    blue = simulate.truth_reflectance("31TCJ", "B2", dt.date(2018, 7, 15), geom)
    red = simulate.truth_reflectance("31TCJ", "B4", dt.date(2018, 7, 15), geom)
    nir = simulate.truth_reflectance("31TCJ", "B8", dt.date(2018, 7, 15), geom)
    nir_winter = simulate.truth_reflectance("31TCJ", "B8", dt.date(2018, 1, 15), geom)
    assert blue.dtype == np.float32 and blue.shape == (300, 300)
    assert 0.02 <= np.percentile(blue, 1) and np.percentile(blue, 99) <= 0.1
    ndvi = (nir - red) / (nir + red)
    vegetation = ndvi > 0.6
    water = nir < 0.05
    assert vegetation.mean() > 0.3 and water.any()
    assert 0.2 <= np.percentile(nir[vegetation], 5) and np.percentile(nir[vegetation], 95) <= 0.45
    assert np.median(nir_winter) < np.median(nir) - 0.05  # phenology


def test_truth_agrees_across_utm_zones():
    """A point in the overlap of 31UGS and 32ULB has the same truth in both tiles."""
    lon, lat = 6.3, 51.0
    values = []
    for name in ("31UGS", "32ULB"):
        tile = grid.tile(name)
        xs, ys = grid.lonlat_to_utm(tile.epsg, [lon], [lat])
        geom = GroupGeometry(float(xs[0]) - 5, float(ys[0]) + 5, 10.0, -10.0, 1, 1)
        values.append(simulate.truth_reflectance(name, "B8", dt.date(2018, 7, 15), geom)[0, 0])
    assert values[0] == pytest.approx(values[1], abs=0.005)


def test_same_seed_same_product_other_seed_other_clouds(tmp_path):
    first = simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path / "a", SMALL, seed=7)
    again = simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path / "b", SMALL, seed=7)
    other = simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path / "c", SMALL, seed=8)
    for key in ("FRE_B2", "SRE_B11", "CLM_R2", "ATB_R1"):
        assert np.array_equal(read(first, key), read(again, key))
    assert not np.array_equal(read(first, "CLM_R1"), read(other, "CLM_R1"))


def test_landsat_product(tmp_path):
    path = simulate.simulate_product(
        "31TCJ", WHEN, "LANDSAT8-OLITIRS-XS", tmp_path, 1220.0, seed=1, version="1-9"
    )
    assert path.name.startswith("LANDSAT8-OLITIRS-XS_20180714-105626-461_L2A_T31TCJ_D_V1-9")
    meta = metadata_of(path)
    assert list(meta.groups) == ["XS"]
    assert (meta.groups["XS"].xdim, meta.groups["XS"].nrows) == (3660.0, 30)
    assert meta.reflectance_scale == pytest.approx(1e-3)
    layout = layout_of(path)
    assert {"FRE_B1", "FRE_B7", "ATB_XS", "CLM_XS", "MG2_XS", "EDG_XS"} <= set(layout.rasters)
    blue = read(path, "FRE_B2") * meta.reflectance_scale
    assert 0.01 < np.median(blue[read(path, "CLM_XS") == 0]) < 0.12


def test_cloud_cover_extremes(tmp_path):
    clear = simulate.simulate_product(
        "31TCJ", WHEN, "SENTINEL2A", tmp_path, SMALL, seed=2, cloud_cover=0.0
    )
    cloudy = simulate.simulate_product(
        "31TCJ", WHEN, "SENTINEL2B", tmp_path, SMALL, seed=2, cloud_cover=0.97
    )
    assert not (read(clear, "CLM_R1") & 1).any()
    assert metadata_of(clear).cloud_percent == 0
    assert metadata_of(cloudy).cloud_percent > 90


def test_some_products_are_cut_by_the_swath_edge(tmp_path):
    edged = []
    for seed in range(6):
        path = simulate.simulate_product(
            "31TCJ", WHEN, "SENTINEL2A", tmp_path / str(seed), 5490.0, seed=seed
        )
        edge = read(path, "EDG_R1") == 1
        if edge.any():
            edged.append(seed)
            assert not edge.all()
            assert np.all(read(path, "FRE_B4")[edge] == -10000)
            assert np.all(read(path, "ATB_R1", band=2)[edge] == 0)
            assert np.all(read(path, "CLM_R1")[edge] == 0)
    assert 0 < len(edged) < 6


@pytest.mark.parametrize(
    ("resolution", "platform"),
    [
        (7.0, "SENTINEL2A"),
        (0.0, "SENTINEL2A"),
        (1098.0, "LANDSAT8-OLITIRS-XS"),
        (7320.0, "SENTINEL2A"),
    ],
)
def test_resolution_must_divide_the_tile(tmp_path, resolution, platform):
    with pytest.raises(ValueError, match="divide"):
        simulate.simulate_product("31TCJ", WHEN, platform, tmp_path, resolution)
    assert not list(tmp_path.glob("*.zip"))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="platform"):
        simulate.simulate_product("31TCJ", WHEN, "SPOT5", tmp_path, SMALL)
    with pytest.raises(ValueError, match="cloud_cover"):
        simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path, SMALL, cloud_cover=1.5)
    with pytest.raises(ValueError, match="south"):
        simulate.simulate_product("33HUC", WHEN, "SENTINEL2A", tmp_path, SMALL)
    with pytest.raises(ValueError, match="version"):
        simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path, SMALL, version="1.8")
    with pytest.raises(ValueError, match="flag"):
        simulate.simulate_product("31TCJ", WHEN, "SENTINEL2A", tmp_path, SMALL, flag="X")


def test_month_plan(tmp_path):
    paths = simulate.simulate_month(["31TCJ"], 2018, 7, tmp_path, resolution=3660.0, seed=0)
    names = [muscate.ProductName.parse(p.stem) for p in paths]
    first, last = simulate.synthesis_window(2018, 7)
    assert (first, last) == (dt.date(2018, 6, 22), dt.date(2018, 8, 6))
    assert all(first <= n.date <= last for n in names)
    by_platform = {}
    for n in names:
        by_platform.setdefault(n.platform, []).append(n.date)
    s2a, s2b = sorted(by_platform["SENTINEL2A"]), sorted(by_platform["SENTINEL2B"])
    assert len(s2a) >= 4 and len(s2b) >= 4
    assert {(b - a).days for a, b in zip(s2a, s2a[1:], strict=False)} == {10}
    assert abs((s2b[0] - s2a[0]).days) % 10 == 5
    assert 2 <= len(by_platform["LANDSAT8-OLITIRS-XS"]) <= 3
    covers = [metadata_of(p).cloud_percent for p in paths]
    assert min(covers) < 10 and max(covers) > 80


def test_month_on_a_grid_too_fine_for_landsat_still_has_landsat(tmp_path):
    paths = simulate.simulate_month(["31TCJ"], 2018, 2, tmp_path, resolution=5490.0, seed=1)
    landsat = [p for p in paths if p.name.startswith("LANDSAT8")]
    assert landsat
    xs = metadata_of(landsat[0]).groups["XS"]
    assert xs.ncols == 7 and xs.ncols * xs.xdim == pytest.approx(109800.0, abs=1e-3)
    with pytest.raises(ValueError, match="divide"):
        simulate.simulate_month(["31TCJ"], 2018, 2, tmp_path, resolution=7.0)


# Digests of the pixels of every raster of the demo's products of 31UFS (610 m, seed 0),
# written by the simulator before it wrote in memory, remembered its fields and used
# processes: the synthesis tests and benchmarks rely on the same seed giving the same pixels.
DEMO_31UFS_PIXELS = {
    "LANDSAT8-OLITIRS-XS_20180629-094917-004_L2A_T31UFS_D_V1-9": "ccb29cb76cae79cf",
    "LANDSAT8-OLITIRS-XS_20180715-094947-718_L2A_T31UFS_D_V1-9": "c36277795cdb5af9",
    "LANDSAT8-OLITIRS-XS_20180731-094952-317_L2A_T31UFS_D_V1-9": "a7b7e07d3bcf62fd",
    "SENTINEL2A_20180630-100939-717_L2A_T31UFS_D_V1-8": "cccdb22f8a2962f0",
    "SENTINEL2A_20180710-100951-526_L2A_T31UFS_D_V1-8": "ec28edcf33fbcc94",
    "SENTINEL2A_20180720-100942-408_L2A_T31UFS_D_V1-8": "2d1bcf366292e1bd",
    "SENTINEL2A_20180730-100926-285_L2A_T31UFS_D_V1-8": "ec5d4b29c4c91e3c",
    "SENTINEL2B_20180625-100930-186_L2A_T31UFS_D_V1-8": "a8c7173ebee9e85e",
    "SENTINEL2B_20180705-100921-353_L2A_T31UFS_D_V1-8": "960b72eeca42d890",
    "SENTINEL2B_20180715-100949-260_L2A_T31UFS_D_V1-8": "1f7626eb1cea03d9",
    "SENTINEL2B_20180725-100939-938_L2A_T31UFS_D_V1-8": "3ca77b4fdb0c9a8b",
    "SENTINEL2B_20180804-100942-587_L2A_T31UFS_D_V1-8": "66ef511977b0596b",
}


def pixel_digest(path: Path) -> str:
    """A digest of every raster's name and pixel values, in member order."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        members = sorted(m for m in archive.namelist() if m.endswith(".tif"))
    for member in members:
        with rasterio.open(f"/vsizip/{path}/{member}") as src:
            digest.update(member.encode())
            digest.update(src.read().tobytes())
    return digest.hexdigest()[:16]


def test_the_demo_products_keep_their_pixels_whatever_the_processes(tmp_path: Path) -> None:
    two = simulate.simulate_month(
        ["31UFS", "31UES"], 2018, 7, tmp_path / "two", resolution=610.0, processes=2
    )
    ufs = {p.stem: pixel_digest(p) for p in two if "_T31UFS_" in p.name}
    assert ufs == DEMO_31UFS_PIXELS
    one = simulate.simulate_month(["31UES"], 2018, 7, tmp_path / "one", resolution=610.0)
    ues = [p for p in two if "_T31UES_" in p.name]
    assert [p.name for p in one] == [p.name for p in ues]
    for a, b in zip(one, ues, strict=True):  # the same bytes, member by member
        with zipfile.ZipFile(a) as left, zipfile.ZipFile(b) as right:
            assert left.namelist() == right.namelist()
            assert all(left.read(m) == right.read(m) for m in left.namelist())


def test_iter_month_yields_each_product_once_as_it_is_written(tmp_path: Path) -> None:
    seen = []
    plan = simulate.MonthPlan(("31TCJ",), 2018, 7, 3660.0)
    for path in simulate.iter_month(plan, tmp_path):
        assert path.exists() and not list(tmp_path.glob("*.part"))
        seen.append(path)
    again = simulate.simulate_month(["31TCJ"], 2018, 7, tmp_path / "again", resolution=3660.0)
    assert sorted(p.name for p in seen) == [p.name for p in again]
    assert len(set(seen)) == len(plan.orders()) > 5


def test_remembered_fields_are_shared_read_only_and_equal_to_fresh_ones() -> None:
    geom = simulate.group_geometries("31UFS", "SENTINEL2A", 610.0)["R1"]
    epsg = grid.tile("31UFS").epsg
    x, y = simulate._plane_xy(epsg, geom)
    assert simulate._plane_xy(epsg, geom)[0] is x
    fresh_x, fresh_y = simulate._plane_xy_of(epsg, geom)
    assert np.array_equal(x, fresh_x) and np.array_equal(y, fresh_y)
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0] = 0.0
    day = dt.date(2018, 7, 14)
    remembered, fresh = simulate._surface_at(epsg, geom, day), simulate._surface(x, y, day)
    for name in ("water", "soil", "greenness", "brightness", "texture"):
        assert np.array_equal(getattr(remembered, name), getattr(fresh, name))


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sansnuages")
    simulate.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_dates(tmp_path, capsys):
    args = cli(
        "simulate",
        "--tiles",
        "31UFS,31UES",
        "--dates",
        "2018-07-01,2018-07-11",
        "--resolution",
        "5490",
        "--out",
        str(tmp_path),
    )
    assert args.func(args) == 0
    zips = sorted(tmp_path.glob("*.zip"))
    assert len(zips) == 4
    assert capsys.readouterr().out.count(".zip") == 4
    acquired = metadata_of(zips[0]).acquired
    assert 9 <= acquired.hour <= 11  # a morning overpass, not midnight


def test_cli_month_and_errors(tmp_path, capsys):
    args = cli(
        "simulate",
        "--tiles",
        "31TCJ",
        "--month",
        "2018-02",
        "--resolution",
        "3660",
        "--no-landsat",
        "--out",
        str(tmp_path),
    )
    assert args.func(args) == 0
    assert not list(tmp_path.glob("LANDSAT8*"))
    bad = cli(
        "simulate",
        "--tiles",
        "31TCJ",
        "--dates",
        "2018-07-01",
        "--resolution",
        "7",
        "--out",
        str(tmp_path),
    )
    assert bad.func(bad) == 2
    assert "divide" in capsys.readouterr().err


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        cli("simulate", "--help")
    assert "sansnuages simulate --tiles" in capsys.readouterr().out


def test_failures_off_change_nothing_and_on_fail_like_real_masks(tmp_path, s2_product):
    """`Failures()` (every rate 0) writes the products of old; with thin cloud on every
    product, edges flagged from opacity 0.5, every shadow missed and smoke that day, the mask
    flags less, what it calls clear is brighter in blue than the truth, missed shadows are
    darker than it, and the AOT reports part of the smoke."""
    none = simulate.simulate_product(
        "31UFS", WHEN, "SENTINEL2B", tmp_path / "none", resolution=SMALL, seed=3,
        cloud_cover=0.4, failures=simulate.Failures(),
    )  # fmt: skip
    for key in ("FRE_B2", "FRE_B8", "CLM_R1", "ATB_R1"):
        assert np.array_equal(read(none, key), read(s2_product, key)), key
    failures = simulate.Failures(
        thin_cloud=1.0,
        edge_opacity=0.5,
        shadow_omission=1.0,
        smoke_days=(WHEN.date(), WHEN.date() + dt.timedelta(days=3)),
        smoke_aot=0.5,
    )
    failing = simulate.simulate_product(
        "31UFS", WHEN, "SENTINEL2B", tmp_path / "failing", resolution=SMALL, seed=3,
        cloud_cover=0.4, failures=failures,
    )  # fmt: skip
    meta = metadata_of(failing)
    truth = simulate.truth_reflectance("31UFS", "B2", WHEN.date(), meta.groups["R1"])
    nir_truth = simulate.truth_reflectance("31UFS", "B8", WHEN.date(), meta.groups["R1"])
    valid = read(failing, "EDG_R1") == 0
    before, after = read(s2_product, "CLM_R1"), read(failing, "CLM_R1")
    assert ((after & 2) > 0).sum() < ((before & 2) > 0).sum()  # fewer cloud pixels flagged
    assert not ((after & 32) > 0).any()  # every shadow missed
    clear_before = valid & (before == 0)
    clear_after = valid & (after == 0)
    excess_before = np.median((read(s2_product, "FRE_B2") / 1e4 - truth)[clear_before])
    excess_after = np.median((read(failing, "FRE_B2") / 1e4 - truth)[clear_after])
    assert excess_after > excess_before + 0.01  # thin cloud and smoke pass as clear
    missed = valid & ((before & 32) > 0) & (after == 0)
    assert missed.sum() > 50
    assert np.median((read(failing, "FRE_B8") / 1e4)[missed] / nir_truth[missed]) < 0.8
    aot_before = read(s2_product, "ATB_R1", band=2)[valid].mean()
    assert read(failing, "ATB_R1", band=2)[valid].mean() > aot_before + 10  # 0.05 x 200 DN
