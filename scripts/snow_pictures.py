"""Draw the README's two snow-season pictures from a season made end to end on the local runtime.

A year of simulated Let-It-Snow maps of tile 31TCH (Andorra) is uploaded, ingested, and the
yearly schedule is fired as on 20 September 2018: the season job makes the tile's layers and
Andorra's SCD mosaic. Then:

- `docs/season-plot.png`: the tile's season plot, drawn by the CLI's code (matplotlib);
- `docs/snow-viewer.png`: headless Chromium's screenshot of the map viewer showing the SCD
  mosaic with its legend and the season panel of a point.

    .venv/bin/python scripts/snow_pictures.py [--resolution 183] [--out docs]

The simulated truth puts snow along a gradient across the tile (higher towards the bottom
rows): the picture shows the machinery's output, not Andorra's real snow.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sansnuages.period import HydrologicalYear
from sansnuages.stac.collections import SNOW_L2B
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.progress import wait_for_job
from sansnuages.tools.reports import run_season_plot
from sansnuages.tools.simulate_snow import SnowSceneSpec, simulate_snow_scene, write_season_products

ROOT = Path(__file__).resolve().parents[1]
TILE = "31TCH"
YEAR = HydrologicalYear(2018)
POINT = (1.5209, 42.5463)  # lon, lat: Andorra's centre
TILE_R1_PX = 109800  # a tile's side in metres: the R2 grid is this over twice the resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=float, default=183.0, help="R1 pixel size, m")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    side = round(TILE_R1_PX / (2 * args.resolution))
    with tempfile.TemporaryDirectory() as scratch:
        runtime = LocalRuntime(ROOT / "template.yaml", Path(scratch) / "local").start()
        try:
            _make_season(runtime, Path(scratch), side, args.resolution)
            _draw(runtime, args.out, Path(scratch))
        finally:
            runtime.stop()


def _make_season(runtime: LocalRuntime, scratch: Path, side: int, resolution: float) -> None:
    spec = SnowSceneSpec(shape=(side, side), s2_every=5, l8_every=16, seed=3)
    uploads = write_season_products(simulate_snow_scene(YEAR, spec), TILE, scratch, resolution)
    client = RuntimeClient(runtime.facts())
    settings = client.settings()
    bucket = DataBucket(settings)
    for path in uploads:
        bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
    catalog = Catalog(settings.catalog_table, settings=settings)
    while len(catalog.search([SNOW_L2B], None, None, None, 1000, None).items) < len(uploads):
        time.sleep(1)
    print(f"{len(uploads)} snow maps ingested")
    result = client.fire_schedule("PlanFunctionYearly", "2018-09-20T04:00:00+00:00")
    if not result["ok"]:
        raise SystemExit(f"the yearly schedule failed: {result.get('error_message')}")
    job = wait_for_job(settings, str(result["payload"]["job_id"]))
    print(f"job {job.job_id}: {job.state}")


def _draw(runtime: LocalRuntime, out: Path, scratch: Path) -> None:
    settings = RuntimeClient(runtime.facts()).settings()
    plot = argparse.Namespace(season="2018", tile=TILE, polygon=None, json=False, csv=None)
    run_season_plot(argparse.Namespace(**vars(plot), png=out / "season-plot.png"), settings)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is missing: make browser")
    api = runtime.facts()["stac_api_url"]
    lon, lat = POINT
    url = f"{api}/viewer/AND?month=snow-2018&lon={lon}&lat={lat}"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--user-data-dir={scratch / 'profile'}",
         "--window-size=1100,900", "--virtual-time-budget=30000", "--hide-scrollbars",
         f"--screenshot={out / 'snow-viewer.png'}", url],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    print(f"pictures written: {out / 'season-plot.png'}, {out / 'snow-viewer.png'}")


if __name__ == "__main__":
    main()
