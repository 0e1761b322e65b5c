"""Benchmark: a mosaic written as parts, with the peak memory of every step, at two area sizes.

Simulates the true-colour L3A tiles of each area (as `bench/mosaic.py` does), then follows the
steps of a mosaic in parts as the mosaic function runs them (`mosaic_job.Mosaicker`): the
cells of the fixed grid that meet the area's main piece (`mosaic_parts.cells_for`); one part
COG per cell (`mosaic.build_mosaic(..., cell=...)`), each in a fresh process as one function
invocation; then, in one more fresh process, the assembly: the VRT of the parts
(`mosaic_parts.vrt_xml`), the overview COG (`mosaic_parts.write_overview`) and the thumbnail
(`mosaic.write_preview_png`). Printed per area: the number of parts, the mosaic size, the peak
resident memory of the largest part invocation and of the assembly, and wall times.

The memory of a part does not depend on the size of the area (every part is at most
`--part-pixels` wide and reads only the tiles it meets); that of the assembly neither (it reads
the parts' overviews by windows and writes an overview at most 4096 pixels wide).

    .venv/bin/python bench/mosaic_parts.py --area Belgium --area France --pixel 100 \
        --resolution 100 --part-pixels 2048 --inputs /tmp/mosaic/parts-inputs
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import shapely
from rasterio.crs import CRS

from sansnuages import areas
from sansnuages.errors import NoInputs
from sansnuages.formats import grid
from sansnuages.processing import mosaic, mosaic_parts
from sansnuages.processing.mosaic import MosaicInput
from sansnuages.processing.synthesis import RasterRef

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mosaic as bench_mosaic  # noqa: E402  (bench/mosaic.py: the tile simulator)


def main_piece(area_spec: str) -> tuple[str, Any, str]:
    """(area id, main piece geometry in lon/lat, its CRS): what the mosaic job builds first."""
    area = areas.area_geometry(area_spec)
    piece = areas.area_parts(area)[0]
    return area.id, piece.geometry, piece.crs


def tile_inputs(area_spec: str, pixel: float, folder: Path) -> dict[str, list[str]]:
    """The simulated tiles of the area's main piece, made once and reused from `folder`."""
    listing = folder / "tiles.json"
    if listing.is_file():
        return dict(json.loads(listing.read_text()))
    _, geometry, _ = main_piece(area_spec)
    folder.mkdir(parents=True, exist_ok=True)
    tiles = bench_mosaic.simulate_tiles(grid.tiles_for_geometry(geometry), pixel, folder)
    found = {name: [str(p) for p in paths] for name, paths in tiles.items()}
    listing.write_text(json.dumps(found))
    return found


def mosaic_inputs(tiles: dict[str, list[str]]) -> list[MosaicInput]:
    return [
        MosaicInput(
            tile=name,
            red=RasterRef(paths[0], scale=1e-4),
            green=RasterRef(paths[1], scale=1e-4),
            blue=RasterRef(paths[2], scale=1e-4),
            flags=None,
            centre_lonlat=grid.tile(name).centre_lonlat,
            extent_lonlat=grid.tile(name).footprint_lonlat(),
        )
        for name, paths in tiles.items()
    ]


def plan(area_spec: str, tiles: dict[str, list[str]], resolution: float, part_pixels: int) -> Any:
    """The cells of the parts, as `mosaic_plan.part_cells` plans them."""
    _, geometry, crs = main_piece(area_spec)
    area = mosaic.area_in_crs(geometry, crs)
    feet = mosaic.footprints(mosaic_inputs(tiles), crs)
    covered = area.intersection(shapely.union_all(feet))
    return mosaic_parts.cells_for(covered, resolution, part_pixels)


# ------------------------------------------------------------------ steps (fresh processes)


def part_step(job: dict[str, Any]) -> dict[str, Any]:
    """One part invocation: `MosaicAssembly.write_part` without S3."""
    _, geometry, crs = main_piece(job["area"])
    out = Path(job["out"])
    try:
        mosaic.build_mosaic(
            mosaic_inputs(job["tiles"]),
            geometry,
            str(out),
            crs=crs,
            resolution=job["resolution"],
            cell=tuple(job["bounds"]),
        )
    except NoInputs:
        return {"written": False}
    return {"written": True, "bytes": out.stat().st_size}


