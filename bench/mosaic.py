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
import contextlib
import json
import resource
import shutil
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
from rasterio.windows import Window
from shapely.geometry import mapping

from sansnuages import areas
from sansnuages.formats import grid
from sansnuages.processing import mosaic
from sansnuages.processing.synthesis import RasterRef

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
                lon, lat = _lonlat(tile.epsg, tile.ulx, tile.uly, pixel, size, row, rows)
                window = rasterio.windows.Window(0, row, size, rows)
                for band, dst in enumerate(datasets):
                    dst.write(reflectance_dn(band, lon, lat), 1, window=window)
        finally:
            for dst in datasets:
                dst.close()
        out[name] = paths
    return out


def _lonlat(
    epsg: int, ulx: float, uly: float, pixel: float, size: int, row: int, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of a band of pixel centres: PROJ on a 1 km lattice, bilinear in
    between (well under a metre off; the field varies over tens of kilometres)."""
    step = 1000.0
    top = uly - row * pixel
    nx = int(np.ceil(size * pixel / step)) + 1
    ny = int(np.ceil(rows * pixel / step)) + 1
    node_x = ulx + np.arange(nx) * step
    node_y = top - np.arange(ny) * step
    mx, my = np.meshgrid(node_x, node_y)
    lon, lat = warp_points(f"EPSG:{epsg}", "EPSG:4326", mx.ravel(), my.ravel())
    fc = (np.arange(size) + 0.5) * pixel / step  # pixel centres in lattice units
    fr = (np.arange(rows) + 0.5) * pixel / step
    c0, r0 = np.minimum(fc.astype(int), nx - 2), np.minimum(fr.astype(int), ny - 2)
    wc, wr = (fc - c0)[None, :], (fr - r0)[:, None]

    def interpolate(values: list[float]) -> np.ndarray:
        nodes = np.asarray(values).reshape(ny, nx)
        top_row = nodes[r0][:, c0] * (1 - wc) + nodes[r0][:, c0 + 1] * wc
        bottom_row = nodes[r0 + 1][:, c0] * (1 - wc) + nodes[r0 + 1][:, c0 + 1] * wc
        return top_row * (1 - wr) + bottom_row * wr

    return interpolate(lon), interpolate(lat)


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
            extent_lonlat=grid.tile(name).footprint_lonlat(),
        )
        for name, paths in tiles.items()
    ]
    out = work / "sansnuages_mosaic.tif"
    # lossless, as the chain's output: the comparison is about the pixels, not the codec
    mosaic.build_mosaic(
        inputs, area.geometry, str(out), crs=CRS, resolution=resolution, codec="deflate"
    )
    return out


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True)


# ------------------------------------------------------------------ comparison


def agreement(
    ours: Path, theirs: Path, tiles: Sequence[str], rows_per_block: int = 512
) -> tuple[float, int]:
    """Share of compared pixels within 1 DN, and how many were compared.

    Compared: valid in both, on the common grid, covered by exactly one tile (in overlaps the
    chain keeps the last file and this project the nearest centre, by design). Read by blocks
    of rows, so that the comparison of a 10 m mosaic fits in memory too.
    """
    feet = [
        shapely.geometry.shape(
            rasterio.warp.transform_geom("EPSG:4326", CRS, mapping(grid.tile(n).footprint_lonlat()))
        )
        for n in tiles
    ]
    for footprint in feet:
        shapely.prepare(footprint)
    close = compared = 0
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        if a.transform.a != b.transform.a:
            raise ValueError("the two mosaics are not at the same resolution")
        left = max(a.bounds.left, b.bounds.left)
        top = min(a.bounds.top, b.bounds.top)
        right = min(a.bounds.right, b.bounds.right)
        bottom = max(a.bounds.bottom, b.bounds.bottom)
        wa = a.window(left, bottom, right, top).round_offsets().round_lengths()
        wb = b.window(left, bottom, right, top).round_offsets().round_lengths()
        width, height = int(wa.width), int(wa.height)
        for row in range(0, height, rows_per_block):
            rows = min(rows_per_block, height - row)
            da = a.read(window=Window(wa.col_off, wa.row_off + row, width, rows)).astype(np.int16)
            db = b.read(window=Window(wb.col_off, wb.row_off + row, width, rows)).astype(np.int16)
            affine = a.transform @ Affine.translation(wa.col_off, wa.row_off + row)
            xs = affine.c + (np.arange(width) + 0.5) * affine.a
            ys = affine.f + (np.arange(rows) + 0.5) * affine.e
            gx, gy = np.meshgrid(xs, ys)
            cover = sum(shapely.contains_xy(f, gx, gy).astype(np.int8) for f in feet)
            block = (cover == 1) & (da[0] > 0) & (db[0] > 0)
            compared += int(block.sum())
            close += int(((np.abs(da - db).max(axis=0) <= 1) & block).sum())
    if not compared:
        raise ValueError("no pixel to compare")
    return close / compared, compared


# ------------------------------------------------------------------ processes


def side_main(args: argparse.Namespace) -> None:
    """One side in this (fresh) process: prints its figures as JSON."""
    work = Path(args.work)
    tiles = json.loads((work / "tiles.json").read_text())
    tiles = {k: [Path(p) for p in v] for k, v in tiles.items()}
    out_dir = work / args.side
    shutil.rmtree(out_dir, ignore_errors=True)  # outputs of an earlier run (--work)
    out_dir.mkdir()
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
    listing = work / "tiles.json"
    if listing.is_file():  # inputs kept from an earlier run (--work)
        tiles = {k: [Path(p) for p in v] for k, v in json.loads(listing.read_text()).items()}
    else:
        tiles = simulate_tiles(names, pixel, work)
        listing.write_text(json.dumps({k: [str(p) for p in v] for k, v in tiles.items()}))
    simulated = time.monotonic() - started
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
    parser.add_argument(
        "--work", help="keep the simulated tiles and the outputs here (reused when run again)"
    )
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return
    with contextlib.ExitStack() as stack:
        folder = args.work or stack.enter_context(tempfile.TemporaryDirectory())
        Path(folder).mkdir(parents=True, exist_ok=True)
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
