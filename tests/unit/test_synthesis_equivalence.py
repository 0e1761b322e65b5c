"""The synthesis gives the outputs of its first implementation (version of 2026-11-25, before
the reading and arithmetic were made faster) on a small scene with every feature that matters:
Sentinel-2 at 10 / 20 m and Landsat-8 at 30 m, clouds, partial footprints, missing
reflectance, unknown AOT, water and snow, two pieces of one datatake, windows that do not
divide the grid.

The reference outputs are in `data/synthesis_reference.npz`. Values may differ by 1 DN where
float32 arithmetic rounds differently from the float64 it replaced; flags must be identical.
Regenerate them (only when the method itself changes on purpose) with
`.venv/bin/python tests/unit/test_synthesis_equivalence.py`.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from sansnuages.processing import synthesis
from sansnuages.processing.synthesis import (
    GroupOutputs,
    Observation,
    OutputGrid,
    RasterRef,
    subset_path,
)

REFERENCE = Path(__file__).parent / "data" / "synthesis_reference.npz"
CRS = "EPSG:32631"
ORIGIN = (300000.0, 4900020.0)
SIZE = 144  # 10 m pixels; 72 at 20 m, 48 at 30 m
BLOCK = 48  # 9 windows at 10 m; 2 x 2 at 20 m, the second one partial
CENTRE = date(2024, 7, 15)
GROUPS = {"R1": ("B2", "B3", "B4", "B8"), "R2": ("B5", "B6", "B7", "B8A", "B11", "B12")}
LANDSAT = {"B2": "B2", "B3": "B3", "B4": "B4", "B8": "B5", "B8A": "B5", "B11": "B6", "B12": "B7"}


def _smooth(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1): coarse noise, bilinear-upsampled."""
    coarse = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, n, endpoint=False)
    low = np.floor(pos).astype(int)
    frac = pos - low
    rows = coarse[low] * (1 - frac)[:, None] + coarse[low + 1] * frac[:, None]
    return rows[:, low] * (1 - frac)[None, :] + rows[:, low + 1] * frac[None, :]


def _write(path: Path, data: np.ndarray, pixel: float, nodata: float | None) -> str:
    transform = Affine(pixel, 0, ORIGIN[0], 0, -pixel, ORIGIN[1])
    count = 1 if data.ndim == 2 else data.shape[0]
    bands = data.reshape(count, data.shape[-2], data.shape[-1])
    with rasterio.open(
        path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=count,
        dtype=str(data.dtype), crs=CRS, transform=transform, nodata=nodata, tiled=True,
        blockxsize=32, blockysize=32,
    ) as dst:  # fmt: skip
        dst.write(bands)
    return str(path)


