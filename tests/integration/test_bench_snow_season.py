"""bench/snow_season.py at a tiny size: the benchmark keeps running, its whole-cube numpy
implementation writes what `season_tile` writes, and the figures it reports are sane."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

BENCH = Path(__file__).resolve().parents[2] / "bench" / "snow_season.py"


def load_bench(monkeypatch: pytest.MonkeyPatch) -> object:
    spec = importlib.util.spec_from_file_location("snow_season_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "snow_season_bench", bench)  # dataclasses look it up
    spec.loader.exec_module(bench)
    return bench


def test_the_snow_season_benchmark_runs_at_a_tiny_size(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bench = load_bench(monkeypatch)
    argv = ["--size", "192", "--s2", "14", "--l8", "5", "--compare-size", "96"]
    figures = bench.main([*argv, "--workdir", str(tmp_path)])  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == figures
    assert figures["compare"]["identical"] == dict.fromkeys(
        ("SCD", "SOD", "SMOD", "NOBS", "NSP"), True
    )
    runs = [
        figures["season"],
        figures["floor"],
        figures["compare"]["season"],
        figures["compare"]["cube"],
    ]
    assert all(run["code"] == 0 and run["wall"] > 0 and run["cpu"] > 0 for run in runs)
    assert all(40 < run["rss_mb"] < 4000 for run in runs)
    assert figures["floor_ratio"] == pytest.approx(
        figures["season"]["wall"] / figures["floor"]["wall"]
    )
    assert figures["lambda_vcpu"] == pytest.approx(4096 / 1769)
    assert (figures["s2"], figures["l8"]) == (14, 5)
    assert "season / I/O floor" in out and "outputs identical: SCD yes" in out
    assert figures["floor_cpu_ratio"] == pytest.approx(
        figures["season"]["cpu"] / figures["floor"]["cpu"]
    )
    # the season's layers are not trivial: snow somewhere, no data where never clear
    folder = next(tmp_path.glob("snow-96px-*"))
    with rasterio.open(folder / "out-season" / "SCD.tif") as scd:
        values = scd.read(1)
    assert (values > 0).any() and (values == 0).any()
    # a second run reuses the inputs
    bench.main([*argv, "--workdir", str(tmp_path), "--compare-size", "0"])  # type: ignore[attr-defined]
    assert "reused" in capsys.readouterr().out


def test_the_plain_implementation_follows_the_rules_on_a_hand_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Snow seen on days 10 and 40, bare on 0 and 60: snow from day 5 (the midpoint rounds
    up) to day 50; a pixel never clear has no season."""
    bench = load_bench(monkeypatch)
    days = np.array([0, 10, 40, 60])
    snow = np.array([[0, 0], [1, 0], [1, 0], [0, 0]], bool)[:, None, :]
    clear = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], bool)[:, None, :]
    series = bench.daily_series(days, snow, clear, 70)  # type: ignore[attr-defined]
    assert np.flatnonzero(series[:, 0, 0]).tolist() == list(range(5, 51))
    assert not series[:, 0, 1].any()
    layers = bench.layers_of_series(series, clear.sum(axis=0))  # type: ignore[attr-defined]
    assert [int(layers[n][0, 0]) for n in ("SCD", "SOD", "SMOD", "NOBS", "NSP")] == [
        46,
        5,
        50,
        4,
        1,
    ]
    assert [int(layers[n][0, 1]) for n in ("SCD", "NOBS", "NSP")] == [65535, 0, 255]