def assemble_step(job: dict[str, Any]) -> dict[str, Any]:
    """The assembly: `MosaicAssembly.assemble` without S3 (VRT, overview COG, thumbnail)."""
    folder = Path(job["folder"])
    _, _, crs = main_piece(job["area"])
    parts = [mosaic_parts.part_source(p) for p in job["parts"]]
    _, width, height = mosaic_parts.union_grid(parts)
    vrt = folder / "mosaic.vrt"
    vrt.write_text(mosaic_parts.vrt_xml(parts, CRS.from_user_input(crs).to_wkt(), str(folder)))
    factor = mosaic_parts.overview_factor(width, height)
    overview = folder / "overview.tif"
    mosaic_parts.write_overview(str(vrt), str(overview), factor)
    mosaic.write_preview_png(str(overview), str(folder / "preview.png"))
    return {"width": width, "height": height, "factor": factor}


def run_step(step: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run a step in a fresh process; its result with wall seconds and peak RSS (MB)."""
    command = [sys.executable, __file__, "--step", step, "--job", json.dumps(job)]
    started = time.monotonic()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["seconds"] = time.monotonic() - started
    return result


def step_main(step: str, job: dict[str, Any]) -> None:
    result = part_step(job) if step == "part" else assemble_step(job)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# ------------------------------------------------------------------ one area


def bench_area(
    area_spec: str, pixel: float, resolution: float, part_pixels: int, inputs: Path, out: Path
) -> dict[str, Any]:
    started = time.monotonic()
    tiles = tile_inputs(area_spec, pixel, inputs / f"{area_spec}-{pixel:g}")
    simulated = time.monotonic() - started
    cells = plan(area_spec, tiles, resolution, part_pixels)
    folder = out / area_spec
    folder.mkdir(parents=True, exist_ok=True)
    parts, written = [], []
    for cell in cells:
        path = folder / f"{cell.name}.tif"
        job = {"area": area_spec, "tiles": tiles, "resolution": resolution,
               "bounds": list(cell.bounds), "out": str(path)}  # fmt: skip
        result = run_step("part", job)
        parts.append(result)
        if result["written"]:
            written.append(str(path))
    assembly = run_step("assemble", {"area": area_spec, "folder": str(folder), "parts": written})
    return {
        "area": area_spec,
        "tiles": len(tiles),
        "simulate_s": simulated,
        "parts": len(written),
        "cells": len(cells),
        "size": (assembly["height"], assembly["width"]),
        "part_peak_mb": max(p["peak_rss_mb"] for p in parts),
        "part_median_mb": statistics.median(p["peak_rss_mb"] for p in parts),
        "part_max_s": max(p["seconds"] for p in parts),
        "parts_s": sum(p["seconds"] for p in parts),
        "assemble_mb": assembly["peak_rss_mb"],
        "assemble_s": assembly["seconds"],
        "factor": assembly["factor"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--area", action="append", help="repeat for several areas")
    parser.add_argument("--pixel", type=float, default=100.0, help="input pixel size, m")
    parser.add_argument("--resolution", type=float, default=100.0, help="mosaic pixel size, m")
    parser.add_argument("--part-pixels", type=int, default=mosaic_parts.PART_PIXELS)
    parser.add_argument("--inputs", default="/tmp/mosaic-parts-inputs", help="simulated tiles")
    parser.add_argument("--out", default="/tmp/mosaic-parts-out", help="parts and assembly")
    parser.add_argument("--step", choices=("part", "assemble"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step_main(args.step, json.loads(args.job))
        return
    print(f"parts of {args.part_pixels} px, inputs at {args.pixel:g} m, mosaic at "
          f"{args.resolution:g} m; peak RSS of each step in a fresh process")  # fmt: skip
    header = ("area", "tiles", "parts", "mosaic px", "part peak MB", "median", "part max s",
              "parts s", "assemble MB", "assemble s")  # fmt: skip
    print(("{:<10}" + "{:>13}" * 9).format(*header))
    for area in args.area or ["Belgium", "France"]:
        f = bench_area(area, args.pixel, args.resolution, args.part_pixels,
                       Path(args.inputs), Path(args.out))  # fmt: skip
        size = f"{f['size'][1]}x{f['size'][0]}"
        print(("{:<10}{:>13}{:>13}{:>13}{:>13.0f}{:>13.0f}{:>13.1f}{:>13.1f}{:>13.0f}{:>13.1f}")
              .format(f["area"], f["tiles"], f"{f['parts']}/{f['cells']}", size,
                      f["part_peak_mb"], f["part_median_mb"], f["part_max_s"], f["parts_s"],
                      f["assemble_mb"], f["assemble_s"]), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
