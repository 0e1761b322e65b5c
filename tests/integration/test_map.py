"""The map: tiles and TileJSON of mosaics stored on the S3 server, and the viewer in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, mapping, shape

from sansnuages import layout
from sansnuages.api.map_routes import add_map_routes
from sansnuages.api.stac import make_resolver
from sansnuages.formats.colour_maps import SNOW_DAYS
from sansnuages.processing import mosaic
from sansnuages.raster import cog
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stages.publish import ensure_collection
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.local.http_front import HttpFront

AREA = Polygon([(4.0, 50.2), (5.6, 50.2), (5.6, 51.0), (4.0, 51.0)])
CRS, RES = "EPSG:3035", 500.0
COLOURS = {"2018-07": (200, 40, 160), "2018-08": (40, 200, 90)}
"""One flat, unmistakable colour per month: a screenshot shows which month was drawn."""


@dataclass(frozen=True)
class MapApi:
    url: str
    settings: Settings


DARK = (1, 1, 1)
"""The colour of the mosaic written with a lossy codec: its valid pixels may decode to 0."""
SEASON_DAYS = 120
"""The snow season's days of snow cover everywhere in AREA."""
SEASON_COLOUR = tuple(int(v) for v in SNOW_DAYS.rgba(np.array([SEASON_DAYS]))[:3, 0])


def _publish_mosaic(
    bucket: DataBucket, catalog: Catalog, month: str, codec: str = "deflate", area_id: str = "TST"
) -> str:
    """A small true-colour mosaic COG (flat colour inside AREA, 0 outside) and its Item; with
    a lossy codec (area TSW), no data is the COG's internal mask, as `build_mosaic` writes it."""
    area = shape(transform_geom("EPSG:4326", CRS, mapping(AREA)))
    left, bottom, right, top = (round(v / RES) * RES for v in area.bounds)
    width, height = int((right - left) / RES), int((top - bottom) / RES)
    affine = Affine(RES, 0, left, 0, -RES, top)
    inside = geometry_mask([mapping(area)], (height, width), affine, invert=True)
    colour = DARK if area_id == "TSW" else COLOURS[month]
    rgb = np.stack([np.where(inside, c, 0) for c in colour]).astype("uint8")
    item_id = f"mosaic-{area_id}-{month}"
    key = f"mosaics/{area_id}/{month.replace('-', '/')}/{item_id}.tif"
    compression = mosaic.codec_named(codec)
    with (
        gdal_env(bucket.settings),
        cog.cog_writer(
            layout.vsi_path(bucket.name, key),
            width=width, height=height, count=3, dtype="uint8", crs=CRS, transform=affine,
            nodata=None if compression.lossy else 0, photometric="RGB",
            masked=compression.lossy, **dict(compression.options),
        ) as dst,
    ):  # fmt: skip
        dst.write(mosaic.fill_outside(rgb, inside) if compression.lossy else rgb)
        if compression.lossy:
            dst.write_mask(inside.astype("uint8") * 255)
    ensure_collection(bucket, catalog, "mosaics")
    catalog.put_item(
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": item_id,
            "collection": "mosaics",
            "geometry": mapping(AREA),
            "bbox": list(AREA.bounds),
            "properties": {
                # the 46-day window of a month's synthesis starts in the month before
                "datetime": f"{month}-15T00:00:00Z",
                "start_datetime": f"{month[:5]}{int(month[5:]) - 1:02d}-23T00:00:00Z",
                "end_datetime": f"{month[:5]}{int(month[5:]) + 1:02d}-07T00:00:00Z",
                "sansnuages:area": "Testland",
                "sansnuages:area_id": area_id,
            },
            "links": [],
            "assets": {
                "visual": {
                    "href": layout.s3_href(bucket.name, key),
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "proj:transform": list(affine)[:6],
                    "proj:shape": [height, width],
                }
            },
        }
    )
    return item_id


