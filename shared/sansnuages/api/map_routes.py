"""The map side of the API: tiles, TileJSON, the months of an area, and the viewer page.

Routes are added to the STAC API's resolver, so one function serves the catalog and the map:
  /map/areas/{area}                  the area's mosaics, one per month or season and product,
                                     with border, TileJSON and the legend of colour-mapped ones
  /map/{item}/tilejson.json          TileJSON 3.0.0 of one mosaic (with its product and legend)
  /map/{item}/legend.json            the legend of a colour-mapped mosaic (`ColourMap.legend`)
  /map/{item}/tiles/{z}/{x}/{y}.png  XYZ tiles (web mercator), cut from the COGs on request
  /viewer/{area}                     a Leaflet page over those routes (works offline)
  /viewer/static/{file}              the page's script, styles and the pinned Leaflet
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from sansnuages import errors
from sansnuages.api import tiles
from sansnuages.api.limits import check_id
from sansnuages.period import SEASON_PREFIX
from sansnuages.stac.collections import MOSAICS
from sansnuages.stores.catalog import Catalog

TILE_CACHE = "public, max-age=86400, stale-while-revalidate=604800"
"""A published mosaic changes only if its month is rebuilt; the ETag then changes too."""
DOCUMENT_CACHE = "public, max-age=300"
SNOW_COVER_DURATION = "snow-cover-duration"
"""`sansnuages:product` of a snow season's mosaic (`mosaic_plan.SNOW_COVER_DURATION`)."""
STATIC_CACHE = "public, max-age=86400"
STATIC_FILES = {
    "viewer.js": "application/javascript",
    "viewer.css": "text/css",
    "leaflet.js": "application/javascript",
    "leaflet.css": "text/css",
    "panels.js": "application/javascript",
    "uPlot.iife.min.js": "application/javascript",
    "uPlot.min.css": "text/css",
}


def add_map_routes(app: APIGatewayHttpResolver, catalog: Catalog) -> APIGatewayHttpResolver:
    """Register the map routes on `app` (the STAC API resolver) and return it."""

    def layer(item_id: str) -> tiles.MapLayer:
        check_id(item_id, "the path's ids")
        return tiles.layer_of(catalog.get_item(MOSAICS, item_id))

    @app.get("/map/areas/<area_id>")
    def area_months(area_id: str) -> Response:
        base = request_base(app.current_event)
        document = months_document(mosaics_of_area(catalog, area_id), base)
        return _json(document, DOCUMENT_CACHE)

    @app.get("/map/<item_id>/tilejson.json")
    def tilejson(item_id: str) -> Response:
        base = request_base(app.current_event)
        url = f"{base}/map/{item_id}/tiles/{{z}}/{{x}}/{{y}}.png"
        return _json(tiles.tilejson(layer(item_id), url), DOCUMENT_CACHE)

    @app.get("/map/<item_id>/legend.json")
    def legend(item_id: str) -> Response:
        colour_map = layer(item_id).colour_map
        if colour_map is None:
            raise errors.NotFound(f"mosaic {item_id!r} is true colour: it has no legend")
        return _json(colour_map.legend(), DOCUMENT_CACHE)

    @app.get("/map/<item_id>/tiles/<z>/<x>/<y>.png")
    def tile(item_id: str, z: str, x: str, y: str) -> Response:
        zxy = _tile_numbers(z, x, y)
        mosaic = layer(item_id)
        etag = f'"{mosaic.version}-{"-".join(map(str, zxy))}"'
        headers = {"Cache-Control": TILE_CACHE, "ETag": etag}
        if app.current_event.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers, body="")
        png = tiles.tile_png(mosaic, *zxy)
        return Response(status_code=200, content_type="image/png", body=png, headers=headers)

    @app.get("/viewer")
    def viewer_index() -> Response:
        return _html(viewer_index_page(mosaics_of_area(catalog, None)))

    @app.get("/viewer/<area_id>")
    def viewer(area_id: str) -> Response:
        return _html(viewer_page())

    @app.get("/viewer/static/<name>")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise errors.NotFound(f"no file {name!r} in the viewer")
        return Response(
            status_code=200,
            content_type=STATIC_FILES[name],
            body=_asset(name),
            headers={"Cache-Control": STATIC_CACHE},
        )

    return app


def viewer_url(api_url: str, area_id: str, month: str) -> str:
    """Where a browser shows the mosaic of `area_id` for `month` (YYYY-MM, or a season such as
    `snow-2018`, which shows its snow cover duration)."""
    url = f"{api_url.rstrip('/')}/viewer/{area_id}?month={month}"
    if month.startswith(SEASON_PREFIX):
        url += f"&product={SNOW_COVER_DURATION}"
    return url


