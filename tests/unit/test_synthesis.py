"""Level-3A synthesis: the method on tiny arrays, then a small tile end to end."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from sansnuages.errors import NoInputs
from sansnuages.processing.synthesis import (
    FLAG_CLEAR,
    FLAG_CLOUD,
    FLAG_NO_DATA,
    FLAG_SNOW,
    FLAG_WATER,
    GridReader,
    GroupOutputs,
    Observation,
    OpenDatasets,
    OutputGrid,
    PixelState,
    RasterRef,
    aot_weight,
    choose,
    cloud_weight_coarse,
    date_weight,
    synthesize_group,
    upsample,
    weighted_composite,
)

# --- the method on arrays ----------------------------------------------------------------------


def _px(*values: float) -> np.ndarray:
    """Observations of a single pixel: shape (n_obs, 1, 1)."""
    return np.array(values, dtype=np.float32).reshape(-1, 1, 1)


def test_one_clear_observation_gives_its_value() -> None:
    mean, total = weighted_composite(_px(0.1234), _px(1) > 0, _px(0.7))
    assert mean[0, 0] == pytest.approx(0.1234)
    assert total[0, 0] == pytest.approx(0.7)


def test_two_clear_observations_give_the_weighted_mean() -> None:
    mean, total = weighted_composite(_px(0.1, 0.4), _px(1, 1) > 0, _px(3.0, 1.0))
    assert mean[0, 0] == pytest.approx((0.1 * 3 + 0.4 * 1) / 4)
    assert total[0, 0] == pytest.approx(4.0)


def test_cloudy_observation_is_left_out_of_the_mean() -> None:
    mean, total = weighted_composite(_px(0.1, 0.9), _px(1, 0) > 0, _px(1.0, 1.0))
    assert mean[0, 0] == pytest.approx(0.1)
    assert total[0, 0] == pytest.approx(1.0)


def test_no_clear_observation_gives_nan_and_zero_weight() -> None:
    mean, total = weighted_composite(_px(0.1, 0.2), _px(0, 0) > 0, _px(1.0, 1.0))
    assert np.isnan(mean[0, 0])
    assert total[0, 0] == 0


def _state(valid: list[int], clear: list[int], water: list[int], snow: list[int]) -> PixelState:
    return PixelState(
        valid=_px(*valid) > 0, clear=_px(*clear) > 0, water=_px(*water) > 0, snow=_px(*snow) > 0
    )


def test_all_cloudy_picks_the_lowest_blue() -> None:
    choice = choose(_state([1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]), _px(0.30, 0.05, 0.20))
    assert choice.fallback[0, 0] == 1
    assert choice.flags[0, 0] == FLAG_CLOUD


def test_lowest_blue_ignores_observations_outside_the_image() -> None:
    choice = choose(_state([1, 0], [0, 0], [0, 0], [0, 0]), _px(0.30, 0.01))
    assert choice.fallback[0, 0] == 0


def test_nothing_valid_gives_no_data() -> None:
    choice = choose(_state([0, 0], [0, 0], [0, 0], [0, 0]), _px(0.3, 0.2))
    assert choice.fallback[0, 0] == -1
    assert choice.flags[0, 0] == FLAG_NO_DATA


def test_clear_land_wins_over_snow_and_water() -> None:
    choice = choose(_state([1, 1], [1, 1], [1, 0], [0, 0]), _px(0.1, 0.1))
    assert choice.flags[0, 0] == FLAG_CLEAR
    assert choice.clear_land[:, 0, 0].tolist() == [False, True]
    assert choice.fallback[0, 0] == -1


def test_first_snow_or_water_observation_is_copied() -> None:
    snow_first = choose(_state([1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 1, 0]), _px(0.1, 0.5, 0.05))
    assert snow_first.fallback[0, 0] == 1
    assert snow_first.flags[0, 0] == FLAG_SNOW
    water_first = choose(_state([1, 1], [1, 1], [1, 0], [0, 1]), _px(0.1, 0.5))
    assert water_first.fallback[0, 0] == 0
    assert water_first.flags[0, 0] == FLAG_WATER


def test_date_weight_is_linear_from_one_to_half() -> None:
    assert date_weight(0, 23) == 1.0
    assert date_weight(23, 23) == pytest.approx(0.5)
    assert date_weight(-23, 23) == pytest.approx(0.5)
    assert date_weight(11.5, 23) == pytest.approx(0.75)
    assert date_weight(10, 23) == pytest.approx(1 - 10 / 23 * 0.5)  # not 1, as integer division
    assert date_weight(24, 23) == 0.0
    with pytest.raises(ValueError):
        date_weight(0, 0)


def test_aot_weight() -> None:
    weights = aot_weight(np.array([0.0, 0.4, 0.8, 1.5, np.nan]))
    assert weights.tolist() == pytest.approx([1.0, 0.33 + 0.67 * 0.5, 0.33, 0.33, 0.33])


def test_cloud_weight_is_low_near_clouds_and_one_far_away() -> None:
    fraction = np.zeros((120, 120), dtype=np.float32)
    fraction[:10, :10] = 1.0
    weight = cloud_weight_coarse(fraction)
    assert weight[3, 3] < 0.2
    assert weight[100, 100] == pytest.approx(1.0, abs=1e-3)
    assert weight.min() > 0  # a clear pixel among clouds still counts


def test_upsample_is_bilinear_between_cell_centres() -> None:
    coarse = np.array([[0.0, 1.0]], dtype=np.float32)
    values = upsample(coarse, 4, slice(0, 1), slice(0, 8))
    # cell centres at pixels 1.5 and 5.5: constant outside, linear in between
    assert values[0].tolist() == pytest.approx([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])


# --- end to end on synthetic GeoTIFFs ----------------------------------------------------------

CRS = "EPSG:32631"
ORIGIN = (300000.0, 4900020.0)
SIZE = 600  # 10 m pixels: 6 km, more than one 512 window and one overview level
S2_AOT_DN, L8_AOT_DN = 40, 120  # AOT 0.2 and 0.6 with the 1/200 scale
CENTRE = date(2024, 1, 15)


def _write(path: Path, data: np.ndarray, pixel: float, dtype: str, nodata: float | None) -> str:
    transform = Affine(pixel, 0, ORIGIN[0], 0, -pixel, ORIGIN[1])
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
        dtype=dtype, crs=CRS, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data.astype(dtype), 1)
    return str(path)


def _observation(
    tmp: Path,
    name: str,
    pixel: float,
    reflectance: dict[str, int],
    cloud: np.ndarray,
    aot_dn: int,
    day: datetime,
    sensor_weight: float,
    scale: float = 1e-4,
) -> Observation:
    n = cloud.shape[0]
    refl = {
        band: RasterRef(
            _write(tmp / f"{name}_FRE_{band}.tif", np.full((n, n), dn), pixel, "int16", -10000),
            scale=scale,
        )
        for band, dn in reflectance.items()
    }
    clm = RasterRef(_write(tmp / f"{name}_CLM.tif", cloud, pixel, "uint8", None))
    edg = RasterRef(_write(tmp / f"{name}_EDG.tif", np.zeros((n, n)), pixel, "uint8", None))
    atb_path = _write(tmp / f"{name}_ATB.tif", np.full((n, n), aot_dn), pixel, "uint8", 0)
    atb = RasterRef(atb_path, scale=1 / 200)
    return Observation(
        product_id=name,
        platform=name,
        acquired=day,
        sensor_weight=sensor_weight,
        reflectance=refl,
        cloud=dict.fromkeys(refl, clm),
        edge=dict.fromkeys(refl, edg),
        aot=dict.fromkeys(refl, atb),
    )


def _outputs(tmp: Path) -> GroupOutputs:
    return GroupOutputs(
        frc={b: str(tmp / f"FRC_{b}.tif") for b in ("B2", "B4")},
        flags=str(tmp / "FLG.tif"),
        weights=str(tmp / "WGT.tif"),
        dates=str(tmp / "DTS.tif"),
    )


def _grid() -> OutputGrid:
    return OutputGrid(CRS, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), SIZE, SIZE)


def _read(path: str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _sentinel2(tmp: Path, cloud: np.ndarray) -> Observation:
    return _observation(
        tmp, "S2", 10, {"B2": 500, "B4": 1000}, cloud, S2_AOT_DN, datetime(2024, 1, 15, 10), 1.0
    )


def _landsat8(tmp: Path, cloud: np.ndarray, scale: float = 1e-4) -> Observation:
    """30 m pixels covering the 600 px tile with 200 px; reflectance may use another scale."""
    dn = {"B2": 800, "B4": 2000} if scale == 1e-4 else {"B2": 80, "B4": 200}
    return _observation(
        tmp, "L8", 30, dn, cloud, L8_AOT_DN, datetime(2024, 1, 20, 10), 0.33, scale=scale
    )


def test_clear_sentinel2_and_landsat8_give_the_weighted_mean(tmp_path: Path) -> None:
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    l8 = _landsat8(tmp_path, np.zeros((SIZE // 3, SIZE // 3)), scale=1e-3)
    outputs = _outputs(tmp_path)
    stats = synthesize_group([l8, s2], ("B2", "B4"), _grid(), CENTRE, 23, outputs, haze_scale=0)

    w_s2 = (0.33 + 0.67 * (1 - 0.2 / 0.8)) * 1.0 * 1.0
    w_l8 = (0.33 + 0.67 * (1 - 0.6 / 0.8)) * (1 - 5 / 23 * 0.5) * 0.33
    expected_b4 = (1000 * w_s2 + 2000 * w_l8) / (w_s2 + w_l8)
    frc = _read(outputs.frc["B4"])
    assert np.all(np.abs(frc.astype(float) - expected_b4) <= 1)
    assert np.all(_read(outputs.flags) == FLAG_CLEAR)
    assert np.all(_read(outputs.weights) == round((w_s2 + w_l8) * 1000))
    assert np.all(_read(outputs.dates) == round(5 * w_l8 / (w_s2 + w_l8)))
    assert stats.pixel_counts == {"no_data": 0, "cloud": 0, "snow": 0, "water": 0, "clear": SIZE**2}
    assert stats.contributing == ("S2", "L8")  # acquisition order, not input order


def test_clouds_select_the_clear_date_or_the_lowest_blue(tmp_path: Path) -> None:
    s2_cloud = np.zeros((SIZE, SIZE), dtype=np.uint8)
    s2_cloud[:300, :] = 1 | 2  # bit 0 set: not clear (other bits do not matter)
    l8_cloud = np.zeros((SIZE // 3, SIZE // 3), dtype=np.uint8)
    l8_cloud[:100, :100] = 1  # rows and columns 0..299 at 10 m: both dates cloudy there
    l8_cloud[100:, :] = 2  # bit 1 only: still clear
    outputs = _outputs(tmp_path)
    stats = synthesize_group(
        [_sentinel2(tmp_path, s2_cloud), _landsat8(tmp_path, l8_cloud)],
        ("B2", "B4"),
        _grid(),
        CENTRE,
        23,
        outputs,
        haze_scale=0,
    )
    frc, flags, dates = _read(outputs.frc["B4"]), _read(outputs.flags), _read(outputs.dates)
    wgt = _read(outputs.weights)
    # both cloudy: Sentinel-2 has the lower blue (500 < 800)
    assert np.all(flags[:300, :300] == FLAG_CLOUD)
    assert np.all(frc[:300, :300] == 1000)
    assert np.all(dates[:300, :300] == 0)
    assert np.all(wgt[:300, :300] == 0)
    # only Landsat-8 clear
    assert np.all(flags[:300, 300:] == FLAG_CLEAR)
    assert np.all(frc[:300, 300:] == 2000)
    assert np.all(dates[:300, 300:] == 5)
    # both clear far from the clouds: a mean, pulled towards Sentinel-2 by its weight
    assert np.all(flags[300:] == FLAG_CLEAR)
    assert np.all((frc[450:] > 1000) & (frc[450:] < 1500))
    # next to its clouds the Sentinel-2 weight drops: Landsat-8 counts more there
    assert frc[300, 590] > frc[599, 590] + 50
    assert stats.pixel_counts["cloud"] == 300 * 300
    assert stats.pixel_counts["clear"] == SIZE**2 - 300 * 300


def test_landsat8_footprint_edge_leaves_sentinel2_alone(tmp_path: Path) -> None:
    """Landsat-8 covers only the western third: elsewhere it must not count as cloud or data."""
    s2_cloud = np.zeros((SIZE, SIZE), dtype=np.uint8)
    s2_cloud[:, 400:] = 1
    s2 = _sentinel2(tmp_path, s2_cloud)
    l8 = _landsat8(tmp_path, np.zeros((SIZE // 3, SIZE // 3)))
    small = {}
    for band, ref in l8.reflectance.items():
        with rasterio.open(ref.path) as src:
            data = src.read(1)[:, :66]
            small[band] = RasterRef(
                _write(tmp_path / f"L8s_{band}.tif", data, 30, "int16", -10000), scale=1e-4
            )
    edg = RasterRef(_write(tmp_path / "L8s_EDG.tif", np.zeros((200, 66)), 30, "uint8", None))
    l8_small = Observation(
        "L8", "L8", l8.acquired, 0.33, small, l8.cloud, dict.fromkeys(small, edg), l8.aot
    )
    outputs = _outputs(tmp_path)
    synthesize_group([s2, l8_small], ("B2", "B4"), _grid(), CENTRE, 23, outputs)
    frc, flags, dts = _read(outputs.frc["B4"]), _read(outputs.flags), _read(outputs.dates)
    assert np.all(frc[:, 200:400] == 1000)  # Sentinel-2 only, even with its low weight
    assert np.all(dts[:, 200:400] == 0)
    assert np.all(flags[:, 400:] == FLAG_CLOUD)  # S2 cloudy, Landsat absent: cloudy S2 value
    assert np.all(frc[:, 400:] == 1000)


def test_nothing_valid_is_no_data(tmp_path: Path) -> None:
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    edg = RasterRef(_write(tmp_path / "EDG1.tif", np.ones((SIZE, SIZE)), 10, "uint8", None))
    outside = Observation(
        "S2", "S2", s2.acquired, 1.0, s2.reflectance, s2.cloud, dict.fromkeys(s2.edge, edg), s2.aot
    )
    outputs = _outputs(tmp_path)
    stats = synthesize_group([outside], ("B2", "B4"), _grid(), CENTRE, 23, outputs, block_size=256)
    assert np.all(_read(outputs.frc["B2"]) == -10000)
    assert np.all(_read(outputs.flags) == FLAG_NO_DATA)
    assert np.all(_read(outputs.dates) == -32768)
    assert stats.contributing == ()
    assert stats.pixel_counts["no_data"] == SIZE**2


def test_outputs_are_cloud_optimized(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    synthesize_group(
        [_sentinel2(tmp_path, np.zeros((SIZE, SIZE)))], ("B2", "B4"), _grid(), CENTRE, 23, outputs
    )
    expected = {
        outputs.frc["B2"]: ("int16", -10000),
        outputs.flags: ("uint8", 0),
        outputs.weights: ("int16", None),
        outputs.dates: ("int16", -32768),
    }
    for path, (dtype, nodata) in expected.items():
        with rasterio.open(path) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.profile["tiled"] and src.block_shapes == [(512, 512)]
            assert src.overviews(1) == [2]
            assert (src.dtypes[0], src.nodata) == (dtype, nodata)
            assert src.crs.to_epsg() == 32631 and src.transform == _grid().transform


def test_observations_outside_the_window_are_ignored(tmp_path: Path) -> None:
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    late = Observation(
        "late", "S2", datetime(2024, 2, 8), 1.0, s2.reflectance, s2.cloud, s2.edge, s2.aot
    )
    with pytest.raises(NoInputs):
        synthesize_group([late], ("B2", "B4"), _grid(), CENTRE, 23, _outputs(tmp_path))
    assert not Path(_outputs(tmp_path).flags).exists()


# --- additions: haze weight, band sets, pieces of one datatake ----------------------------------


def test_haze_weight_favours_the_darkest_clear_view() -> None:
    from sansnuages.processing.synthesis import haze_weight

    weight = haze_weight(_px(0.05, 0.07, 0.01), _px(1, 1, 0) > 0, scale=0.02)
    # the cloudy 0.01 is not the reference: the darkest *clear* view is
    assert weight[:, 0, 0].tolist() == pytest.approx([1.0, np.exp(-1.0), 1.0])
    assert np.all(haze_weight(_px(0.05, 0.3), _px(1, 1) > 0, scale=0) == 1)


def test_the_default_weights_are_wasp_v1_and_the_haze_weight_is_asked_for(
    tmp_path: Path,
) -> None:
    """By default the weights are WASP v1.0's (no haze weight); a haze scale pulls the mean
    towards the darker blue view (Sentinel-2's 500 against Landsat's 800)."""
    from sansnuages.processing.synthesis import DEFAULT_HAZE_SCALE, HAZE_BLUE_SCALE

    assert DEFAULT_HAZE_SCALE == 0 and HAZE_BLUE_SCALE > 0
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    l8 = _landsat8(tmp_path, np.zeros((SIZE // 3, SIZE // 3)))
    blue = {}
    for name, options in {
        "default": {},
        "v1": {"haze_scale": 0},
        "haze": {"haze_scale": HAZE_BLUE_SCALE},
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        outputs = _outputs(folder)
        synthesize_group([s2, l8], ("B2", "B4"), _grid(), CENTRE, 23, outputs, **options)  # type: ignore[arg-type]
        blue[name] = _read(outputs.frc["B2"]).astype(int)
    assert np.array_equal(blue["default"], blue["v1"])
    assert np.all(blue["haze"] < blue["v1"] - 20)


def test_band_sets_split_bands_landsat_lacks(tmp_path: Path) -> None:
    from sansnuages.processing.synthesis import band_sets

    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    l8 = _landsat8(tmp_path, np.zeros((SIZE // 3, SIZE // 3)))
    only_b2 = Observation(
        "L8", "L8", l8.acquired, 0.33, {"B2": l8.reflectance["B2"]}, l8.cloud, l8.edge, l8.aot
    )
    sets = band_sets([s2, only_b2], ("B2", "B4"))
    assert [(s.bands, s.observations) for s in sets] == [(("B2",), (0, 1)), (("B4",), (0,))]
    assert [s.bands for s in band_sets([s2], ("B2", "B4"))] == [("B2", "B4")]


def test_a_band_landsat_lacks_gets_its_own_flags(tmp_path: Path) -> None:
    """S2 cloudy on the left half, Landsat-8 clear everywhere but without B4: B2 is clear
    everywhere (from Landsat on the left), B4 is cloud there, and its own FLG says so."""
    from sansnuages.processing.synthesis import subset_path

    cloud = np.zeros((SIZE, SIZE), dtype=np.uint8)
    cloud[:, :300] = 1
    s2 = _sentinel2(tmp_path, cloud)
    l8 = _landsat8(tmp_path, np.zeros((SIZE // 3, SIZE // 3)))
    l8 = Observation(
        "L8", "L8", l8.acquired, 0.33, {"B2": l8.reflectance["B2"]}, l8.cloud, l8.edge, l8.aot
    )
    outputs = _outputs(tmp_path)
    stats = synthesize_group([s2, l8], ("B2", "B4"), _grid(), CENTRE, 23, outputs)
    assert stats.band_subsets == (("B4",),)
    assert np.all(_read(outputs.flags) == FLAG_CLEAR)
    assert np.all(_read(outputs.frc["B2"])[:, :290] == 800)  # Landsat's clear blue
    b4_flags = _read(subset_path(outputs.flags, ("B4",)))
    assert np.all(b4_flags[:, :300] == FLAG_CLOUD) and np.all(b4_flags[:, 300:] == FLAG_CLEAR)
    assert np.all(_read(outputs.frc["B4"]) == 1000)  # only Sentinel-2 has it
    assert np.all(_read(subset_path(outputs.weights, ("B4",)))[:, :300] == 0)
    assert subset_path("/x/P_FLG_R2.tif", ("B5", "B6")) == "/x/P_FLG_R2_B5B6.tif"


def test_pieces_of_one_datatake_count_once(tmp_path: Path) -> None:
    """Two pieces of the same day overlapping everywhere: the weight is that of one view."""
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    piece = Observation(
        "S2-piece", s2.platform, s2.acquired, 1.0, s2.reflectance, s2.cloud, s2.edge, s2.aot
    )
    outputs = _outputs(tmp_path)
    synthesize_group([s2, piece], ("B2", "B4"), _grid(), CENTRE, 23, outputs)
    single = (0.33 + 0.67 * (1 - 0.2 / 0.8)) * 1000
    assert np.all(np.abs(_read(outputs.weights) - single) <= 1)


def test_dates_are_right_across_new_year(tmp_path: Path) -> None:
    s2 = _sentinel2(tmp_path, np.zeros((SIZE, SIZE)))
    december = Observation(
        "S2-dec", "S2", datetime(2023, 12, 28, 10), 1.0, s2.reflectance, s2.cloud, s2.edge, s2.aot
    )
    outputs = _outputs(tmp_path)
    synthesize_group([december], ("B2", "B4"), _grid(), CENTRE, 23, outputs)
    assert np.all(_read(outputs.dates) == -18)  # 18 days before 15 January, not day 361


def test_groups_share_the_datasets_they_both_read(tmp_path: Path) -> None:
    """A tile's groups read some rasters alike (Landsat-8's masks, the blue band): given the
    same `OpenDatasets`, each is opened once, and the outputs are those of separate opens."""
    cloud = np.zeros((SIZE, SIZE))
    cloud[:200, :200] = 1
    observations = [_sentinel2(tmp_path, cloud), _landsat8(tmp_path, cloud[::3, ::3])]
    separate, shared = tmp_path / "separate", tmp_path / "shared"
    for folder in (separate, shared):
        folder.mkdir()
    with contextlib.ExitStack() as stack:
        datasets = OpenDatasets(stack)
        for band in ("B2", "B4"):  # two "groups" of one band each, both reading B2 and masks
            outputs = [
                replace(_outputs(f), frc={band: str(f / f"FRC_{band}.tif")})
                for f in (separate, shared)
            ]
            synthesize_group(observations, (band,), _grid(), CENTRE, 23, outputs[0])
            synthesize_group(
                observations, (band,), _grid(), CENTRE, 23, outputs[1], datasets=datasets
            )
            opened = len(datasets._open)
            for name in ("FRC_" + band, "FLG", "WGT", "DTS"):
                assert (
                    _read(str(separate / f"{name}.tif")).tobytes()
                    == _read(str(shared / f"{name}.tif")).tobytes()
                )
        assert opened == 10  # B2, B4, CLM, EDG and ATB of 2 dates, where each group opens 8 and 10
        path = observations[0].cloud["B2"].path
        assert GridReader(_grid(), stack, datasets=datasets)._source(path) is datasets.get(path)
