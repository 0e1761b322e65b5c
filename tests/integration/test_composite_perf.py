"""bench/composite_perf.py at a small size: the benchmark keeps running, and the synthesis
writes what the I/O floor writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "composite_perf.py"


def test_the_performance_benchmark_runs_at_a_small_size(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("composite_perf", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "composite_perf", bench)  # dataclasses look it up
    spec.loader.exec_module(bench)
    routes = "floor,floor_windows,synthesis"
    results = bench.main(["--size", "546", "--s2", "2", "--l8", "1", "--routes", routes])
    assert {route: run.code for route, run in results.items()} == dict.fromkeys(
        routes.split(","), 0
    )
    assert all(run.rss_mb > 50 and run.cpu > 0 for run in results.values())
    assert all(run.s3_cpu > 0 for run in results.values())  # every route reads from the server
    out = capsys.readouterr().out
    assert "synthesis / floor: " in out and "synthesis / floor_windows: " in out
    assert "the CPU with the S3 server's" in out
    assert f"of the {bench.composite_memory_mb()} MB the template gives" in out
