"""Reflectance time series against simulated products: the values the route, the reader and
the command give at a point are the products' own pixels there, read independently from the
uploaded zips (Sentinel-2 at 10 000, Landsat-8 at 1 000 and on its own 30 m grid), and only
the newest version of a reprocessed product counts unless every version is asked."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.session
from api_handler import load_api_handler
from product_variants import SMALL
from pyproj import Transformer

from sansnuages.formats import grid
from sansnuages.settings import Settings
from sansnuages.stages.ingest import Ingestor, Outcome
from sansnuages.stores.timeseries import READ_THREADS
from sansnuages.tools.cli import main as cli
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.simulate import simulate_product

TILE = "31UFS"
S2B = datetime(2018, 7, 4, 10, 56, 26, 461000, tzinfo=UTC)
S2A = datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=UTC)
L8 = datetime(2018, 7, 9, 10, 30, 12, tzinfo=UTC)
LANDSAT_TWIN = {"B2": "B2", "B3": "B3", "B4": "B4", "B8": "B5", "B11": "B6"}


@dataclass
class Catalogued:
    url: str
    lon: float
    lat: float
    products: dict[str, Path]


def _point(offset_x: float, offset_y: float) -> tuple[float, float]:
    tile = grid.tile(TILE)
    x, y = tile.ulx + offset_x, tile.uly - offset_y
    lon, lat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(x, y)
    return float(lon), float(lat)


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("series")
    return {
        "old": simulate_product(TILE, S2B, "SENTINEL2B", out, SMALL, seed=11, cloud_cover=0.0),
        "new": simulate_product(
            TILE, S2B, "SENTINEL2B", out, SMALL, seed=12, cloud_cover=0.0, version="2-0"
        ),
        "s2a": simulate_product(TILE, S2A, "SENTINEL2A", out, SMALL, seed=13, cloud_cover=1.0),
        "l8": simulate_product(
            TILE,
            L8,
            "LANDSAT8-OLITIRS-XS",
            out,
            SMALL * 2 / 3,
            seed=14,
            version="1-9",
            cloud_cover=0.0,
        ),  # fmt: skip
    }


@pytest.fixture()
def catalogued(function_settings: Settings, zips: dict[str, Path]) -> Iterator[Catalogued]:
    ingestor = Ingestor.from_settings(function_settings)
    for path in zips.values():
        key = f"incoming/{path.name}"
        ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip")
        assert ingestor.ingest(key).outcome is Outcome.INGESTED
    front = HttpFront(load_api_handler()).start()
    lon, lat = _point(47_300.0, 52_100.0)
    yield Catalogued(front.url, lon, lat, zips)
    front.stop()


# --- what the products hold at the point, read from the zips ---------------------------------


def _member(path: Path, suffix: str) -> str:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(suffix)]
    assert len(names) == 1, (suffix, names)
    return f"/vsizip/{path}/{names[0]}"


def _pixel(path: Path, suffix: str, lon: float, lat: float, band: int = 1) -> float:
    with rasterio.open(_member(path, suffix)) as dataset:
        x, y = Transformer.from_crs(4326, dataset.crs.to_epsg(), always_xy=True).transform(lon, lat)
        row, col = dataset.index(x, y)
        return float(dataset.read(band, window=((row, row + 1), (col, col + 1)))[0, 0])


def _scale(path: Path) -> float:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("_MTD_ALL.xml"))
        text = archive.read(name).decode()
    match = re.search(r"<REFLECTANCE_QUANTIFICATION_VALUE>(\d+)<", text)
    assert match is not None
    return float(match.group(1))


def expected(path: Path, lon: float, lat: float, bands: list[str]) -> dict[str, Any]:
    landsat = "LANDSAT8" in path.name
    group = "XS" if landsat else "R1"
    scale = _scale(path)
    reflectance = {}
    for band in bands:
        name = LANDSAT_TWIN[band] if landsat else band
        reflectance[band] = _pixel(path, f"_FRE_{name}.tif", lon, lat) / scale
    clm = int(_pixel(path, f"_CLM_{group}.tif", lon, lat))
    edg = int(_pixel(path, f"_EDG_{group}.tif", lon, lat))
    return {
        "reflectance": reflectance,
        "aot": _pixel(path, f"_ATB_{group}.tif", lon, lat, band=2) / 200,
        "clear": clm & 1 == 0 and edg == 0,
        "cloud": float(clm & 2 != 0),
        "scale": scale,
    }


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def _series(served: Catalogued, **extra: str) -> dict[str, Any]:
    query = f"lon={served.lon}&lat={served.lat}&datetime=2018-06-01/2018-08-31"
    query += "".join(f"&{k}={v}" for k, v in extra.items())
    status, _, body = _get(f"{served.url}/timeseries?{query}")
    assert status == 200, body
    return dict(json.loads(body))


def _check(observation: dict[str, Any], want: dict[str, Any]) -> None:
    for band, value in want["reflectance"].items():
        assert observation["reflectance"][band] == pytest.approx(value, abs=1e-6), band
    assert observation["aot"] == pytest.approx(want["aot"], abs=1e-6)
    assert observation["clear"] is want["clear"]
    assert observation["flags"]["cloud"] == want["cloud"]


# --- the tests -------------------------------------------------------------------------------


def test_the_series_at_a_point_is_each_products_own_pixel(catalogued: Catalogued) -> None:
    bands = ["B2", "B4", "B8", "B11"]
    document = _series(catalogued, bands=",".join(bands))
    by_product = {o["product"]: o for o in document["observations"]}
    products = catalogued.products
    assert list(by_product) == [products["new"].stem, products["l8"].stem, products["s2a"].stem]
    for name in ("new", "l8", "s2a"):
        want = expected(products[name], catalogued.lon, catalogued.lat, bands)
        _check(by_product[products[name].stem], want)
    landsat = by_product[products["l8"].stem]
    assert expected(products["l8"], catalogued.lon, catalogued.lat, bands)["scale"] == 1000
    assert landsat["platform"] == "landsat-8"
    assert 0.01 < landsat["reflectance"]["B8"] < 1.0  # NIR from its B5, at 1/1000
    assert by_product[products["s2a"].stem]["clear"] is False  # a fully cloudy product
    first = document["observations"][0]
    assert first["sun_elevation"] is not None and first["view_incidence_angle"] is not None


def test_every_version_only_when_asked(catalogued: Catalogued) -> None:
    products = catalogued.products
    document = _series(catalogued, versions="all", bands="B3")
    by_product = {o["product"]: o for o in document["observations"]}
    assert set(by_product) == {p.stem for p in products.values()}
    old = expected(products["old"], catalogued.lon, catalogued.lat, ["B3"])
    new = expected(products["new"], catalogued.lon, catalogued.lat, ["B3"])
    assert old["reflectance"]["B3"] != new["reflectance"]["B3"]  # the test can tell them apart
    _check(by_product[products["old"].stem], old)
    assert by_product[products["old"].stem]["deprecated"] is True
    assert by_product[products["new"].stem]["deprecated"] is False


def test_csv_has_a_row_per_observation(catalogued: Catalogued) -> None:
    query = f"lon={catalogued.lon}&lat={catalogued.lat}&datetime=2018-07-01/2018-07-31&format=csv"
    status, media_type, body = _get(f"{catalogued.url}/timeseries?{query}")
    assert status == 200 and media_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["product"] for r in rows] == sorted(
        [catalogued.products[n].stem for n in ("new", "l8", "s2a")],
        key=lambda stem: [r["product"] for r in rows].index(stem),
    )
    want = expected(catalogued.products["l8"], catalogued.lon, catalogued.lat, ["B4"])
    row = next(r for r in rows if r["platform"] == "landsat-8")
    assert float(row["B4"]) == pytest.approx(want["reflectance"]["B4"], abs=1e-6)
    assert len(rows) == 3


def test_a_polygon_gives_the_mean_of_its_clear_pixels(catalogued: Catalogued) -> None:
    """A square of 2 x 2 pixels of the 10 m grid (1098 m here): the mean of their values."""
    tile = grid.tile(TILE)
    to_lonlat = Transformer.from_crs(tile.epsg, 4326, always_xy=True)
    x0, y0 = tile.ulx + 40 * SMALL + 10, tile.uly - 40 * SMALL - 10
    corners = [(x0, y0), (x0 + 2 * SMALL - 20, y0), (x0 + 2 * SMALL - 20, y0 - 2 * SMALL + 20),
               (x0, y0 - 2 * SMALL + 20), (x0, y0)]  # fmt: skip
    ring = [list(to_lonlat.transform(x, y)) for x, y in corners]
    body = json.dumps({"geometry": {"type": "Polygon", "coordinates": [ring]},
                       "datetime": "2018-07-04/2018-07-04", "bands": ["B4"]}).encode()  # fmt: skip
    request = urllib.request.Request(f"{catalogued.url}/timeseries", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        document = json.loads(response.read())
    [observation] = document["observations"]
    path = catalogued.products["new"]
    with rasterio.open(_member(path, "_FRE_B4.tif")) as dataset:
        values = dataset.read(1, window=((40, 42), (40, 42))).astype(float) / 10000
    with rasterio.open(_member(path, "_CLM_R1.tif")) as dataset:
        clear = (dataset.read(1, window=((40, 42), (40, 42))) & 1) == 0
    assert observation["pixels"] == 4
    assert observation["clear_fraction"] == pytest.approx(clear.mean())
    assert observation["reflectance"]["B4"] == pytest.approx(
        float(np.mean(values[clear] if clear.any() else values)), abs=1e-6
    )


def test_the_command_prints_the_series_and_draws_the_plot(
    catalogued: Catalogued, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "stability.png"
    args = ["timeseries", "--from-env", "--lon", str(catalogued.lon), "--lat",
            str(catalogued.lat), "--from", "2018-07-01", "--to", "2018-07-31", "--json",
            "--png", str(png)]  # fmt: skip
    assert cli(args) == 0
    out = capsys.readouterr().out
    document = json.loads(out[: out.rindex("}") + 1])
    assert len(document["observations"]) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with rasterio.open(png) as image:
        pixels = image.read()
    assert image.width > 600 and pixels.std() > 10  # a drawing, not a blank page


def test_a_warm_function_sets_nothing_up_again(
    catalogued: Catalogued, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served from a thread without GDAL's environment (the local HTTP front's), a request
    makes no AWS session (rasterio would make one, about 17 ms of CPU, for each product's
    window), and the reader threads of the first request serve the next ones."""
    sessions: list[object] = []
    made = rasterio.session.AWSSession.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        sessions.append(self)
        made(self, *args, **kwargs)

    _series(catalogued, bands="B2")

    def readers() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("series-read")}

    first = readers()
    monkeypatch.setattr(rasterio.session.AWSSession, "__init__", counted)
    for extra in ({"bands": "B2"}, {"bands": "B3,B4"}):
        assert len(_series(catalogued, **extra)["observations"]) == 3
    assert sessions == []
    assert first and first <= readers() and len(readers()) <= READ_THREADS
