"""The mosaic benchmark at a small size: both sides run, and they agree where they should."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mosaic", ROOT / "bench" / "mosaic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gdal_chain_and_mosaic_agree_outside_overlaps(tmp_path: Path) -> None:
    assert shutil.which("gdalwarp"), "gdal-bin is missing: apt-get install -y gdal-bin"
    bench = _bench()
    figures = bench.benchmark("Belgium", pixel=1830.0, resolution=1830.0, work=tmp_path, limit=3)
    assert figures["tiles"] == 3
    assert figures["compared_pixels"] > 200
    assert figures["agreement"] >= 0.999
    for side in (figures["gdal"], figures["sansnuages"]):
        assert side.seconds > 0 and 0 < side.peak_rss_mb < 2048
        assert Path(side.path).is_file()