def request_base(event: APIGatewayProxyEventV2) -> str:
    """Scheme, host and stage of the request, for the absolute URLs TileJSON needs."""
    context = event.request_context
    host = context.domain_name or event.headers.get("host", "localhost")
    scheme = (event.headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    stage = context.stage
    return f"{scheme}://{host}" + ("" if stage in (None, "", "$default") else f"/{stage}")


def mosaics_of_area(catalog: Catalog, area_id: str | None) -> list[dict[str, Any]]:
    """The Items of `mosaics` for one area (all areas if None), oldest first: months and snow
    seasons, each by its first day (a season starts on 1 September).

    One Item per area, period and product: decades of mosaics are a few hundred records.
    """
    found = [
        i
        for i in catalog.iter_items([MOSAICS])
        if (area_id is None or i["properties"].get("sansnuages:area_id") == area_id)
        and not i["properties"].get("sansnuages:piece")  # the main piece of an area
    ]
    return sorted(found, key=lambda i: (_start(i), i["id"]))


PRODUCT_TITLES = {tiles.TRUE_COLOUR: "True colour", SNOW_COVER_DURATION: "Snow cover duration"}


def months_document(items: list[dict[str, Any]], base: str) -> dict[str, Any]:
    """What the viewer needs to switch between products and periods: the products (title,
    legend), and per mosaic its period label, product, TileJSON URL, bounds and dates.

    `month` is the period's label (`2018-07`, or `snow-2018` for a season); `until` the
    month the period ends in (what the time-series panel stops at)."""
    if not items:
        raise errors.NotFound("no mosaic of this area yet")
    props = items[-1]["properties"]
    products: dict[str, dict[str, Any]] = {}
    entries = []
    for item in items:
        product = tiles.product_of(item)
        colour_map = tiles.colour_map_of(item)
        legend = colour_map.legend() if colour_map else None
        products.setdefault(
            product,
            {
                "product": product,
                "title": PRODUCT_TITLES.get(product, product),
                "legend": legend,
            },
        )
        entries.append(
            {
                "month": _period(item),
                "product": product,
                "item": item["id"],
                "tilejson": f"{base}/map/{item['id']}/tilejson.json",
                "bbox": item["bbox"],
                "start": item["properties"].get("start_datetime"),
                "end": item["properties"].get("end_datetime"),
                "until": _until(item),
                "valid_fraction": item["properties"].get("sansnuages:valid_fraction"),
                "legend": legend,
            }
        )
    return {
        "area_id": props.get("sansnuages:area_id"),
        "name": props.get("sansnuages:area"),
        "border": items[-1]["geometry"],
        "products": sorted(products.values(), key=lambda p: p["product"] != tiles.TRUE_COLOUR),
        "months": entries,
    }


def _period(item: dict[str, Any]) -> str:
    """The label of a mosaic's period: `sansnuages:period`, or for an Item made before it the
    month of its central date (a month's window starts the month before)."""
    props = item["properties"]
    return str(props.get("sansnuages:period") or str(props.get("datetime") or "")[:7])


def _start(item: dict[str, Any]) -> str:
    props = item["properties"]
    if tiles.product_of(item) == tiles.TRUE_COLOUR:
        return _period(item)
    return str(props.get("start_datetime") or props.get("datetime") or "")[:7]


def _until(item: dict[str, Any]) -> str:
    """The month a mosaic's period ends in: a month is its own; a season's, its last."""
    props = item["properties"]
    if tiles.product_of(item) == tiles.TRUE_COLOUR:
        return _period(item)
    return str(props.get("end_datetime") or props.get("datetime") or "")[:7]


def viewer_page() -> str:
    return _asset("index.html").decode("utf-8")


def viewer_index_page(items: list[dict[str, Any]]) -> str:
    """A plain list of the areas that have mosaics, each linking to its viewer."""
    areas = {
        i["properties"].get("sansnuages:area_id"): i["properties"].get("sansnuages:area")
        for i in items
    }
    rows = "".join(
        f'<li><a href="viewer/{_escape(str(a))}">{_escape(str(n))}</a></li>'
        for a, n in sorted(areas.items(), key=lambda kv: str(kv[1]))
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>sansnuages mosaics</title>"
        f"<h1>Mosaics</h1><ul>{rows or '<li>none yet</li>'}</ul>"
    )


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


MAX_ZOOM = 24
"""Web mercator zoom 24 has 2 cm pixels: far past any mosaic's resolution."""


def _tile_numbers(z: str, x: str, y: str) -> tuple[int, int, int]:
    """z/x/y of an XYZ tile: not integers is a 400; outside the tile matrix, a tile that does
    not exist (404), answered before any reader sees the numbers."""
    try:
        zoom, column, row = int(z), int(x), int(y)
    except ValueError as exc:
        raise errors.InvalidRequest("tile numbers must be integers") from exc
    if not 0 <= zoom <= MAX_ZOOM:
        raise errors.NotFound(f"zoom {zoom} is outside 0..{MAX_ZOOM}")
    if not (0 <= column < 2**zoom and 0 <= row < 2**zoom):
        raise errors.NotFound(f"no tile {column}/{row} at zoom {zoom}")
    return zoom, column, row


def _asset(name: str) -> bytes:
    """A file of the viewer; Leaflet and uPlot are copied into `viewer/vendor` by `make viewer`."""
    folder = resources.files("sansnuages.api").joinpath("viewer")
    vendored = name.startswith(("leaflet", "uPlot"))
    path = folder / "vendor" / name if vendored else folder.joinpath(name)
    if not path.is_file():
        raise errors.NotFound(f"viewer file {name!r} is missing: run `make viewer` (npm ci)")
    return path.read_bytes()


def _json(document: Any, cache: str) -> Response:
    return Response(
        status_code=200,
        content_type="application/json",
        body=json.dumps(document),
        headers={"Cache-Control": cache},
    )


def _html(page: str) -> Response:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=page,
        headers={"Cache-Control": DOCUMENT_CACHE},
    )
