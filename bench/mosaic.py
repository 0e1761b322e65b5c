"""Benchmark: the Theia GDAL command chain vs this project's mosaic, on the same L3A tiles.

Simulates the true-colour bands (FRC B4, B3, B2: int16 DN, nodata -10000) of the Sentinel-2
tiles of an area in their own UTM zones, from one smooth reflectance field of longitude and
latitude (so that tiles agree where they overlap, as real syntheses nearly do), then makes the
area's 8-bit true-colour mosaic twice, each in a fresh process:

- gdal: the chain the Theia team ran by hand (Debian gdal-bin): gdalwarp of every tile and band
  to the common CRS, gdalbuildvrt per band (last file wins in overlaps), gdalbuildvrt -separate,
  gdal_translate -ot Byte -scale 0 2000 1 255, gdalwarp -cutline -crop_to_cutline, COG;
- sansnuages: `mosaic.build_mosaic` (windows, nearest tile centre, 1..255, COG).

Both use the same grid (EPSG:3035, -tap) and bilinear resampling. Printed: wall time, peak
resident memory of each process (with its children), and the share of the pixels valid in
both, inside the border and covered by one tile only, whose values differ by at most 1 DN.

    .venv/bin/python bench/mosaic.py --area Belgium --pixel 60 --resolution 60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform as warp_points
from shapely.geometry import mapping

from sansnuages import areas, grid, mosaic
from sansnuages.synthesis import RasterRef

CRS = "EPSG:3035"
BANDS = ("B4", "B3", "B2")


@dataclass(frozen=True)
class Figures:
    side: str
    seconds: float
    peak_rss_mb: float
    path: str


# ------------------------------------------------------------------ inputs


def reflectance_dn(band: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A smooth field of DN 100..1900, different per band, continuous across tiles."""
    phase = band * 1.3
    wave = np.sin(lon * 2.1 + phase) * np.cos(lat * 3.7 - phase) + 0.3 * np.sin(lon * 11 + lat * 7)
    return (1000 + 700 * wave).astype("int16")


def simulate_tiles(names: Sequence[str], pixel: float, folder: Path) -> dict[str, list[Path]]:
    """FRC B4, B3, B2 GeoTIFFs of each tile (its UTM zone, `pixel` metres), by rows of blocks."""
    out = {}
    for name in names:
        tile = grid.tile(name)
        size = round(tile.size_m / pixel)
        affine = Affine(pixel, 0, tile.ulx, 0, -pixel, tile.uly)
        paths = [folder / f"{name}_FRC_{b}.tif" for b in BANDS]
        profile = dict(
            driver="GTiff", width=size, height=size, count=1, dtype="int16", nodata=-10000,
            crs=f"EPSG:{tile.epsg}", transform=affine, tiled=True, compress="deflate",
        )  # fmt: skip
        datasets = [rasterio.open(p, "w", **profile) for p in paths]
        try:
            for row in range(0, size, 512):
                rows = min(512, size - row)
                xs = tile.ulx + (np.arange(size) + 0.5) * pixel
                ys = tile.uly - (np.arange(row, row + rows) + 0.5) * pixel
                gx, gy = np.meshgrid(xs, ys)
                lon, lat = warp_points(f"EPSG:{tile.epsg}", "EPSG:4326", gx.ravel(), gy.ravel())
                lon = np.asarray(lon).reshape(gx.shape)
                lat = np.asarray(lat).reshape(gx.shape)
                window = rasterio.windows.Window(0, row, size, rows)
                for band, dst in enumerate(datasets):
                    dst.write(reflectance_dn(band, lon, lat), 1, window=window)
        finally:
            for dst in datasets:
                dst.close()
        out[name] = paths
    return out


# ------------------------------------------------------------------ the two sides