def _date(
    folder: Path, name: str, seed: int, landsat: bool, footprint: str | None, wet: bool
) -> dict[str, Any]:
    """Files of one acquisition: reflectance, CLM, EDG, ATB (and MG2 for Sentinel-2) per
    group; `wet` dates see snow in the north-west corner."""
    rng = np.random.default_rng(seed)
    groups = {"XS": 3} if landsat else {"R1": 1, "R2": 2}
    refs: dict[str, Any] = {"reflectance": {}, "cloud": {}, "edge": {}, "aot": {}, "mg2": {}}
    files: dict[str, dict[str, RasterRef]] = {}
    for group, factor in groups.items():
        n, pixel = SIZE // factor, 10.0 * factor
        yy, xx = np.mgrid[0:n, 0:n] / n
        outside = np.zeros((n, n), bool)
        if footprint == "diagonal":
            outside = xx + yy > 1.3
        elif footprint == "west":
            outside = xx > 0.6
        elif footprint == "band":
            outside = (xx < 0.45) | (xx > 0.8)
        cloud = _smooth(rng, n, 4) > 0.5
        shadow = np.roll(cloud, (n // 12, n // 10), axis=(0, 1)) & ~cloud
        clm = np.where(cloud, 1 | 2 | 8, 0) | np.where(shadow, 1 | 32, 0)
        clm |= np.where(_smooth(rng, n, 6) > 0.8, 16, 0)  # thinnest clouds: bit 0 unset
        aot = (10 + 150 * _smooth(rng, n, 3)).astype(np.uint8)
        aot[rng.random((n, n)) < 0.01] = 0  # unknown AOT
        atb = np.stack([np.full((n, n), 40, np.uint8), aot])
        files[group] = {
            "cloud": RasterRef(
                _write(folder / f"{name}_CLM_{group}.tif", clm.astype(np.uint8), pixel, None)
            ),  # fmt: skip
            "edge": RasterRef(
                _write(folder / f"{name}_EDG_{group}.tif", outside.astype(np.uint8), pixel, None)
            ),  # fmt: skip
            "aot": RasterRef(_write(folder / f"{name}_ATB_{group}.tif", atb, pixel, 0), 2, 1 / 200),
        }
        if not landsat:  # a lake on every date, snow on the north-west corner on some
            lake = (xx - 0.3) ** 2 + (yy - 0.7) ** 2 < 0.02
            mg2 = np.where(lake, 1, 0) | np.where((xx < 0.15) & (yy < 0.3) & wet, 4, 0)
            files[group]["mg2"] = RasterRef(
                _write(folder / f"{name}_MG2_{group}.tif", mg2.astype(np.uint8), pixel, None)
            )
        files[group]["outside"] = outside  # type: ignore[assignment]
    for group, bands in GROUPS.items():
        for band in bands:
            source_group = "XS" if landsat else group
            source = LANDSAT.get(band) if landsat else band
            if source is None:
                continue
            n, pixel = SIZE // groups[source_group], 10.0 * groups[source_group]
            level = 300 + 2500 * _smooth(rng, n, 5) + rng.normal(0, 60, (n, n))
            haze = 200 * _smooth(rng, n, 2) if band == "B2" else 0
            dn = np.clip(level + haze, 1, 9000).astype(np.int16)
            dn[files[source_group]["outside"]] = -10000  # type: ignore[index]
            dn[rng.random((n, n)) < 0.003] = -10000  # a few missing pixels inside
            path = folder / f"{name}_FRE_{band}.tif"
            refs["reflectance"][band] = RasterRef(_write(path, dn, pixel, -10000), scale=1e-4)
            for key in ("cloud", "edge", "aot", "mg2"):
                if key in files[source_group]:
                    refs[key][band] = files[source_group][key]
    return refs


def scene(folder: Path) -> list[Observation]:
    """Five Sentinel-2 dates (two of them pieces of one datatake) and two Landsat-8 dates."""
    specs = [
        ("S2A", "SENTINEL2A", datetime(2024, 6, 24, 10), False, "diagonal", False),
        ("S2B", "SENTINEL2B", datetime(2024, 7, 4, 10), False, "diagonal", True),
        ("L8a", "LANDSAT8", datetime(2024, 7, 9, 10), True, "west", False),
        ("S2A2", "SENTINEL2A", datetime(2024, 7, 14, 10), False, "west", True),
        ("S2A2p", "SENTINEL2A", datetime(2024, 7, 14, 10, 0, 5), False, "band", False),
        ("L8b", "LANDSAT8", datetime(2024, 7, 25, 10), True, "west", False),
        ("S2B2", "SENTINEL2B", datetime(2024, 8, 3, 10), False, "diagonal", False),
    ]
    observations = []
    for seed, (name, platform, when, landsat, footprint, wet) in enumerate(specs):
        refs = _date(folder, name, seed, landsat, footprint, wet)
        observations.append(
            Observation(
                name,
                platform,
                when,
                0.33 if landsat else 1.0,
                refs["reflectance"],
                refs["cloud"],
                refs["edge"],
                refs["aot"],
                refs["mg2"] or None,
            )  # fmt: skip
        )
    return observations


def grids() -> dict[str, OutputGrid]:
    return {
        group: OutputGrid(
            CRS, Affine(10.0 * f, 0, ORIGIN[0], 0, -10.0 * f, ORIGIN[1]), SIZE // f, SIZE // f
        )
        for group, f in (("R1", 1), ("R2", 2))
    }


def run(module: Any, folder: Path, **options: Any) -> dict[str, np.ndarray]:
    """Every output layer of both groups, and the statistics, as arrays (`options` go to
    `synthesize_group`)."""
    observations = scene(folder)
    result: dict[str, np.ndarray] = {}
    for group, bands in GROUPS.items():
        outputs = GroupOutputs(
            frc={b: str(folder / f"FRC_{b}.tif") for b in bands},
            flags=str(folder / f"FLG_{group}.tif"),
            weights=str(folder / f"WGT_{group}.tif"),
            dates=str(folder / f"DTS_{group}.tif"),
        )
        stats = module.synthesize_group(
            observations, bands, grids()[group], CENTRE, 23, outputs, block_size=BLOCK, **options
        )
        paths = {f"FRC_{b}": p for b, p in outputs.frc.items()}
        for members in ((), *stats.band_subsets):
            suffix = "_" + "".join(members) if members else ""
            for name, path in (("FLG", outputs.flags), ("WGT", outputs.weights),
                               ("DTS", outputs.dates)):  # fmt: skip
                paths[f"{name}_{group}{suffix}"] = subset_path(path, members) if members else path
        for name, path in paths.items():
            with rasterio.open(path) as src:
                result[name] = src.read(1)
        facts = {"counts": stats.pixel_counts, "contributing": list(stats.contributing)}
        result[f"stats_{group}"] = np.array(json.dumps(facts, sort_keys=True))
    return result


@pytest.mark.parametrize("threads", [1, synthesis.READ_THREADS])
def test_outputs_match_the_first_implementation(tmp_path: Path, threads: int) -> None:
    expected = dict(np.load(REFERENCE))
    actual = run(synthesis, tmp_path, read_threads=threads)
    assert sorted(actual) == sorted(expected)
    for name, reference in expected.items():
        value = actual[name]
        if name.startswith(("stats", "FLG")):
            assert np.array_equal(value, reference), name
        else:
            difference = np.abs(value.astype(np.int32) - reference.astype(np.int32))
            assert difference.max() <= 1, (name, int(difference.max()))
    # the scene exercises what it claims to: every flag class in both groups
    for name in ("FLG_R1", "FLG_R2", "FLG_R2_B5B6B7"):
        assert np.unique(expected[name]).tolist() == [0, 1, 2, 3, 4], name


def test_masks_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cloud-distance pass reads each observation's EDG and CLM once per window and the
    synthesis pass takes them from it, reading none again."""
    calls: list[str] = []
    read_masks = synthesis._read_masks

    def counting(reader: Any, obs: Observation, band: str, window: Any) -> Any:
        calls.append(obs.product_id)
        return read_masks(reader, obs, band, window)

    monkeypatch.setattr(synthesis, "_read_masks", counting)
    observations = scene(tmp_path)
    outputs = GroupOutputs(
        frc={b: str(tmp_path / f"FRC_{b}.tif") for b in GROUPS["R1"]},
        flags=str(tmp_path / "FLG.tif"),
        weights=str(tmp_path / "WGT.tif"),
        dates=str(tmp_path / "DTS.tif"),
    )
    synthesis.synthesize_group(
        observations, GROUPS["R1"], grids()["R1"], CENTRE, 23, outputs, block_size=BLOCK
    )
    windows = (SIZE // BLOCK) ** 2
    assert sorted(calls) == sorted(o.product_id for o in observations for _ in range(windows))


if __name__ == "__main__":  # regenerate the reference with the implementation given, or this one
    import importlib.util
    import tempfile

    module: Any = synthesis
    if len(sys.argv) > 1:
        spec = importlib.util.spec_from_file_location("reference_synthesis", sys.argv[1])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["reference_synthesis"] = module
        spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = run(module, Path(tmp))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)  # type: ignore[arg-type]
    print(f"{REFERENCE}: {', '.join(sorted(arrays))}")
