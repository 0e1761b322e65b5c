"""Hostile requests to the time series, season curve and production statistics routes, over real HTTP to the
API function's handler: each limit at its value (answered) and just past it (a 400 naming it),
malformed and deep input, never a 500, never a secret in a body, each within 2 s of handler
time; and a fuzz of their OpenAPI description."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from product_variants import SMALL
from pyproj import Transformer

from sansnuages.api.limits import LIMITS, RequestLimits
from sansnuages.api.stac import make_resolver
from sansnuages.api.timeseries_routes import add_timeseries_routes
from sansnuages.formats import grid
from sansnuages.settings import Settings
from sansnuages.stages.ingest import Ingestor, Outcome
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.simulate import simulate_product

ROOT = Path(__file__).resolve().parents[2]
HANDLER_SECONDS = 2.0
POINT = "lon=4.35&lat=50.85"


@dataclass
class Served:
    url: str
    canary: str
    seconds: list[float] = field(default_factory=list)


@pytest.fixture()
def served(function_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("SANSNUAGES_CANARY_TOKEN", canary)
    spec = importlib.util.spec_from_file_location(
        f"api_app_{uuid.uuid4().hex}", ROOT / "functions" / "api" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seconds: list[float] = []

    def timed(event: Any, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return module.handler(event, context)
        finally:
            seconds.append(time.perf_counter() - start)

    front = HttpFront(timed).start()
    yield Served(front.url, canary, seconds)
    front.stop()


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _ring(vertices: int, lon: float = 4.35, lat: float = 50.85, r: float = 0.001) -> list[Any]:
    points = [
        [lon + r * math.cos(2 * math.pi * k / (vertices - 1)),
         lat + r * math.sin(2 * math.pi * k / (vertices - 1))]
        for k in range(vertices - 1)
    ]  # fmt: skip
    return [*points, points[0]]


def _polygon_body(vertices: int) -> bytes:
    geometry = {"type": "Polygon", "coordinates": [_ring(vertices)]}
    return json.dumps({"geometry": geometry, "datetime": "2018-07-01/2018-07-31"}).encode()


def _season_body(vertices: int) -> bytes:
    geometry = {"type": "Polygon", "coordinates": [_ring(vertices)]}
    return json.dumps({"geometry": geometry, "season": 2018}).encode()


def _deep(levels: int) -> bytes:
    return ('{"geometry": ' + "[" * levels + "]" * levels + ', "datetime": "2018"}').encode()


HOSTILE: list[tuple[str, str, bytes | None, str]] = [
    ("no point", "/timeseries?datetime=2018-07-01/2018-07-31", None, "lon and lat"),
    ("no dates", f"/timeseries?{POINT}", None, "datetime is required"),
    ("open range", f"/timeseries?{POINT}&datetime=2018-07-01/..", None, "both ends"),
    ("range over the limit", f"/timeseries?{POINT}&datetime=2015-01-01/2018-01-02", None,
     "over the limit of 1,096 days"),
    ("latitude 91", "/timeseries?lon=4&lat=91&datetime=2018-07-01/2018-07-02", None, "latitude"),
    ("NaN", "/timeseries?lon=nan&lat=50&datetime=2018-07-01/2018-07-02", None, "longitude"),
    ("unknown band", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02&bands=B2,../../etc",
     None, "unknown band"),
    ("many bands", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02&bands=" + "B2," * 400,
     None, "bands"),
    ("format", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02&format=xml", None, "format"),
    ("versions", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02&versions=x", None,
     "versions"),
    ("unknown parameter", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02&"
     f"{'x' * 5000}=1", None, "unknown parameter"),
    ("date 2018-02-30", f"/timeseries?{POINT}&datetime=2018-02-30/2018-03-01", None, ""),
    ("polygon over the vertex limit", "/timeseries", _polygon_body(LIMITS.series_vertices + 1),
     "over the limit of 1,000 vertices"),
    ("line", "/timeseries", json.dumps({"geometry": {"type": "LineString",
     "coordinates": [[4, 50], [5, 51]]}, "datetime": "2018-07-01/2018-07-02"}).encode(),
     "Point or Polygon"),
    ("bow tie", "/timeseries", json.dumps({"geometry": {"type": "Polygon", "coordinates":
     [[[4, 50], [4.01, 50.01], [4.01, 50], [4, 50.01], [4, 50]]]},
     "datetime": "2018-07-01/2018-07-02"}).encode(), "not valid"),
    ("deep JSON", "/timeseries", _deep(5000), "nesting"),
    ("not JSON", "/timeseries", b"{geometry", ""),
    ("a list", "/timeseries", b"[1, 2]", "JSON object"),
    ("huge body", "/timeseries", b" " * (LIMITS.body_bytes + 1), "over the limit"),
    ("stats without to", "/stats/production?from=2018-07-01", None, "to must be a day"),
    ("stats reversed", "/stats/production?from=2018-07-31&to=2018-07-01", None, "after"),
    ("stats over the limit", "/stats/production?from=2000-01-01&to=2010-01-08", None,
     "over the limit of 3,660 days"),
    ("stats collection", "/stats/production?from=2018-07-01&to=2018-07-02&collection="
     + quote("' OR 1=1"), None, "collection is one of"),
    ("stats format", "/stats/production?from=2018-07-01&to=2018-07-02&format=html", None,
     "format"),
    ("stats injection", "/stats/production?from=2018-07-01&to=" + quote("2018-07-02\n"), None,
     "to must be a day"),
    ("season without a place", "/seasons/curve?season=2018", None, "give one of"),
    ("season and two places", f"/seasons/curve?season=2018&tile=31TCH&{POINT}", None,
     "give one of"),
    ("season of no year", "/seasons/curve?season=18&tile=31TCH", None, "snow season is a year"),
    ("season path in a tile", "/seasons/curve?season=2018&tile=" + quote("../../31TCH"), None,
     "tile is a Sentinel-2 tile name"),
    ("season polygon over the vertex limit", "/seasons/curve",
     _season_body(LIMITS.series_vertices + 1), "over the limit of 1,000 vertices"),
    ("season format", "/seasons/curve?season=2018&tile=31TCH&format=png", None, "format"),
]  # fmt: skip


@pytest.mark.parametrize("name, path, body, says", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_are_refused_quickly(
    served: Served, name: str, path: str, body: bytes | None, says: str
) -> None:
    status, answer = fetch(f"{served.url}{path}", body)
    assert 400 <= status < 500, (status, answer[:300])
    assert says in json.loads(answer)["description"]
    assert served.canary.encode() not in answer and os.environ["HOME"].encode() not in answer
    assert served.seconds[-1] < HANDLER_SECONDS


AT_LIMITS = [
    ("range at the limit", f"/timeseries?{POINT}&datetime=2015-01-01/2017-12-31", None),
    ("polygon at the vertex limit", "/timeseries", _polygon_body(LIMITS.series_vertices)),
    ("all ten bands", f"/timeseries?{POINT}&datetime=2018-07-01/2018-07-02"
     "&bands=B2,B3,B4,B5,B6,B7,B8,B8A,B11,B12&format=csv", None),
    ("stats at the limit", "/stats/production?from=2000-01-01&to=2010-01-07", None),
]  # fmt: skip


@pytest.mark.parametrize("name, path, body", AT_LIMITS, ids=[a[0] for a in AT_LIMITS])
def test_requests_at_a_limit_are_answered(
    served: Served, name: str, path: str, body: bytes | None
) -> None:
    status, answer = fetch(f"{served.url}{path}", body)
    assert status == 200, answer[:300]
    assert served.seconds[-1] < HANDLER_SECONDS


def _square(tile: str, x: float, y: float, size: float) -> list[list[float]]:
    """A square of `size` metres whose north-west corner is (x, y) m from the tile's."""
    square = grid.tile(tile)
    to_lonlat = Transformer.from_crs(square.epsg, 4326, always_xy=True)
    x0, y0 = square.ulx + x, square.uly - y
    corners = [(x0, y0), (x0 + size, y0), (x0 + size, y0 - size), (x0, y0 - size), (x0, y0)]
    return [list(to_lonlat.transform(cx, cy)) for cx, cy in corners]


