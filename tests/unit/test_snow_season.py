"""The snow-season core against hand-worked cases, its plain-Python reference and simulated
truth: Let-It-Snow's annual-map rules, plus SOD, SMOD, NOBS and NSP."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sansnuages.formats.snow import CLOUD, NODATA_V1, NODATA_V2
from sansnuages.processing.snow_season import (
    DAYS_NODATA,
    NSP_NODATA,
    DatedCodes,
    HydrologicalYear,
    SeasonLayers,
    daily_reference,
    daily_snow,
    decode,
    merge_same_day,
    season_of_window,
    season_reference,
)
from sansnuages.tools.simulate_snow import SnowScene, SnowSceneSpec, simulate_snow_scene

YEAR = HydrologicalYear(2019)  # 1 September 2018 .. 31 August 2019: 365 days
LEAP = HydrologicalYear(2020)  # 1 September 2019 .. 31 August 2020: 366 days
LAYERS = ("SCD", "SOD", "SMOD", "NOBS", "NSP")


def obs(day: int, codes: list[int], rank: int = 0, year: HydrologicalYear = YEAR) -> DatedCodes:
    """A one-row snow map on day `day` (days since 1 September), one code per pixel."""
    return DatedCodes(year.date_of(day), np.array([codes], dtype=np.uint8), rank)


def row(layers: SeasonLayers, name: str) -> list[int]:
    return [int(v) for v in layers.as_dict()[name][0]]


def assert_same(got: SeasonLayers, want: SeasonLayers, names: tuple[str, ...] = LAYERS) -> None:
    for name in names:
        a, b = got.as_dict()[name], want.as_dict()[name]
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def every_day(snow_days: list[set[int]], year: HydrologicalYear = YEAR) -> list[DatedCodes]:
    """Cloud-free maps every day of the year and margins; pixel i is snow on snow_days[i]."""
    days = range(-year.margin_days, year.n_days + year.margin_days)
    return [obs(d, [100 if d in s else 0 for s in snow_days], year=year) for d in days]


# --- the year ---------------------------------------------------------------------------------


def test_hydrological_year_bounds_margin_and_leap_day() -> None:
    assert (YEAR.start, YEAR.end, YEAR.n_days) == (dt.date(2018, 9, 1), dt.date(2019, 8, 31), 365)
    assert (LEAP.start, LEAP.end, LEAP.n_days) == (dt.date(2019, 9, 1), dt.date(2020, 8, 31), 366)
    assert LEAP.tag == "20190901_20200831"
    assert LEAP.day_index(dt.date(2020, 2, 29)) == 181
    assert LEAP.day_index(dt.datetime(2019, 9, 2, 10, 56)) == 1
    assert LEAP.date_of(365) == dt.date(2020, 8, 31)
    assert (LEAP.first_input, LEAP.last_input) == (dt.date(2019, 8, 17), dt.date(2020, 9, 15))
    assert LEAP.takes(dt.date(2019, 8, 17)) and LEAP.takes(dt.date(2020, 9, 15))
    assert not LEAP.takes(dt.date(2019, 8, 16)) and not LEAP.takes(dt.date(2020, 9, 16))
    with pytest.raises(ValueError):
        HydrologicalYear(2020, margin_days=-1)


@pytest.mark.parametrize(("year", "days"), [(YEAR, 365), (LEAP, 366)])
def test_snow_all_year_counts_every_day_including_29_february(
    year: HydrologicalYear, days: int
) -> None:
    maps = [obs(d, [100, 0], year=year) for d in range(-10, year.n_days + 10, 10)]
    layers = season_of_window(maps, year)
    assert row(layers, "SCD") == [days, 0]
    assert row(layers, "SOD") == [0, DAYS_NODATA]
    assert row(layers, "SMOD") == [days - 1, DAYS_NODATA]
    assert row(layers, "NSP") == [1, 0]


# --- codes and fusion ---------------------------------------------------------------------------


def test_decode_binary_fractional_cloud_and_both_no_data_values() -> None:
    codes = np.array([0, 1, 49, 50, 99, 100, 101, 150, CLOUD, NODATA_V1, NODATA_V2], np.uint8)
    snow, clear = decode(codes)
    assert clear.tolist() == [True] * 6 + [False] * 5
    assert snow.tolist() == [False, False, False, True, True, True] + [False] * 5
    snow_any, _ = decode(codes, snow_from=1)  # Let-It-Snow's newer `0 < v <= 100`
    assert snow_any.tolist() == [False] + [True] * 5 + [False] * 5
    for wrong in (0, 101):
        with pytest.raises(ValueError):
            decode(codes, snow_from=wrong)


def test_merge_same_day_first_clear_value_wins() -> None:
    s2 = np.array([0, 100, CLOUD, NODATA_V1, NODATA_V2, 30, CLOUD], np.uint8)
    l8 = np.array([100, 0, 100, 0, 100, 100, NODATA_V2], np.uint8)
    merged = merge_same_day([s2, l8])
    assert merged.tolist() == [0, 100, 100, 0, 100, 30, NODATA_V2]
    assert merge_same_day([l8, s2]).tolist() == [100, 0, 100, 0, 100, 100, CLOUD]
    with pytest.raises(ValueError):
        merge_same_day([])


def test_same_day_fusion_follows_rank_not_sequence_order_and_counts_one_observation() -> None:
    # One map a day around a single day 100; on day 100 Landsat-8 (rank 1) is listed first.
    base = [obs(d, [0, 0, 0, 0]) for d in range(-15, YEAR.n_days + 15) if abs(d - 100) > 20]
    landsat = obs(100, [100, 100, 100, 0], rank=1)
    sentinel = obs(100, [0, CLOUD, NODATA_V1, NODATA_V2])
    layers = season_of_window([*base, landsat, sentinel], YEAR)
    # Pixel 0: Sentinel-2 says no snow and wins. Pixels 1, 2: clouded / no data 254, Landsat-8
    # snow fills in: snow from the midpoint of 80..100 to that of 100..120, days 90..110.
    assert row(layers, "SCD") == [0, 21, 21, 0]
    assert row(layers, "SOD") == [DAYS_NODATA, 90, 90, DAYS_NODATA]
    assert row(layers, "SMOD") == [DAYS_NODATA, 110, 110, DAYS_NODATA]
    assert row(layers, "NOBS") == [len(base) + 1] * 4
    assert_same(layers, season_reference([*base, landsat, sentinel], YEAR))


def test_no_data_254_and_255_are_read_alike() -> None:
    maps = [obs(0, [100, 100]), obs(50, [NODATA_V1, NODATA_V2]), obs(100, [0, 0])]
    layers = season_of_window(maps, YEAR)
    assert row(layers, "SCD") == [51, 51]  # 0..50: up to the midpoint of 0..100, 0.5 is snow
    assert row(layers, "NOBS") == [2, 2]
    only_no_data = [obs(d, [NODATA_V1, NODATA_V2, CLOUD]) for d in (0, 50, 100)]
    assert row(season_of_window(only_no_data, YEAR), "NOBS") == [0, 0, 0]


def test_fractional_snow_from_50_percent_or_as_asked() -> None:
    maps = [obs(d, [49, 50, 1, 0]) for d in (0, 200)]
    assert row(season_of_window(maps, YEAR), "SCD") == [0, 365, 0, 0]
    assert row(season_of_window(maps, YEAR, snow_from=1), "SCD") == [365, 365, 365, 0]


# --- gap filling ----------------------------------------------------------------------------------


def test_threshold_half_counts_as_snow_at_the_midpoints() -> None:
    # 0 on day 10, 100 on 14, 0 on 17: 0.5 on day 12 is snow; 1/3 on day 16 is not.
    maps = [obs(10, [0]), obs(14, [100]), obs(17, [0])]
    daily = daily_snow(maps, YEAR)[:, 0, 0]
    assert np.flatnonzero(daily).tolist() == [12, 13, 14, 15]
    assert row(season_of_window(maps, YEAR), "SCD") == [4]


def test_before_the_first_and_after_the_last_clear_day_the_nearest_is_held() -> None:
    maps = [obs(100, [100, 0]), obs(110, [0, 100])]
    daily = daily_snow(maps, YEAR)[:, 0, :]
    assert daily[:106, 0].all() and not daily[106:, 0].any()
    assert not daily[:105, 1].any() and daily[105:, 1].all()
    assert row(season_of_window(maps, YEAR), "SCD") == [106, 365 - 105]


def test_margin_days_feed_the_interpolation_but_only_the_year_is_summed() -> None:
    n = YEAR.n_days
    # Snow 10 days before 1 September, none on day 20: snow on days 0..5 (midpoint 5).
    start = [obs(-10, [100]), obs(20, [0])]
    assert row(season_of_window(start, YEAR), "SCD") == [6]
    # No snow 9 days before 31 August, snow 5 days after it: snow from day n - 2.
    end = [obs(n - 9, [0]), obs(n + 5, [100])]
    assert np.flatnonzero(daily_snow(end, YEAR)[:, 0, 0]).tolist() == [n - 2, n - 1]
    # Margin observations count in NOBS, as in Let-It-Snow's compute_NOBS.
    assert row(season_of_window(start + end, YEAR), "NOBS") == [4]
    # A map one day beyond either margin is left out: otherwise day 0 would interpolate.
    beyond = [obs(-16, [100]), obs(20, [0]), obs(n + 15, [100])]
    layers = season_of_window(beyond, YEAR)
    assert (row(layers, "SCD"), row(layers, "NOBS")) == ([0], [1])


def test_a_pixel_never_clear_has_no_season() -> None:
    maps = [obs(d, [CLOUD, NODATA_V1, 100]) for d in range(0, 365, 5)]
    layers = season_of_window(maps, YEAR)
    assert row(layers, "SCD") == [DAYS_NODATA, DAYS_NODATA, 365]
    assert row(layers, "SOD") == [DAYS_NODATA, DAYS_NODATA, 0]
    assert row(layers, "SMOD") == [DAYS_NODATA, DAYS_NODATA, 364]
    assert row(layers, "NOBS") == [0, 0, 73]
    assert row(layers, "NSP") == [NSP_NODATA, NSP_NODATA, 1]
    outside = season_of_window([obs(-40, [100, 0])], YEAR)
    assert row(outside, "SCD") == [DAYS_NODATA] * 2 and row(outside, "NOBS") == [0, 0]


# --- SOD, SMOD, NSP -------------------------------------------------------------------------------


def test_longest_period_lasting_more_than_10_days_gives_sod_and_smod() -> None:
    pixels = [
        set(range(30, 40)),  # 10 days: too short
        set(range(30, 41)),  # 11 days
        set(range(10, 25)) | set(range(50, 65)),  # two of 15 days: the first
        set(range(10, 15)) | set(range(50, 70)),  # 5 then 20 days: the second
        set(range(-15, 6)) | set(range(100, 105)),  # under way on 1 September, then 5 days
        set(),
    ]
    layers = season_of_window(every_day(pixels), YEAR)
    assert row(layers, "SCD") == [10, 11, 30, 25, 11, 0]
    assert row(layers, "SOD") == [DAYS_NODATA, 30, 10, 50, DAYS_NODATA, DAYS_NODATA]
    assert row(layers, "SMOD") == [DAYS_NODATA, 40, 24, 69, DAYS_NODATA, DAYS_NODATA]
    assert row(layers, "NSP") == [1, 1, 2, 2, 2, 0]
    assert row(layers, "NOBS") == [395] * 6


def test_output_types() -> None:
    layers = season_of_window([obs(0, [100])], YEAR)
    types = {name: layer.dtype for name, layer in layers.as_dict().items()}
    assert types == dict(zip(LAYERS, [np.uint16] * 4 + [np.uint8], strict=True))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        season_of_window([], YEAR)
    with pytest.raises(ValueError):
        season_of_window([obs(0, [0]), obs(5, [0, 0])], YEAR)


# --- the vectorised core against the reference ----------------------------------------------------


def random_maps(seed: int, year: HydrologicalYear, count: int) -> list[DatedCodes]:
    """Any codes at all, on random days (some shared, some outside the margins), any rank."""
    rng = np.random.default_rng(seed)
    usual = np.array([0, 100, 100, CLOUD, NODATA_V1, NODATA_V2], np.uint8)
    maps = []
    for _ in range(count):
        day = int(rng.integers(-25, year.n_days + 25))
        codes = rng.choice(usual, size=(6, 7))
        odd = rng.random(codes.shape) < 0.2
        codes[odd] = rng.integers(0, 256, size=int(odd.sum()))
        maps.append(DatedCodes(year.date_of(day), codes, int(rng.integers(0, 3))))
    return maps


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_equals_reference_on_random_codes(seed: int) -> None:
    year = LEAP if seed % 2 else YEAR
    count = [1, 2, 3, 5, 8, 40][seed % 6]
    maps = random_maps(seed, year, count)
    assert_same(season_of_window(maps, year), season_reference(maps, year))
    np.testing.assert_array_equal(daily_snow(maps, year), daily_reference(maps, year))


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_equals_reference_on_simulated_seasons(seed: int) -> None:
    year = LEAP if seed % 2 else YEAR
    snow_from = 1 if seed == 3 else 50
    spec = SnowSceneSpec(shape=(12, 10), seed=seed, snow_from=snow_from, cloud_max=0.3 * seed)
    maps = simulate_snow_scene(year, spec).observations
    got = season_of_window(maps, year, snow_from=snow_from)
    assert_same(got, season_reference(maps, year, snow_from=snow_from))
    daily = daily_snow(maps, year, snow_from=snow_from)
    np.testing.assert_array_equal(daily, daily_reference(maps, year, snow_from=snow_from))
    never = got.nobs == 0
    np.testing.assert_array_equal(np.where(never, DAYS_NODATA, daily.sum(axis=0)), got.scd)


def test_windows_give_the_same_layers_as_the_whole() -> None:
    scene = simulate_snow_scene(YEAR, SnowSceneSpec(shape=(20, 18), seed=7))
    whole = season_of_window(scene.observations, YEAR)
    for rows, cols in ((slice(0, 7), slice(0, 18)), (slice(7, 20), slice(5, 11))):
        part = [DatedCodes(o.date, o.codes[rows, cols], o.rank) for o in scene.observations]
        got = season_of_window(part, YEAR)
        for name, layer in got.as_dict().items():
            np.testing.assert_array_equal(layer, whole.as_dict()[name][rows, cols], name)


# --- against simulated truth ----------------------------------------------------------------------


def test_the_simulated_truth_covers_the_cases() -> None:
    truth = simulate_snow_scene(LEAP, SnowSceneSpec(shape=(24, 24))).truth_layers()
    assert set(np.unique(truth.nsp)) == {0, 1, 2}
    assert (truth.scd == LEAP.n_days).any()  # glaciers
    assert ((truth.scd > 0) & (truth.sod == DAYS_NODATA)).any()  # short seasons only


@pytest.mark.parametrize(("year", "seed"), [(YEAR, 1), (LEAP, 2), (LEAP, 3)])
def test_cloud_free_daily_observations_recover_the_truth_exactly(
    year: HydrologicalYear, seed: int
) -> None:
    spec = SnowSceneSpec(
        shape=(24, 24), s2_every=1, cloud_max=0.0, missing=0.0, edge_share=0.0, seed=seed
    )
    scene = simulate_snow_scene(year, spec)
    assert_same(season_of_window(scene.observations, year), scene.truth_layers())
    np.testing.assert_array_equal(
        daily_snow(scene.observations, year), scene.truth_daily(0, year.n_days)
    )


@pytest.mark.parametrize("seed", range(3))
def test_cloudy_seasons_are_within_half_the_gap_around_each_transition(seed: int) -> None:
    """With one true snow period whose onset and melt fall inside the year, and clear days
    before, during and after it: the onset is off by at most half the gap between the clear
    days around it (g_on // 2), the melt likewise (g_off // 2), SCD by their sum, and NSP is 1.
    The rest (NOBS) is exact."""
    scene = simulate_snow_scene(YEAR, SnowSceneSpec(shape=(24, 24), seed=seed))
    got = season_of_window(scene.observations, YEAR)
    truth = scene.truth_layers()
    np.testing.assert_array_equal(got.nobs, truth.nobs)
    clear = scene.clear_days()
    checked = 0
    for pixel in np.ndindex(*got.scd.shape):
        bounds = gaps_around(scene, clear, (pixel[0], pixel[1]))
        if bounds is None:
            continue
        onset, melt, g_on, g_off = bounds
        length = melt - onset + 1
        assert got.nsp[pixel] == 1
        assert abs(int(got.scd[pixel]) - length) <= g_on // 2 + g_off // 2
        if length - g_on // 2 - g_off // 2 > 10:
            assert abs(int(got.sod[pixel]) - onset) <= g_on // 2
            assert abs(int(got.smod[pixel]) - melt) <= g_off // 2
        checked += 1
    assert checked > 150


def gaps_around(
    scene: SnowScene, clear: np.ndarray, pixel: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """(onset, melt, g_on, g_off) of a pixel's single in-year period with clear days before,
    during and after it, or None."""
    r, c = pixel
    first, last = scene.first[:, r, c], scene.last[:, r, c]
    periods = [(int(f), int(la)) for f, la in zip(first, last, strict=True) if f <= la]
    if len(periods) != 1 or not (0 < periods[0][0] and periods[0][1] < YEAR.n_days - 1):
        return None
    onset, melt = periods[0]
    days = np.flatnonzero(clear[:, r, c]) - YEAR.margin_days
    before, after = days[days < onset], days[days > melt]
    inside = days[(days >= onset) & (days <= melt)]
    if not (len(before) and len(inside) and len(after)):
        return None
    return onset, melt, int(inside[0] - before[-1]), int(after[0] - inside[-1])