def _publish_season(bucket: DataBucket, catalog: Catalog, area_id: str = "TST") -> str:
    """A snow season's mosaic as the mosaic stage writes it: uint16 days (SEASON_DAYS inside
    AREA, 65535 outside, nearest overviews), asset `SCD` naming its colour map."""
    area = shape(transform_geom("EPSG:4326", CRS, mapping(AREA)))
    left, bottom, right, top = (round(v / RES) * RES for v in area.bounds)
    width, height = int((right - left) / RES), int((top - bottom) / RES)
    affine = Affine(RES, 0, left, 0, -RES, top)
    inside = geometry_mask([mapping(area)], (height, width), affine, invert=True)
    days = np.where(inside, SEASON_DAYS, 65535).astype("uint16")
    item_id = f"mosaic-{area_id}-snow-2018"
    key = f"mosaics/{area_id}/2017/09/{item_id}.tif"
    with gdal_env(bucket.settings):
        cog.write_cog(
            layout.vsi_path(bucket.name, key), days, crs=CRS, transform=affine, nodata=65535,
            OVERVIEW_RESAMPLING="NEAREST",
        )  # fmt: skip
    ensure_collection(bucket, catalog, "mosaics")
    catalog.put_item(
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": item_id,
            "collection": "mosaics",
            "geometry": mapping(AREA),
            "bbox": list(AREA.bounds),
            "properties": {
                "datetime": "2017-09-01T00:00:00Z",
                "start_datetime": "2017-09-01T00:00:00Z",
                "end_datetime": "2018-08-31T23:59:59.999999Z",
                "sansnuages:area": "Testland",
                "sansnuages:area_id": area_id,
                "sansnuages:product": "snow-cover-duration",
                "sansnuages:period": "snow-2018",
            },
            "links": [],
            "assets": {
                "SCD": {
                    "href": layout.s3_href(bucket.name, key),
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "proj:transform": list(affine)[:6],
                    "proj:shape": [height, width],
                    "raster:bands": [{"data_type": "uint16", "nodata": 65535, "unit": "days"}],
                    "sansnuages:colour_map": "snow-days",
                }
            },
        }
    )
    return item_id


@pytest.fixture()
def map_api(function_settings: Settings) -> Iterator[MapApi]:
    bucket = DataBucket(function_settings)
    catalog = Catalog(function_settings.catalog_table, settings=function_settings)
    for month in COLOURS:
        _publish_mosaic(bucket, catalog, month)
    _publish_season(bucket, catalog)
    _publish_mosaic(bucket, catalog, "2018-07", codec="webp", area_id="TSW")
    app = add_map_routes(make_resolver(catalog, function_settings), catalog)
    front = HttpFront(lambda event, context: app.resolve(event, context)).start()
    yield MapApi(front.url, function_settings)
    front.stop()


def _png(data: bytes) -> np.ndarray:
    """(height, width, bands) of a PNG, read with GDAL (a PNG has no georeferencing)."""
    with warnings.catch_warnings(), rasterio.MemoryFile(data) as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open() as src:
            return np.moveaxis(src.read(), 0, -1)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_tilejson_and_a_tile_over_the_mosaic(map_api: MapApi) -> None:
    status, _, body = _get(f"{map_api.url}/map/mosaic-TST-2018-07/tilejson.json")
    assert status == 200
    document = json.loads(body)
    assert document["tilejson"] == "3.0.0"
    assert document["minzoom"] < document["maxzoom"]
    west, south, east, north = document["bounds"]
    assert west == pytest.approx(4.0) and north == pytest.approx(51.0)
    # zoom 10 tile holding (4.8 E, 50.6 N), inside the area: every pixel is the July colour
    url = document["tiles"][0].format(z=10, x=525, y=344)
    status, headers, png = _get(url)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert "max-age" in headers["Cache-Control"]
    rgba = _png(png)
    assert rgba.shape == (256, 256, 4)
    assert (rgba[..., 3] == 255).all()
    assert (np.abs(rgba[..., :3].astype(int) - COLOURS["2018-07"]) <= 1).all()
    again, _, _ = _get(url, {"If-None-Match": headers["ETag"]})
    assert again == 304


def test_tile_at_the_border_is_transparent_outside(map_api: MapApi) -> None:
    # zoom 8 tile spanning the area's western edge (4.0 E): part drawn, part transparent
    status, _, png = _get(f"{map_api.url}/map/mosaic-TST-2018-07/tiles/8/130/86.png")
    assert status == 200
    alpha = _png(png)[..., 3]
    assert 0 < (alpha == 255).mean() < 1
    assert set(np.unique(alpha).tolist()) <= {0, 255}