def run_gdal_chain(
    tiles: dict[str, list[Path]], border: Path, resolution: float, work: Path
) -> Path:
    """The command chain, one command at a time, as it was run by hand."""
    res = [str(resolution), str(resolution)]
    per_band: dict[str, list[str]] = {b: [] for b in BANDS}
    for name, paths in tiles.items():
        for band, path in zip(BANDS, paths, strict=True):
            warped = work / f"{name}_{band}_3035.tif"
            _run(["gdalwarp", "-q", "-t_srs", CRS, "-tr", *res, "-tap", "-r", "bilinear",
                  "-srcnodata", "-10000", "-dstnodata", "-10000", "-co", "TILED=YES",
                  str(path), str(warped)])  # fmt: skip
            per_band[band].append(str(warped))
    vrts = []
    for band in BANDS:
        vrt = work / f"{band}.vrt"
        _run(["gdalbuildvrt", "-q", "-srcnodata", "-10000", "-vrtnodata", "-10000", str(vrt),
              *per_band[band]])  # fmt: skip
        vrts.append(str(vrt))
    rgb = work / "rgb.vrt"
    _run(["gdalbuildvrt", "-q", "-separate", str(rgb), *vrts])
    byte = work / "rgb_byte.tif"
    _run(["gdal_translate", "-q", "-ot", "Byte", "-scale", "0", "2000", "1", "255",
          "-a_nodata", "0", "-co", "TILED=YES", str(rgb), str(byte)])  # fmt: skip
    cut = work / "rgb_cut.tif"
    _run(["gdalwarp", "-q", "-cutline", str(border), "-crop_to_cutline", "-tr", *res, "-tap",
          "-dstnodata", "0", "-co", "TILED=YES", str(byte), str(cut)])  # fmt: skip
    out = work / "gdal_mosaic.tif"
    _run(["gdal_translate", "-q", "-of", "COG", "-co", "COMPRESS=DEFLATE", str(cut), str(out)])
    return out


def run_sansnuages(
    tiles: dict[str, list[Path]], area_spec: str, resolution: float, work: Path
) -> Path:
    area = areas.area_geometry(area_spec)
    inputs = [
        mosaic.MosaicInput(
            tile=name,
            red=RasterRef(str(paths[0]), scale=1e-4),
            green=RasterRef(str(paths[1]), scale=1e-4),
            blue=RasterRef(str(paths[2]), scale=1e-4),
            flags=None,
            centre_lonlat=grid.tile(name).centre_lonlat,
        )
        for name, paths in tiles.items()
    ]
    out = work / "sansnuages_mosaic.tif"
    mosaic.build_mosaic(inputs, area.geometry, str(out), crs=CRS, resolution=resolution)
    return out


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True)


# ------------------------------------------------------------------ comparison


def agreement(ours: Path, theirs: Path, tiles: Sequence[str]) -> tuple[float, int]:
    """Share of compared pixels within 1 DN, and how many were compared.

    Compared: valid in both, on the common grid, covered by exactly one tile (in overlaps the
    chain keeps the last file and this project the nearest centre, by design).
    """
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        if a.transform.a != b.transform.a:
            raise ValueError("the two mosaics are not at the same resolution")
        left = max(a.bounds.left, b.bounds.left)
        top = min(a.bounds.top, b.bounds.top)
        right = min(a.bounds.right, b.bounds.right)
        bottom = max(a.bounds.bottom, b.bounds.bottom)
        wa = a.window(left, bottom, right, top).round_offsets().round_lengths()
        wb = b.window(left, bottom, right, top).round_offsets().round_lengths()
        da, db = a.read(window=wa).astype(int), b.read(window=wb).astype(int)
        affine = a.transform @ Affine.translation(wa.col_off, wa.row_off)
    h, w = da.shape[1:]
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = affine.c + cols * affine.a, affine.f + rows * affine.e
    cover = np.zeros((h, w), dtype=np.int32)
    for name in tiles:
        footprint = shapely.geometry.shape(
            rasterio.warp.transform_geom(
                "EPSG:4326", CRS, mapping(grid.tile(name).footprint_lonlat())
            )
        )
        cover += shapely.contains_xy(footprint, xs, ys)
    compared = (cover == 1) & (da[0] > 0) & (db[0] > 0)
    if not compared.any():
        raise ValueError("no pixel to compare")
    close = (np.abs(da - db).max(axis=0) <= 1) & compared
    return float(close.sum() / compared.sum()), int(compared.sum())


