"""The viewer's panels in headless Chromium: the stability plot of a point and the production
counter, drawn by the page (uPlot, served by the API) from the routes' JSON."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from product_variants import SMALL
from pyproj import Transformer
from test_map import _png, _publish_mosaic

from sansnuages.formats import grid
from sansnuages.settings import Settings
from sansnuages.stages.ingest import Ingestor, Outcome
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.simulate import simulate_product

ROOT = Path(__file__).resolve().parents[2]
TILE = "31UFS"
BLUE, RED = (0x1F, 0x5F, 0xD6), (0xD6, 0x2A, 0x2A)  # B2 and B4 in panels.js
SENTINEL_2B, LANDSAT_8 = (0x62, 0xB0, 0xF0), (0xE0, 0x8A, 0x2C)  # sentinel-2a is cloudy


@dataclass
class Viewer:
    url: str
    lon: float
    lat: float


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("panels")
    at = datetime(2018, 7, 4, 10, 56, 26, 461000, tzinfo=UTC)
    return [
        simulate_product(TILE, at, "SENTINEL2B", out, SMALL, seed=11, cloud_cover=0.0),
        simulate_product(
            TILE, at.replace(day=14), "SENTINEL2A", out, SMALL, seed=13, cloud_cover=1.0
        ),  # fmt: skip
        simulate_product(
            TILE,
            datetime(2018, 7, 9, 10, 30, 12, tzinfo=UTC),
            "LANDSAT8-OLITIRS-XS",
            out,
            SMALL * 2 / 3,
            seed=14,
            version="1-9",
            cloud_cover=0.0,
        ),  # fmt: skip
    ]


@pytest.fixture()
def viewer(function_settings: Settings, zips: list[Path]) -> Iterator[Viewer]:
    ingestor = Ingestor.from_settings(function_settings)
    for path in zips:
        key = f"incoming/{path.name}"
        ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip")
        assert ingestor.ingest(key).outcome is Outcome.INGESTED
    _publish_mosaic(ingestor.bucket, ingestor.catalog, "2018-07")
    spec = importlib.util.spec_from_file_location(
        f"api_app_{uuid.uuid4().hex}", ROOT / "functions" / "api" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tile = grid.tile(TILE)
    lon, lat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(
        tile.ulx + 47_300.0, tile.uly - 52_100.0
    )
    with HttpFront(module.handler) as front:
        yield Viewer(front.url, float(lon), float(lat))


def _chromium(url: str, folder: Path, *what: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install -y chromium (make browser)"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-sync", f"--user-data-dir={folder / 'profile'}", "--window-size=900,800",
         "--virtual-time-budget=20000", *what, url],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _look(url: str, folder: Path) -> tuple[np.ndarray, str]:
    """A screenshot of the page, and its DOM once its scripts have run."""
    shot = folder / "shot.png"
    _chromium(url, folder, f"--screenshot={shot}")
    dom = _chromium(url, folder, "--dump-dom").stdout
    return _png(shot.read_bytes())[..., :3].astype(int), dom


def _pixels_of(shot: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(shot - colour).max(axis=2) <= 6).sum())


def test_a_point_shows_its_stability_plot(viewer: Viewer, tmp_path: Path) -> None:
    url = f"{viewer.url}/viewer/TST?month=2018-07&lon={viewer.lon:.6f}&lat={viewer.lat:.6f}"
    shot, dom = _look(url, tmp_path)
    assert 'id="series-panel"' in dom and 'data-state="drawn"' in dom
    assert 'data-observations="3"' in dom  # two Sentinel-2 dates and one Landsat-8
    assert 'data-clear="2"' in dom  # the cloudy date is drawn hollow
    panel = shot[shot.shape[0] // 3 :]
    assert _pixels_of(panel, BLUE) > 20 and _pixels_of(panel, RED) > 20, "no points drawn"


def test_the_production_panel_draws_daily_bars(viewer: Viewer, tmp_path: Path) -> None:
    shot, dom = _look(f"{viewer.url}/viewer/TST?month=2018-07&panel=production", tmp_path)
    assert 'id="production-panel"' in dom and 'data-acquired="2"' in dom  # cloudy left out
    panel = shot[shot.shape[0] // 3 :]
    assert _pixels_of(panel, SENTINEL_2B) > 20 and _pixels_of(panel, LANDSAT_8) > 20


def test_without_a_point_or_panel_the_map_stays_clear(viewer: Viewer, tmp_path: Path) -> None:
    _, dom = _look(f"{viewer.url}/viewer/TST?month=2018-07", tmp_path)
    assert '<section id="series-panel" hidden=""' in dom
    assert '<section id="production-panel" hidden=""' in dom