def test_a_polygon_over_too_many_pixels_is_refused(
    function_settings: Settings, tmp_path: Path
) -> None:
    """Pixels are counted on the grid of each product found: a small limit shows it."""
    when = datetime(2018, 7, 4, 10, 56, 26, tzinfo=UTC)
    path = simulate_product("31UFS", when, "SENTINEL2B", tmp_path, SMALL, seed=1)
    ingestor = Ingestor.from_settings(function_settings)
    ingestor.bucket.put_bytes(f"incoming/{path.name}", path.read_bytes(), "application/zip")
    assert ingestor.ingest(f"incoming/{path.name}").outcome is Outcome.INGESTED
    limits = RequestLimits(series_pixels=50)
    app = add_timeseries_routes(make_resolver(ingestor.catalog), ingestor.catalog, limits)
    corner = 40 * SMALL + 5  # inside a pixel of the 1098 m grid
    large = _square("31UFS", corner, corner, 8 * SMALL - 10)  # 64 pixels
    small = _square("31UFS", corner, corner, 7 * SMALL - 10)  # 49 pixels
    answers = {}
    with HttpFront(lambda event, context: app.resolve(event, context)) as front:
        for name, ring in (("large", large), ("small", small)):
            body = {"geometry": {"type": "Polygon", "coordinates": [ring]},
                    "datetime": "2018-07-01/2018-07-31"}  # fmt: skip
            answers[name] = fetch(f"{front.url}/timeseries", json.dumps(body).encode())
    assert answers["large"][0] == 400
    assert "over the limit of 50 pixels" in json.loads(answers["large"][1])["description"]
    assert answers["small"][0] == 200
    assert json.loads(answers["small"][1])["count"] == 1


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_fuzz_of_the_series_routes_finds_no_server_error(served: Served, mode: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{served.url}/api")
    failures: list[str] = []
    paths: set[str] = set()
    for route in ("/timeseries", "/stats/production", "/seasons/curve"):  # each its share
        strategy = schema.include(path=route).as_strategy(
            generation_mode=schemathesis.GenerationMode(mode)
        )

        @settings(
            max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(base_url=served.url)
            paths.add(case.path)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body}")

        check()
    assert failures == []
    assert paths == {"/timeseries", "/stats/production", "/seasons/curve"}
