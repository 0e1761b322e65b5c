"""A snow season on the embedded local AWS, from uploads to Items: a year of Let-It-Snow maps of
a known truth uploaded, the yearly schedule fired, one tile's season made by the composite
function through the monthly jobs' own machinery, its state read over the job routes, its
layers checked against the rules applied to what was uploaded, and a late map marking it stale.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from waiting import wait_for

from sansnuages import layout
from sansnuages.period import HydrologicalYear
from sansnuages.processing.snow_season import DatedCodes, daily_snow, season_of_window
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stac.collections import SNOW_L2B, SNOW_SEASONS
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.simulate import simulate_snow_product
from sansnuages.tools.simulate_snow import (
    SnowScene,
    SnowSceneSpec,
    simulate_snow_scene,
    write_season_products,
)

ROOT = Path(__file__).resolve().parents[2]
TILE = "31TCH"  # Andorra's tile
RESOLUTION = 1830.0  # R1 pixel size: the snow maps' R2 grid is 30 x 30 px
YEAR = HydrologicalYear(2018)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local")


@pytest.fixture(scope="module")
def runtime(workdir: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", workdir).start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def scene() -> SnowScene:
    spec = SnowSceneSpec(shape=(30, 30), s2_every=12, l8_every=32, seed=3)
    return simulate_snow_scene(YEAR, spec)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory, scene: SnowScene) -> list[Path]:
    return write_season_products(scene, TILE, tmp_path_factory.mktemp("snow"), RESOLUTION)


@pytest.fixture(scope="module")
def season(runtime: LocalRuntime, uploads: list[Path]) -> dict[str, Any]:
    """The uploads ingested, then the yearly schedule fired as on 20 September 2018."""
    client = RuntimeClient(runtime.facts())
    settings = client.settings()
    bucket = DataBucket(settings)
    catalog = Catalog(settings.catalog_table, settings=settings)
    for path in uploads:
        bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
    wait_for(
        lambda: len(catalog.search([SNOW_L2B], None, None, None, 1000, None).items) == len(uploads),
        what="every snow map indexed",
    )
    result = client.fire_schedule("PlanFunctionYearly", "2018-09-20T04:00:00+00:00")
    assert result["ok"], result.get("error_message")
    job_id = str(result["payload"]["job_id"])
    jobs = JobStore(settings)
    wait_for(lambda: _finished(jobs, job_id), what="the season job finished")
    return {"settings": settings, "bucket": bucket, "catalog": catalog, "job_id": job_id}


def _get(url: str) -> tuple[int, Any]:
    """GET a JSON document from the local API; a cold API function (a worker starting under
    load) may take tens of seconds on its first request."""
    try:
        with urllib.request.urlopen(url, timeout=180) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _finished(jobs: JobStore, job_id: str) -> bool:
    job = jobs.get(job_id)
    return job is not None and job.finished


def _season_item(catalog: Catalog) -> dict[str, Any]:
    (item,) = catalog.search([SNOW_SEASONS], None, None, None, 10, None).items
    return item


def test_the_yearly_schedule_makes_the_season_that_ended(season: dict[str, Any]) -> None:
    job = JobStore(season["settings"]).get(season["job_id"])
    assert job is not None and job.job_id == "snow-2018-AND" and job.product == "snow-season"
    assert [(t.tile, t.state) for t in job.tiles] == [(TILE, TileState.DONE)]
    assert job.state == JobState.DONE, job.reason
    item = _season_item(season["catalog"])
    assert job.tiles[0].item == layout.item_key(item)
    # its cost: the plan, the tile and the mosaic each recorded what they used
    usage = job.usage
    assert usage.invocations >= 3 and usage.gb_seconds > 0
    assert usage.s3_estimated > len(job.tiles) and usage.s3_gets > usage.s3_estimated
    assert usage.dynamodb_writes > 0 and usage.sqs_requests >= 2  # a tile and the mosaic


def test_the_job_routes_show_the_season_job(season: dict[str, Any], runtime: LocalRuntime) -> None:
    api = runtime.facts()["stac_api_url"]
    status, body = _get(f"{api}/jobs/{season['job_id']}")
    assert status == 200
    assert (body["product"], body["period"], body["state"]) == ("snow-season", "snow-2018", "done")
    assert body["counts"] == {"pending": 0, "done": 1, "failed": 0}
    status, _ = _get(f"{api}/jobs/snow-18-AND")
    assert status == 400


def _uploaded_codes(path: Path, grid: dict[str, Any]) -> DatedCodes:
    """A snow map as uploaded (read from the zip on this machine, not from the bucket), put on
    the season's grid by nearest neighbour: what the rules say the season reads."""
    with zipfile.ZipFile(path) as archive:
        (member,) = [n for n in archive.namelist() if "_SNW_" in n]
        platform = "landsat" if "_SNW_XS" in member else "sentinel"
        date = member.split("_")[1][:8]
    with rasterio.open(f"/vsizip/{path}/{member}") as src:
        codes = np.full((grid["height"], grid["width"]), 254, dtype=np.uint8)
        reproject(
            src.read(1),
            codes,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=grid["transform"],
            dst_crs=grid["crs"],
            resampling=Resampling.nearest,
            src_nodata=None,
            dst_nodata=None,
        )
    day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:]))
    return DatedCodes(day, codes, 1 if platform == "landsat" else 0)