def test_a_lossy_mosaic_is_drawn_from_its_mask(map_api: MapApi) -> None:
    """WEBP-coded, masked: dark valid pixels (1, perhaps decoded as 0) are opaque, the outside
    transparent, at the border as inside."""
    for z, x, y, share in ((10, 525, 344, 1.0), (8, 130, 86, None)):
        status, _, png = _get(f"{map_api.url}/map/mosaic-TSW-2018-07/tiles/{z}/{x}/{y}.png")
        assert status == 200
        rgba = _png(png)
        opaque = rgba[..., 3] == 255
        assert set(np.unique(rgba[..., 3]).tolist()) <= {0, 255}
        if share is not None:
            assert opaque.mean() == share
        else:
            assert 0 < opaque.mean() < 1
        assert (rgba[..., :3][opaque] <= 2).all()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/map/mosaic-TST-2018-07/tiles/10/0/0.png", 404),  # outside the mosaic
        ("/map/mosaic-TST-2018-07/tiles/30/0/0.png", 404),  # outside the zoom range
        ("/map/mosaic-TST-2018-07/tiles/ten/0/0.png", 400),
        ("/map/no-such-mosaic/tilejson.json", 404),
        ("/map/areas/XXX", 404),
        ("/viewer/static/secrets.txt", 404),
    ],
)
def test_bad_map_requests(map_api: MapApi, path: str, status: int) -> None:
    assert _get(map_api.url + path)[0] == status


def test_months_of_an_area(map_api: MapApi) -> None:
    status, _, body = _get(f"{map_api.url}/map/areas/TST")
    assert status == 200
    document = json.loads(body)
    # the season starts on 1 September 2017: it comes first
    assert [m["month"] for m in document["months"]] == ["snow-2018", "2018-07", "2018-08"]
    assert [m["product"] for m in document["months"]] == [
        "snow-cover-duration",
        "true-colour",
        "true-colour",
    ]
    assert [p["product"] for p in document["products"]] == ["true-colour", "snow-cover-duration"]
    assert document["products"][1]["legend"] == SNOW_DAYS.legend()
    assert document["months"][0]["until"] == "2018-08"
    assert document["border"]["type"] == "Polygon"
    status, headers, script = _get(f"{map_api.url}/viewer/static/leaflet.js")
    assert status == 200 and b"Leaflet" in script[:2000]


def test_a_season_tile_is_drawn_in_its_colour_map_with_a_legend(map_api: MapApi) -> None:
    status, _, body = _get(f"{map_api.url}/map/mosaic-TST-snow-2018/tilejson.json")
    assert status == 200
    document = json.loads(body)
    assert document["sansnuages:product"] == "snow-cover-duration"
    assert document["sansnuages:legend"] == SNOW_DAYS.legend()
    status, _, png = _get(document["tiles"][0].format(z=10, x=525, y=344))  # inside the area
    assert status == 200
    rgba = _png(png)
    assert (rgba[..., 3] == 255).all()
    assert (rgba[..., :3] == SEASON_COLOUR).all()  # 120 days: the colour SNOW_DAYS gives
    status, _, png = _get(f"{map_api.url}/map/mosaic-TST-snow-2018/tiles/8/130/86.png")
    alpha = _png(png)[..., 3]
    assert status == 200 and 0 < (alpha == 255).mean() < 1  # 65535 outside: transparent
    status, _, legend = _get(f"{map_api.url}/map/mosaic-TST-snow-2018/legend.json")
    assert status == 200 and json.loads(legend) == SNOW_DAYS.legend()
    assert _get(f"{map_api.url}/map/mosaic-TST-2018-07/legend.json")[0] == 404


def _screenshot(url: str, folder: Path) -> np.ndarray:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install -y chromium (make browser)"
    out = folder / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            "--window-size=800,600",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _png(out.read_bytes())[..., :3].astype(int)