# ------------------------------------------------------------------ processes


def side_main(args: argparse.Namespace) -> None:
    """One side in this (fresh) process: prints its figures as JSON."""
    work = Path(args.work)
    tiles = json.loads((work / "tiles.json").read_text())
    tiles = {k: [Path(p) for p in v] for k, v in tiles.items()}
    out_dir = work / args.side
    out_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    if args.side == "gdal":
        path = run_gdal_chain(tiles, work / "border.geojson", args.resolution, out_dir)
    else:
        path = run_sansnuages(tiles, args.area, args.resolution, out_dir)
    seconds = time.monotonic() - started
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({"side": args.side, "seconds": seconds, "peak_rss_mb": peak_kb / 1024,
                      "path": str(path)}))  # fmt: skip


def run_side(side: str, work: Path, area: str, resolution: float) -> Figures:
    command = [sys.executable, __file__, "--side", side, "--work", str(work), "--area", area,
               "--resolution", str(resolution)]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return Figures(**json.loads(output.strip().splitlines()[-1]))


def benchmark(
    area_spec: str, pixel: float, resolution: float, work: Path, limit: int | None = None
) -> dict[str, object]:
    """Simulate, run both sides, compare; the figures as a dict (also used by the test)."""
    area = areas.area_geometry(area_spec)
    names = grid.tiles_for_geometry(area.geometry)[:limit]
    started = time.monotonic()
    tiles = simulate_tiles(names, pixel, work)
    simulated = time.monotonic() - started
    (work / "tiles.json").write_text(json.dumps({k: [str(p) for p in v] for k, v in tiles.items()}))
    border = {"type": "Feature", "properties": {}, "geometry": mapping(area.geometry)}
    (work / "border.geojson").write_text(json.dumps(border))
    gdal = run_side("gdal", work, area_spec, resolution)
    ours = run_side("sansnuages", work, area_spec, resolution)
    share, compared = agreement(Path(ours.path), Path(gdal.path), names)
    return {
        "area": area.name,
        "tiles": len(names),
        "tile_pixels": round(109800 / pixel),
        "resolution": resolution,
        "simulate_s": simulated,
        "gdal": gdal,
        "sansnuages": ours,
        "agreement": share,
        "compared_pixels": compared,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--area", default="Belgium")
    parser.add_argument("--pixel", type=float, default=60.0, help="input pixel size (10 = full)")
    parser.add_argument("--resolution", type=float, default=60.0, help="mosaic pixel size")
    parser.add_argument("--tiles", type=int, default=None, help="only the first N tiles")
    parser.add_argument("--side", choices=("gdal", "sansnuages"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        figures = benchmark(args.area, args.pixel, args.resolution, Path(folder), args.tiles)
    gdal, ours = figures["gdal"], figures["sansnuages"]
    assert isinstance(gdal, Figures) and isinstance(ours, Figures)
    print(
        f"{figures['area']}: {figures['tiles']} tiles of {figures['tile_pixels']} px, "
        f"mosaic at {figures['resolution']:g} m (simulated in {figures['simulate_s']:.0f} s)"
    )
    print(f"{'':<12}{'wall s':>9}{'peak RSS MB':>13}")
    for side in (gdal, ours):
        print(f"{side.side:<12}{side.seconds:>9.1f}{side.peak_rss_mb:>13.0f}")
    print(f"speed-up {gdal.seconds / ours.seconds:.2f}x")
    print(
        f"agreement {100 * float(figures['agreement']):.3f} % of {figures['compared_pixels']} "
        "pixels within 1 DN (single-tile pixels, valid in both)"
    )


if __name__ == "__main__":
    main()