def _layers(item: dict[str, Any], settings: Settings) -> dict[str, np.ndarray]:
    with gdal_env(settings):
        found = {}
        for name in ("SCD", "SOD", "SMOD", "NOBS", "NSP"):
            with rasterio.open(
                layout.vsi_path(*layout.split_s3_href(item["assets"][name]["href"]))
            ) as src:
                found[name] = src.read(1)
                grid = {
                    "height": src.height,
                    "width": src.width,
                    "transform": src.transform,
                    "crs": src.crs,
                }
        found["grid"] = grid  # type: ignore[assignment]
        return found


def test_the_layers_follow_the_rules_on_what_was_uploaded(
    season: dict[str, Any], uploads: list[Path], scene: SnowScene
) -> None:
    item = _season_item(season["catalog"])
    layers = _layers(item, season["settings"])
    grid: dict[str, Any] = layers.pop("grid")  # type: ignore[assignment]
    observations = [_uploaded_codes(path, grid) for path in uploads]
    expected = season_of_window(observations, YEAR).as_dict()
    for name, values in expected.items():
        assert np.array_equal(layers[name], values), name
    # and the truth: exact where it never changes (bare ground, glaciers), close elsewhere
    # (a map every 12 days, up to 70 % cloudy: interpolation decides between observations)
    truth = scene.truth_layers().scd.astype(int)
    seen = layers["NOBS"] > 0
    for constant in (0, YEAR.n_days):
        where = seen & (truth == constant)
        assert where.sum() >= 10 and (layers["SCD"][where] == constant).all()
    assert np.median(np.abs(layers["SCD"].astype(int) - truth)[seen]) <= 12


def test_the_item_says_what_went_in(season: dict[str, Any], scene: SnowScene) -> None:
    item = _season_item(season["catalog"])
    props = item["properties"]
    assert (props["start_datetime"][:10], props["end_datetime"][:10]) == (
        "2017-09-01",
        "2018-08-31",
    )
    landsat = sum(1 for p in scene.products if p.sensor == "L8")
    assert props["sansnuages:landsat8_observations"] == landsat
    assert props["sansnuages:sentinel2_observations"] == len(scene.products) - landsat
    derived = [link for link in item["links"] if link["rel"] == "derived_from"]
    assert len(derived) == len(scene.products)
    assert {
        a["raster:bands"][0].get("nodata")
        for k, a in item["assets"].items()
        if k in ("SCD", "SOD", "SMOD")
    } == {65535}
    assert item["assets"]["thumbnail"]["type"] == "image/png"


def test_the_tile_curve_is_the_mean_of_the_daily_series(
    season: dict[str, Any], uploads: list[Path]
) -> None:
    item = _season_item(season["catalog"])
    bucket: DataBucket = season["bucket"]
    curve = json.loads(
        bucket.get_bytes(layout.split_s3_href(item["assets"]["season-curve"]["href"])[1])
    )
    grid: dict[str, Any] = _layers(item, season["settings"])["grid"]  # type: ignore[assignment]
    observations = [_uploaded_codes(path, grid) for path in uploads]
    daily = daily_snow(observations, YEAR)
    with_season = season_of_window(observations, YEAR).nobs > 0
    expected = daily[:, with_season].mean(axis=1)
    assert len(curve["daily"]) == YEAR.n_days
    assert np.allclose([d["snow"] for d in curve["daily"]], expected, atol=1e-5)
    platforms = {p for obs in curve["observations"] for p in obs["platforms"]}
    assert platforms == {"sentinel-2a", "sentinel-2b", "landsat-8"}