def _share_of(shot: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float((np.abs(shot - colour).max(axis=2) <= 3).mean())


@pytest.mark.parametrize(("month", "other"), [("2018-07", "2018-08"), ("2018-08", "2018-07")])
def test_viewer_draws_the_chosen_month(
    map_api: MapApi, tmp_path: Path, month: str, other: str
) -> None:
    shot = _screenshot(f"{map_api.url}/viewer/TST?month={month}", tmp_path)
    assert _share_of(shot, COLOURS[month]) > 0.2, "the mosaic is not drawn"
    assert _share_of(shot, COLOURS[other]) == 0.0
    assert _share_of(shot, SEASON_COLOUR) == 0.0


def test_the_built_core_layer_carries_the_map_library() -> None:
    """The viewer works offline on Lambda only if `sam build` copied Leaflet into the layer."""
    root = Path(__file__).resolve().parents[2]
    vendor = root / ".aws-sam/build/CoreLayer/python/sansnuages/api/viewer/vendor"
    assert (vendor / "leaflet.js").is_file(), "run `make sam` (npm ci, then sam build)"
    assert b"1.9.4" in (vendor / "leaflet.js").read_bytes()[:400]


def _dom(url: str, folder: Path) -> str:
    """The page's DOM once its scripts have run (virtual time: tiles and timers included)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install -y chromium (make browser)"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-sync", f"--user-data-dir={folder / 'profile'}", "--window-size=800,600",
         "--virtual-time-budget=20000", "--dump-dom", url],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip


LEGEND_ITEMS = [
    f'<li data-value="{s["value"]:g}" data-colour="{s["colour"]}">'
    for s in SNOW_DAYS.legend()["stops"]  # type: ignore[attr-defined]
]


@pytest.mark.parametrize(
    "query",
    ["month=snow-2018", "product=snow-cover-duration", "product=snow-cover-duration&month=2018-07"],
)
def test_viewer_draws_a_season_in_its_colours_with_the_legend(
    map_api: MapApi, tmp_path: Path, query: str
) -> None:
    url = f"{map_api.url}/viewer/TST?{query}"
    shot = _screenshot(url, tmp_path)
    assert _share_of(shot, SEASON_COLOUR) > 0.2, "the season is not drawn"
    assert all(_share_of(shot, colour) == 0.0 for colour in COLOURS.values())
    dom = _dom(url, tmp_path)
    assert 'data-product="snow-cover-duration"' in dom and 'data-state="drawn"' in dom
    assert '<figure id="legend" data-colour-map="snow-days">' in dom  # shown, not hidden
    assert all(item in dom for item in LEGEND_ITEMS)
    assert "Snow cover duration (days)" in dom
    assert '<span id="period-label">Season</span>' in dom
    assert '<option value="snow-2018">snow-2018</option>' in dom


def test_viewer_of_a_month_hides_the_legend(map_api: MapApi, tmp_path: Path) -> None:
    dom = _dom(f"{map_api.url}/viewer/TST?product=true-colour", tmp_path)
    assert 'data-product="true-colour"' in dom and 'data-state="drawn"' in dom
    assert '<figure id="legend" hidden="">' in dom
    assert '<option value="2018-08">2018-08</option>' in dom  # the latest month
    assert '<option value="snow-2018">' not in dom  # seasons are in the other product's list


SWITCH_PAGE = """<!doctype html><meta charset="utf-8">
<style>body{margin:0} iframe{border:0;width:800px;height:600px}</style>
<iframe id="viewer" src="viewer/TST?month=2018-07"></iframe>
<script>
  // Once the month is drawn, choose the season's product in the viewer's own select (as a
  // user does), then record what the viewer shows once it has drawn again.
  const frame = document.getElementById("viewer");
  const steps = [];
  function state() { return frame.contentDocument && frame.contentDocument.body.dataset.state; }
  function wait(check, then) {
    const timer = setInterval(() => { if (check()) { clearInterval(timer); then(); } }, 100);
  }
  frame.addEventListener("load", () => wait(() => state() === "drawn", () => {
    const doc = frame.contentDocument;
    steps.push(doc.body.dataset.product);
    const select = doc.getElementById("product");
    select.value = "snow-cover-duration";
    select.dispatchEvent(new Event("change"));
    wait(() => doc.body.dataset.product === "snow-cover-duration" && state() === "drawn", () => {
      steps.push(doc.body.dataset.product);
      document.body.dataset.steps = steps.join(",");
      document.body.dataset.legend = String(!doc.getElementById("legend").hidden);
      document.body.dataset.month = doc.getElementById("month").value;
      document.body.dataset.search = frame.contentWindow.location.search;
    });
  }));
</script>"""


def test_viewer_switches_from_a_month_to_a_season(map_api: MapApi, tmp_path: Path) -> None:
    """The product select switches the map in the same page: the season's colours replace the
    month's, the legend appears, the season list replaces the months, the URL follows."""
    catalog = Catalog(map_api.settings.catalog_table, settings=map_api.settings)
    app = add_map_routes(make_resolver(catalog, map_api.settings), catalog)

    def handler(event: dict[str, Any], context: Any) -> Any:
        if event["rawPath"] == "/switch":
            return {
                "statusCode": 200,
                "headers": {"content-type": "text/html"},
                "body": SWITCH_PAGE,
            }
        return app.resolve(event, context)

    front = HttpFront(handler).start()
    try:
        dom = _dom(f"{front.url}/switch", tmp_path)
        shot = _screenshot(f"{front.url}/switch", tmp_path)
    finally:
        front.stop()
    assert 'data-steps="true-colour,snow-cover-duration"' in dom
    assert 'data-legend="true"' in dom and 'data-month="snow-2018"' in dom
    assert "product=snow-cover-duration" in dom and "month=snow-2018" in dom
    assert _share_of(shot, SEASON_COLOUR) > 0.2, "the season is not drawn after the switch"
    assert _share_of(shot, COLOURS["2018-07"]) == 0.0
