"""Benchmark: codecs of the 8-bit true-colour mosaic COG, on a 10 m window across a border.

Simulates the FRC B4, B3, B2 bands of a square of tile 31UES at 10 m around the French-Belgian
border from the simulator's ground truth (lakes, fields, texture), optionally with per-pixel
noise standing in for the fine detail of real 10 m imagery, mosaics it over Belgium once per
codec of `mosaic.CODECS` (the mosaic function's code path), and compares each COG with the
lossless one: size, write time, PSNR and errors over the valid pixels, whether the mask (no
data, outside the border) is exact, and how many valid pixels decode to 0.

    .venv/bin/python bench/mosaic_codec.py --size 4096 --noise 0 --noise 0.004
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform as warp_points

from sansnuages import areas
from sansnuages.formats import grid
from sansnuages.formats.muscate import GroupGeometry
from sansnuages.processing import mosaic
from sansnuages.processing.synthesis import RasterRef
from sansnuages.tools import simulate

TILE = "31UES"
CENTRE_LONLAT = (3.25, 50.72)
"""On the border between Tournai and Lille."""
BANDS = ("B4", "B3", "B2")
PIXEL = 10.0


def simulate_bands(size: int, noise: float, folder: Path) -> list[str]:
    """FRC int16 DN (scale 1e-4) of a `size` px square of the tile around CENTRE_LONLAT."""
    tile = grid.tile(TILE)
    (x,), (y,) = warp_points(
        "EPSG:4326", f"EPSG:{tile.epsg}", [CENTRE_LONLAT[0]], [CENTRE_LONLAT[1]]
    )
    ulx = math.floor((x - size * PIXEL / 2) / PIXEL) * PIXEL
    uly = math.floor((y + size * PIXEL / 2) / PIXEL) * PIXEL
    geometry = GroupGeometry(ulx, uly, PIXEL, -PIXEL, size, size)
    rng = np.random.default_rng(7)
    paths = []
    for band in BANDS:
        reflectance = simulate.truth_reflectance(
            TILE, band, np.datetime64("2018-07-15").item(), geometry
        )
        if noise:
            reflectance = reflectance + rng.normal(0, noise, reflectance.shape).astype(np.float32)
        dn = np.clip(np.rint(reflectance * 10000), 1, 32767).astype("int16")
        path = folder / f"{TILE}_FRC_{band}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=size, height=size, count=1, dtype="int16",
            nodata=-10000, crs=f"EPSG:{tile.epsg}", transform=Affine(PIXEL, 0, ulx, 0, -PIXEL, uly),
            tiled=True, compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(dn, 1)
        paths.append(str(path))
    return paths


def run_codecs(paths: list[str], folder: Path) -> list[dict[str, object]]:
    inputs = [
        mosaic.MosaicInput(
            TILE,
            *(RasterRef(p, scale=1e-4) for p in paths),
            flags=None,
            centre_lonlat=grid.tile(TILE).centre_lonlat,
        )
    ]
    border = areas.area_geometry("Belgium").geometry
    rows: list[dict[str, object]] = []
    reference: np.ndarray | None = None
    valid: np.ndarray | None = None
    for name in mosaic.CODECS:
        out = folder / f"{name}.tif"
        started = time.monotonic()
        mosaic.build_mosaic(inputs, border, str(out), crs="EPSG:3035", resolution=PIXEL, codec=name)
        seconds = time.monotonic() - started
        with rasterio.open(out) as src:
            data = src.read()
            mask = src.dataset_mask() > 0
        if reference is None:  # the first codec, DEFLATE, is lossless: the reference
            reference, valid = data, data[0] != 0
        assert valid is not None
        error = np.abs(data.astype(np.int16) - reference.astype(np.int16))[:, valid]
        mse = float((error.astype(np.float64) ** 2).mean())
        rows.append({
            "codec": name,
            "mb": out.stat().st_size / 2**20,
            "seconds": seconds,
            "psnr": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
            "max": int(error.max()),
            "p999": float(np.percentile(error, 99.9)),
            "mask_exact": bool((mask == valid).all()),
            "zeros": int((data[:, valid] == 0).any(axis=0).sum()),
            "valid": int(valid.sum()),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096, help="window side, pixels of 10 m")
    parser.add_argument(
        "--noise", type=float, action="append", help="per-pixel reflectance noise (repeat)"
    )
    args = parser.parse_args()
    for noise in args.noise or [0.0]:
        with tempfile.TemporaryDirectory() as folder:
            paths = simulate_bands(args.size, noise, Path(folder))
            rows = run_codecs(paths, Path(folder))
        base = float(rows[0]["mb"])  # type: ignore[arg-type]
        print(f"{args.size} px at 10 m across the border, noise {noise:g} "
              f"({rows[0]['valid']} valid pixels)")  # fmt: skip
        print(f"{'codec':<15}{'MB':>8}{'vs deflate':>11}{'write s':>9}{'PSNR dB':>9}"
              f"{'max err':>8}{'p99.9':>7}{'mask exact':>11}{'valid->0':>9}")  # fmt: skip
        for r in rows:
            print(f"{r['codec']:<15}{r['mb']:>8.2f}{float(r['mb']) / base:>11.2f}"  # type: ignore[arg-type]
                  f"{r['seconds']:>9.1f}{r['psnr']:>9.1f}{r['max']:>8}{r['p999']:>7.0f}"
                  f"{str(r['mask_exact']):>11}{r['zeros']:>9}")  # fmt: skip


if __name__ == "__main__":
    main()