def test_the_cli_starts_a_season_over_a_tile_list_and_waits_for_it(
    season: dict[str, Any],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sansnuages.tools.cli import main as cli

    monkeypatch.chdir(workdir)
    assert cli(["snow-season", "2018", "--tiles", "31TCH", "--area-name", "Andorra's tile"]) == 0
    output = capsys.readouterr().out
    job_id = next(
        word.rstrip(":") for word in output.split() if word.startswith("snow-2018-tiles-")
    )
    job = JobStore(season["settings"]).get(job_id)
    assert job is not None and job.state == JobState.DONE and [t.tile for t in job.tiles] == [TILE]
    assert cli(["snow-season", "18", "--tiles", "31TCH"]) == 2  # refused, one line, no traceback
    error = capsys.readouterr().err
    assert "snow season is a year" in error and "Traceback" not in error


def test_a_late_snow_map_marks_the_season_stale(season: dict[str, Any], tmp_path: Path) -> None:
    late = simulate_snow_product(
        TILE,
        YEAR.start_datetime.replace(hour=10),
        "SENTINEL2B",
        tmp_path,
        RESOLUTION,
        version="2-0",
    )
    bucket: DataBucket = season["bucket"]
    bucket.client.upload_file(str(late), bucket.name, f"incoming/{late.name}")
    catalog: Catalog = season["catalog"]
    wait_for(
        lambda: _season_item(catalog)["properties"].get("sansnuages:stale") is True,
        what="the season marked stale",
    )
    assert _season_item(catalog)["properties"]["sansnuages:late_inputs"] == [late.stem]


def _post(url: str, document: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=180) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_api_serves_the_tile_curve_as_stored_and_as_csv(
    season: dict[str, Any], runtime: LocalRuntime
) -> None:
    api = runtime.facts()["stac_api_url"]
    item = _season_item(season["catalog"])
    stored = json.loads(
        season["bucket"].get_bytes(layout.split_s3_href(item["assets"]["season-curve"]["href"])[1])
    )
    status, body = _get(f"{api}/seasons/curve?season=2018&tile=T31TCH")
    assert status == 200 and body == stored
    with urllib.request.urlopen(f"{api}/seasons/curve?season=2018&tile=31TCH&format=csv") as r:
        rows = r.read().decode().splitlines()
    assert rows[0] == "date,snow_gap_filled,observed,platforms,clear,snow_observed"
    assert len(rows) == 1 + YEAR.n_days
    observed = [row for row in rows[1:] if row.split(",")[2] == "1"]
    in_year = [o for o in stored["observations"] if "2017-09-01" <= o["date"] <= "2018-08-31"]
    assert len(observed) == len(in_year)


def _block_polygon(grid: dict[str, Any], rows: slice, cols: slice) -> dict[str, Any]:
    """A lon/lat polygon holding the centres of a block of the grid's pixels and no other."""
    from pyproj import Transformer

    t = grid["transform"]
    x0, y0 = t @ (cols.start + 0.25, rows.start + 0.25)
    x1, y1 = t @ (cols.stop - 0.25, rows.stop - 0.25)
    to_lonlat = Transformer.from_crs(grid["crs"], "EPSG:4326", always_xy=True)
    corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))
    ring = [list(to_lonlat.transform(x, y)) for x, y in corners]
    return {"type": "Polygon", "coordinates": [ring]}


