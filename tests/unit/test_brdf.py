"""Directional effects: kernels against known values, the c-factor, the simulator's views and
the synthesis' nadir normalisation."""

from __future__ import annotations

import datetime as dt
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from sansnuages.formats import muscate
from sansnuages.formats.grid import tile as s2tile
from sansnuages.processing.synthesis import Observation, OutputGrid, RasterRef, read_stack
from sansnuages.raster import brdf
from sansnuages.tools import simulate

RED = brdf.ROY_COEFFICIENTS["B4"]
NIR = brdf.ROY_COEFFICIENTS["B8"]


# --- kernels -----------------------------------------------------------------------------------


def test_kernels_vanish_with_sun_and_view_at_nadir() -> None:
    assert brdf.ross_thick(0, 0, 0) == pytest.approx(0.0, abs=1e-12)
    assert brdf.li_sparse(0, 0, 0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("angle", [10.0, 30.0, 45.0])
def test_kernels_at_the_hotspot_have_their_closed_forms(angle: float) -> None:
    """Sun and view at the same zenith and azimuth: the phase angle is 0, so
    K_vol = pi / (4 cos) - pi / 4 and K_geo = sec^2 - sec (no shadow seen)."""
    sec = 1.0 / math.cos(math.radians(angle))
    assert brdf.ross_thick(angle, angle, 0) == pytest.approx(math.pi / 4 * (sec - 1))
    assert brdf.li_sparse(angle, angle, 0) == pytest.approx(sec**2 - sec)


def test_known_values_of_the_kernels() -> None:
    """Sun 30, view 30: the hotspot (phi 0) is the brightest, forward scatter (phi 180) the
    darkest; values by the closed forms above and, at phi 180, by hand from Lucht et al."""
    assert brdf.ross_thick(30, 30, 0) == pytest.approx(0.121502, abs=1e-6)
    assert brdf.li_sparse(30, 30, 0) == pytest.approx(0.178633, abs=1e-6)
    assert brdf.li_sparse(30, 30, 180) < brdf.li_sparse(30, 30, 90) < brdf.li_sparse(30, 30, 0)
    # forward scatter at equal zeniths: xi = 60 deg, so K_vol = (pi/6 * 0.5 + sin 60) / 2cos30 - pi/4
    expected = (math.pi / 6 * 0.5 + math.sin(math.pi / 3)) / (
        2 * math.cos(math.pi / 6)
    ) - math.pi / 4
    assert brdf.ross_thick(30, 30, 180) == pytest.approx(expected)


def test_kernels_are_reciprocal() -> None:
    """Swapping sun and view gives the same kernels (Helmholtz reciprocity)."""
    for kernel in (brdf.ross_thick, brdf.li_sparse):
        assert kernel(20, 45, 60) == pytest.approx(kernel(45, 20, 60))


def test_c_factor_is_one_at_nadir_and_corrects_the_view() -> None:
    assert brdf.c_factor(NIR, 35.0, 0.0, 0.0) == pytest.approx(1.0)
    assert brdf.c_factor(NIR, 35.0, 0.0, 123.0) == pytest.approx(1.0)  # no azimuth at nadir
    back = brdf.c_factor(NIR, 35.0, 10.0, 0.0)
    forward = brdf.c_factor(NIR, 35.0, 10.0, 180.0)
    assert back < 1.0 < forward  # a backscatter view looks too bright, forward too dark
    # applied to the model's own off-nadir reflectance it gives the nadir reflectance back
    seen = brdf.model(NIR, 35.0, 10.0, 40.0)
    assert seen * brdf.c_factor(NIR, 35.0, 10.0, 40.0) == pytest.approx(brdf.model(NIR, 35, 0, 0))


def test_c_factor_to_another_sun_zenith() -> None:
    to_own = brdf.c_factor(RED, 30.0, 0.0, 0.0, target_sun_zenith=30.0)
    assert to_own == pytest.approx(1.0)
    lower_sun = brdf.c_factor(RED, 30.0, 0.0, 0.0, target_sun_zenith=50.0)
    assert lower_sun == pytest.approx(brdf.model(RED, 50, 0, 0) / brdf.model(RED, 30, 0, 0))


def test_coefficients_by_band_and_platform() -> None:
    assert brdf.coefficients("B8A") == NIR  # B8A takes the NIR set
    assert brdf.coefficients("B5", "LANDSAT8-OLITIRS-XS") == NIR  # Landsat-8 B5 is NIR
    assert brdf.coefficients("B5") == brdf.ROY_COEFFICIENTS["B5"]  # Sentinel-2 B5: red edge
    assert brdf.coefficients("B7", "LANDSAT8-OLITIRS-XS") == brdf.ROY_COEFFICIENTS["B12"]
    with pytest.raises(KeyError, match="B9"):
        brdf.coefficients("B9")


# --- view geometry -----------------------------------------------------------------------------


def test_view_angles_across_the_track() -> None:
    zenith, azimuth = brdf.across_track_view(np.array([-145_000.0, 0.0, 145_000.0]), 786_000, 190)
    assert zenith == pytest.approx([10.45, 0.0, 10.45], abs=0.01)
    assert azimuth[0] == pytest.approx(280.0) and azimuth[2] == pytest.approx(100.0)


def test_angle_grid_interpolates_across_the_nadir_track() -> None:
    """Across the track the azimuth jumps by 180 degrees; interpolating tangent vectors still
    gives the right zenith between nodes, where interpolating azimuths would not."""
    offsets = np.array([[-10_000.0, 10_000.0]] * 2)
    zenith, azimuth = brdf.across_track_view(offsets, 786_000.0, 180.0)
    grid = brdf.AngleGrid.from_angles(zenith, azimuth, ulx=0.0, uly=20_000.0, step=20_000.0)
    x = np.array([0.0, 5_000.0, 10_000.0, 20_000.0])
    z, a = grid.at(x, np.full(4, 10_000.0))
    expected, _ = brdf.across_track_view(x - 10_000.0, 786_000.0, 180.0)
    assert z == pytest.approx(expected, abs=1e-3)
    assert a[0] == pytest.approx(azimuth[0, 0]) and a[3] == pytest.approx(azimuth[0, 1])


def test_angle_grid_fills_nodes_no_detector_sees() -> None:
    zenith = np.array([[np.nan, 2.0, 4.0], [np.nan, np.nan, np.nan]])
    grid = brdf.AngleGrid.from_angles(zenith, np.full((2, 3), 100.0), 0.0, 10.0, 5.0)
    z, _ = grid.at(np.array([0.0, 10.0]), np.array([10.0, 5.0]))
    assert np.all(np.isfinite(z)) and z[0] == pytest.approx(2.0, abs=1e-6)


# --- the simulator -----------------------------------------------------------------------------

WHEN = dt.datetime(2018, 7, 14, 10, 56, 26, tzinfo=dt.UTC)
SMALL = 1098.0


def _product(out: Path, directional: bool) -> Path:
    return simulate.simulate_product(
        "31UFS", WHEN, "SENTINEL2A", out, SMALL, seed=4, cloud_cover=0.0, directional=directional
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("brdf")
    return _product(out / "flat", False), _product(out / "directional", True)


def _xml(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("_MTD_ALL.xml")))


def _observation(path: Path, nadir: bool) -> Observation:
    xml = _xml(path)
    meta = muscate.parse_metadata(xml)
    root = f"/vsizip/{path}/{meta.product_id}"
    normalisation = None
    if nadir:
        assert meta.sun_zenith is not None and meta.sun_azimuth is not None
        geometry = brdf.ViewGeometry(
            meta.sun_zenith, meta.sun_azimuth, 0.0, 0.0, muscate.view_angle_grid(xml)
        )
        normalisation = brdf.NadirNormalisation(geometry)

    def ref(name: str, band: int = 1, scale: float = 1.0) -> RasterRef:
        return RasterRef(f"{root}/{name}.tif", band, scale)

    bands = ("B2", "B4", "B8")
    pid = meta.product_id
    return Observation(
        pid,
        meta.platform,
        meta.acquired,
        1.0,
        {b: ref(f"{pid}_FRE_{b}", scale=meta.reflectance_scale) for b in bands},
        dict.fromkeys(bands, ref(f"MASKS/{pid}_CLM_R1")),
        dict.fromkeys(bands, ref(f"MASKS/{pid}_EDG_R1")),
        dict.fromkeys(bands, ref(f"{pid}_ATB_R1", 2, meta.aot_scale)),
        nadir=normalisation,
    )


def _grid() -> OutputGrid:
    tile = s2tile("31UFS")
    return OutputGrid(
        f"EPSG:{tile.epsg}", Affine(SMALL, 0, tile.ulx, 0, -SMALL, tile.uly), 100, 100
    )


def test_directional_views_differ_from_nadir_across_the_swath(pair) -> None:
    flat, directional = pair
    stacks = [read_stack([_observation(p, False)], ("B8",), _grid()) for p in pair]
    ratio = stacks[1].reflectance["B8"][0] / stacks[0].reflectance["B8"][0]
    columns = np.nanmean(ratio, axis=0)
    assert 0.9 < columns.min() < columns.max() < 1.1
    assert columns.max() - columns.min() > 0.01  # the view zenith changes across the tile
    assert np.nanstd(np.nanmean(ratio, axis=1)) < 0.2 * np.nanstd(columns)  # not along it


def test_directional_metadata_has_means_and_angle_grids(pair) -> None:
    flat, directional = pair
    assert muscate.view_angle_grid(_xml(flat)) is None
    assert muscate.parse_metadata(_xml(flat)).view_zenith == 0.0  # what its pixels show
    meta = muscate.parse_metadata(_xml(directional))
    grid = muscate.view_angle_grid(_xml(directional))
    assert grid is not None and grid.east.shape == (23, 23)
    tile = s2tile("31UFS")
    x = tile.ulx + np.linspace(0, tile.size_m, 50)
    zenith, _ = grid.at(x, np.full(50, tile.uly - tile.size_m / 2))
    assert 0.0 <= zenith.min() < zenith.max() <= 10.6
    assert meta.view_zenith == pytest.approx(float(zenith.mean()), abs=0.5)


def test_nadir_normalisation_removes_the_directional_effect(pair) -> None:
    """Normalised with the product's own angles, the directional product reads as the flat
    one (the same scene seen at nadir), up to rounding and noise."""
    flat, directional = pair
    raw = read_stack([_observation(flat, False)], ("B4", "B8"), _grid())
    seen = read_stack([_observation(directional, False)], ("B4", "B8"), _grid())
    normalised = read_stack([_observation(directional, True)], ("B4", "B8"), _grid())
    for band in ("B4", "B8"):
        before = np.nanmax(np.abs(seen.reflectance[band] - raw.reflectance[band]))
        after = np.nanmax(np.abs(normalised.reflectance[band] - raw.reflectance[band]))
        assert after < 0.002 < before


def test_simulation_without_directional_effects_is_unchanged(tmp_path: Path, pair) -> None:
    """The option is off by default: the same call writes the same bytes as before it existed
    (checked against a product made with directional=False explicitly)."""
    again = simulate.simulate_product(
        "31UFS", WHEN, "SENTINEL2A", tmp_path, SMALL, seed=4, cloud_cover=0.0
    )
    flat, _ = pair
    assert _read_band(again, "B8").tobytes() == _read_band(flat, "B8").tobytes()


def _read_band(path: Path, band: str) -> np.ndarray:
    import rasterio

    meta = muscate.parse_metadata(_xml(path))
    with rasterio.open(f"/vsizip/{path}/{meta.product_id}/{meta.product_id}_FRE_{band}.tif") as s:
        return s.read(1)


# --- from Items and settings -------------------------------------------------------------------


def _item(**properties: object) -> dict:
    asset = {"href": "s3://b/k.tif", "raster:bands": [{"scale": 1e-4, "nodata": -10000}]}
    assets = {f"FRE_{b}": asset for b in ("B2", "B3", "B4", "B8")}
    assets |= {f"{kind}_R1": asset for kind in ("CLM", "EDG", "ATB")}
    return {
        "id": "SENTINEL2A_20180710-105000-000_L2A_T31UFS_D_V1-8",
        "properties": {"platform": "SENTINEL2A", "datetime": "2018-07-10T10:50:00Z"} | properties,
        "assets": assets,
    }


def test_an_item_angles_drive_the_normalisation() -> None:
    from sansnuages.processing.tile_inputs import observation_from_item

    angles = {
        "view:sun_elevation": 56.0,
        "view:sun_azimuth": 140.0,
        "view:incidence_angle": 6.0,
        "view:azimuth": 285.0,
    }
    obs = observation_from_item(_item(**angles), nadir=True)
    assert obs.nadir is not None
    assert obs.nadir.geometry == brdf.ViewGeometry(34.0, 140.0, 6.0, 285.0)
    assert observation_from_item(_item(**angles)).nadir is None  # the setting is off
    del angles["view:azimuth"]
    assert observation_from_item(_item(**angles), nadir=True).nadir is None  # cannot normalise


def test_setting_reads_the_environment() -> None:
    from sansnuages.settings import Settings

    assert Settings.from_env({}).nadir_normalisation is True  # on: it lowers the error
    assert Settings.from_env({"NADIR_NORMALISATION": "true"}).nadir_normalisation is True
    assert Settings.from_env({"NADIR_NORMALISATION": "0"}).nadir_normalisation is False
    assert Settings.from_env({"NADIR_NORMALISATION": "False"}).nadir_normalisation is False


def test_cli_simulates_directional_products(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sansnuages.tools.cli import build_parser

    args = build_parser().parse_args(
        ["simulate", "--tiles", "31UFS", "--dates", "2018-07-01", "--resolution", "5490"]
        + ["--directional", "--out", str(tmp_path)]
    )
    assert args.func(args) == 0
    (path,) = tmp_path.glob("*.zip")
    assert muscate.view_angle_grid(_xml(path)) is not None


def test_a_window_is_normalised_band_by_band_with_shared_kernels() -> None:
    """`apply` computes the kernels once for a window's bands; each band's factor is still
    exactly `c_factor` of its coefficients at each pixel's angles."""
    grid = brdf.AngleGrid.from_angles(
        np.array([[2.0, 6.0], [4.0, 9.0]]), np.array([[100.0, 110.0], [280.0, 290.0]]),
        ulx=0.0, uly=20.0, step=20.0,
    )  # fmt: skip
    nadir = brdf.NadirNormalisation(brdf.ViewGeometry(35.0, 150.0, 5.0, 100.0, grid), 40.0)
    values = {b: np.full((4, 5), 0.25, np.float32) for b in ("B2", "B8", "XX")}
    out = nadir.apply(values, Affine(4.0, 0, 0, 0, -4.0, 20.0))
    cols, rows = np.meshgrid(np.arange(5) + 0.5, np.arange(4) + 0.5)
    zenith, azimuth = grid.at(4.0 * cols, 20.0 - 4.0 * rows)
    for band in ("B2", "B8"):
        coef = brdf.ROY_COEFFICIENTS[band]
        factor = brdf.c_factor(coef, 35.0, zenith, azimuth - 150.0, 40.0).astype(np.float32)
        assert out[band].tobytes() == (values[band] * factor).astype(np.float32).tobytes()
    assert out["XX"] is values["XX"]  # no coefficients: passed as it is
    assert not np.array_equal(out["B2"], out["B8"])