def test_the_api_computes_a_polygon_curve_from_the_pixels_under_it(
    season: dict[str, Any], runtime: LocalRuntime, uploads: list[Path]
) -> None:
    """A polygon over a block of pixels: its curve is the daily series' mean over exactly the
    pixels whose centres it holds, from the maps as uploaded."""
    item = _season_item(season["catalog"])
    grid: dict[str, Any] = _layers(item, season["settings"])["grid"]  # type: ignore[assignment]
    rows, cols = slice(12, 18), slice(3, 9)  # mid-slope pixels, where snow comes and goes
    polygon = _block_polygon(grid, rows, cols)
    api = runtime.facts()["stac_api_url"]
    status, body = _post(f"{api}/seasons/curve", {"season": 2018, "geometry": polygon})
    assert status == 200, body
    observations = [_uploaded_codes(path, grid) for path in uploads]
    daily = daily_snow(observations, YEAR)[:, rows, cols]
    assert body["polygon_pixels"] == 36
    assert np.allclose([d["snow"] for d in body["daily"]], daily.mean(axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("season=2018", 400),  # neither a tile nor a polygon
        ("season=18&tile=31TCH", 400),
        ("season=2018&tile=../31TCH", 400),
        ("tile=31TCH", 400),
        ("season=2018&tile=31TCH&format=xml", 400),
        ("season=2018&tile=31TCH&bands=B2", 400),
        ("season=2016&tile=31TCH", 404),  # no such season made
    ],
)
def test_bad_curve_requests_are_refused_clearly(
    season: dict[str, Any], runtime: LocalRuntime, query: str, status: int
) -> None:
    got, body = _get(f"{runtime.facts()['stac_api_url']}/seasons/curve?{query}")
    assert got == status and "Traceback" not in json.dumps(body)


def test_a_polygon_over_more_pixels_than_the_limit_is_refused(season: dict[str, Any]) -> None:
    from sansnuages.api.limits import RequestLimits
    from sansnuages.api.season_routes import season_curve_response
    from sansnuages.errors import InvalidRequest

    item = _season_item(season["catalog"])
    grid: dict[str, Any] = _layers(item, season["settings"])["grid"]  # type: ignore[assignment]
    params = {"season": 2018, "geometry": _block_polygon(grid, slice(12, 18), slice(3, 9))}
    limits = RequestLimits(season_pixels=10)
    with pytest.raises(InvalidRequest, match="over the limit of 10"):
        season_curve_response(season["catalog"], season["bucket"], params, limits)


def test_the_cli_draws_the_season_plot(
    season: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sansnuages.tools.cli import build_parser
    from sansnuages.tools.reports import run_season_plot

    png, table = tmp_path / "season.png", tmp_path / "season.csv"
    args = build_parser().parse_args(
        ["season-plot", "2018", "--tile", "31TCH", "--png", str(png), "--csv", str(table)]
    )
    assert run_season_plot(args, season["settings"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert len(table.read_text().splitlines()) == 1 + YEAR.n_days
    assert "tile 31TCH" in capsys.readouterr().out


def test_the_viewer_draws_the_season_plot_of_a_clicked_point(
    season: dict[str, Any], runtime: LocalRuntime, tmp_path: Path
) -> None:
    """The season plot of a pixel, drawn by the viewer from the API's JSON: its snow days are
    the pixel's SCD in the season's COG, its observation days the API's."""
    import shutil
    import subprocess

    from pyproj import Transformer

    item = _season_item(season["catalog"])
    layers = _layers(item, season["settings"])
    grid: dict[str, Any] = layers.pop("grid")  # type: ignore[assignment]
    row, col = 14, 5
    x, y = grid["transform"] @ (col + 0.5, row + 0.5)
    lon, lat = Transformer.from_crs(grid["crs"], "EPSG:4326", always_xy=True).transform(x, y)
    api = runtime.facts()["stac_api_url"]
    status, curve = _get(f"{api}/seasons/curve?season=2018&lon={lon:.6f}&lat={lat:.6f}")
    assert status == 200 and curve["polygon_pixels"] == 1
    in_year = [o for o in curve["observations"] if curve["start"] <= o["date"] <= curve["end"]]
    seen = [o for o in in_year if o["snow"] is not None]
    sentinel2 = sum(1 for o in seen if any(p.startswith("sentinel-2") for p in o["platforms"]))
    landsat8 = sum(1 for o in seen if "landsat-8" in o["platforms"])
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install -y chromium (make browser)"
    url = f"{api}/viewer/AND?month=snow-2018&lon={lon:.6f}&lat={lat:.6f}"
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=900,800", "--virtual-time-budget=30000", "--dump-dom", url],
        check=True, capture_output=True, text=True, timeout=180,
    ).stdout  # fmt: skip
    assert 'id="season-panel"' in dom and 'data-state="drawn"' in dom, dom[-2000:]
    assert f'data-snow-days="{int(layers["SCD"][row, col])}"' in dom
    assert f'data-sentinel2="{sentinel2}"' in dom and f'data-landsat8="{landsat8}"' in dom
    assert '<section id="series-panel" hidden=""' in dom
