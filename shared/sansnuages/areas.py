"""Areas to mosaic: a country by name or code, or any polygon from a GeoJSON file or inline.

An area given as a list of tiles is an inline polygon (the union of their squares) whose
feature names the tiles in `properties.tiles`: a job over it takes those tiles and no other.

Country borders are Natural Earth admin-0 (public domain), shipped in `data/countries.geojson`
(made by `scripts/make_countries.py`). A Natural Earth country includes its far-away parts:
France covers French Guiana and Reunion, Norway covers Svalbard.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from sansnuages.errors import InvalidArea, UnknownArea

_CODE_KEYS = ("ADM0_A3", "ISO_A3", "ISO_A2")
_NAME_KEYS = ("NAME", "NAME_LONG")


@dataclass(frozen=True)
class Area:
    id: str
    """Stable key used in output paths: the ADM0_A3 code, or a slug of the file name."""
    name: str
    geometry: BaseGeometry
    """Polygon or MultiPolygon in longitude/latitude (WGS 84)."""
    tiles: tuple[str, ...] = ()
    """Only these tiles (an area given as a tile list); empty: every tile the polygon touches."""


@dataclass(frozen=True)
class _Country:
    properties: dict[str, Any]
    geometry: dict[str, Any]


def area_geometry(spec: str) -> Area:
    """The area named by `spec`: a country name (NAME or NAME_LONG, any case), an ISO A2/A3
    or ADM0_A3 code, or the path of a GeoJSON file (Feature, FeatureCollection or geometry).

    Raises UnknownArea, with the closest names in the message, when nothing matches.
    """
    text = spec.strip()
    if text.startswith("{"):
        return area_from_geojson(text)
    if _looks_like_file(text):
        return _area_from_file(Path(text))
    country = _find_country(text)
    if country is None:
        raise UnknownArea(_unknown_message(text))
    props = country.properties
    return Area(id=props["ADM0_A3"], name=props["NAME"], geometry=shape(country.geometry))


def _looks_like_file(text: str) -> bool:
    return text.lower().endswith((".geojson", ".json")) or Path(text).is_file()


def _find_country(text: str) -> _Country | None:
    """Codes first (exact, upper case), then names (case-insensitive)."""
    countries = _countries()
    for key in _CODE_KEYS:
        for country in countries:
            if country.properties.get(key) == text.upper():
                return country
    folded = text.casefold()
    for key in _NAME_KEYS:
        for country in countries:
            if str(country.properties.get(key, "")).casefold() == folded:
                return country
    return None


def _unknown_message(text: str) -> str:
    names = sorted(
        {str(c.properties[k]) for c in _countries() for k in _NAME_KEYS if c.properties.get(k)}
    )
    by_fold = {name.casefold(): name for name in names}
    close = difflib.get_close_matches(text.casefold(), list(by_fold), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(by_fold[c]) for c in close)}?" if close else ""
    return f"unknown area {text!r}: not a country name, country code or GeoJSON file{hint}"


@lru_cache(maxsize=1)
def _countries() -> tuple[_Country, ...]:
    data = resources.files("sansnuages").joinpath("data/countries.geojson").read_text("utf-8")
    return tuple(
        _Country(properties=f["properties"], geometry=f["geometry"])
        for f in json.loads(data)["features"]
    )


def _area_from_file(path: Path) -> Area:
    try:
        document = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise UnknownArea(f"area file {str(path)!r} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise UnknownArea(f"area file {str(path)!r} is not readable GeoJSON: {exc}") from exc
    geometry = _polygonal(_geometries(document), path)
    name = _feature_name(document) or path.stem
    return Area(id=_slug(path.stem), name=name, geometry=geometry)


def _geometries(document: Any) -> list[BaseGeometry]:
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection":
        return [g for f in document.get("features", []) for g in _geometries(f)]
    if kind == "Feature":
        return [shape(document["geometry"])] if document.get("geometry") else []
    if kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return [shape(document)]
    return []


def _polygonal(geometries: list[BaseGeometry], path: Path) -> BaseGeometry:
    """The union of the polygons of a file; lines and points cannot bound a mosaic."""
    parts = [shapely.make_valid(g) for g in geometries]
    polygons = [
        p
        for g in parts
        for p in shapely.get_parts(g)
        if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty
    ]
    if not polygons:
        raise UnknownArea(f"area file {str(path)!r} holds no polygon")
    return shapely.union_all(polygons)


MAX_GEOJSON_BYTES = 256 * 1024
MAX_AREA_TILES = 1000
_TILE = re.compile(r"^\d{1,2}[C-X][A-Z][A-V]$")
"""An inline polygon travels in the plan event (Lambda's asynchronous invocations,
EventBridge and SQS all stop at 256 KB) and is stored with the job, never in tile messages."""
_POLYGONAL = ("Polygon", "MultiPolygon")


def area_from_geojson(document: Any, name: str | None = None) -> Area:
    """An area from inline GeoJSON (a Polygon or MultiPolygon, a Feature of one, or a
    FeatureCollection of them; a dict or its JSON text), checked strictly, since it comes
    from a request: InvalidArea says what is wrong (not JSON, too large, not a polygon,
    coordinates outside longitude/latitude, a self-intersecting ring).

    Its id is a digest of the geometry, so the same polygon always makes the same job; its
    `name` defaults to the first feature's name.
    """
    text = document if isinstance(document, str) else json.dumps(document)
    size = len(text.encode("utf-8"))
    if size > MAX_GEOJSON_BYTES:
        raise InvalidArea(
            f"GeoJSON area is {size / 1024:.0f} KB, over the {MAX_GEOJSON_BYTES // 1024} KB a "
            "request can carry: simplify the polygon (e.g. ogr2ogr -simplify) or name a country"
        )
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise InvalidArea(f"GeoJSON area is not valid JSON: {error}") from error
    geometry = _strict_polygons(parsed)
    canonical = json.dumps(mapping(geometry), separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    label = name or _feature_name(parsed) or f"polygon {digest}"
    tiles = _feature_tiles(parsed)
    if tiles:
        digest = hashlib.sha256(",".join(tiles).encode()).hexdigest()[:10]
        return Area(id=f"tiles-{digest}", name=label, geometry=geometry, tiles=tiles)
    return Area(id=f"geojson-{digest}", name=label, geometry=geometry)


def _feature_tiles(document: Any) -> tuple[str, ...]:
    """`properties.tiles` of a Feature: the tile names of an area given as a tile list."""
    if not isinstance(document, dict) or document.get("type") != "Feature":
        return ()
    tiles = (document.get("properties") or {}).get("tiles")
    if tiles is None:
        return ()
    if not isinstance(tiles, list) or not 0 < len(tiles) <= MAX_AREA_TILES:
        raise InvalidArea(f"'tiles' must be a list of 1 to {MAX_AREA_TILES} tile names")
    names = [str(t).strip().upper().removeprefix("T") for t in tiles]
    bad = [n for n in names if not _TILE.match(n)]
    if bad:
        raise InvalidArea(f"not tile names (like 31TCH): {', '.join(bad[:5])}")
    return tuple(sorted(set(names)))


def geojson_spec(area: Area) -> str:
    """The text that stands for an inline area wherever a spec string goes (the job record):
    `area_geometry` of it gives the same area back, name and id included."""
    properties: dict[str, Any] = {"name": area.name}
    if area.tiles:
        properties["tiles"] = list(area.tiles)
    feature = {"type": "Feature", "properties": properties, "geometry": mapping(area.geometry)}
    return json.dumps(feature, separators=(",", ":"))


def geojson_argument(value: str, name: str | None = None) -> str:
    """The spec of a polygon given on a command line, as a file or as inline JSON; checked
    here, so that a bad polygon is refused before a job is asked for."""
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text("utf-8")
        except OSError as error:
            raise InvalidArea(f"cannot read GeoJSON file {value!r}: {error}") from error
    return geojson_spec(area_from_geojson(text, name))


def area_summary(spec: str, area_id: str) -> dict[str, Any]:
    """What a job's status shows of its area (`spec` as the job record keeps it): its id, its
    name and its bounding box `[west, south, east, north]`, never the polygon itself, which
    can weigh 256 KB and says nothing at a glance. An area that no longer resolves (a GeoJSON
    file since moved) keeps its id, with no bbox."""
    try:
        area = area_geometry(spec)
    except (UnknownArea, InvalidArea):
        inline = spec.lstrip().startswith("{")
        return {"id": area_id, "name": area_id if inline else spec, "bbox": None}
    bbox = [round(value, 6) for value in area.geometry.bounds]
    return {"id": area_id, "name": area.name, "bbox": bbox}


def _strict_polygons(document: Any) -> BaseGeometry:
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidArea("GeoJSON FeatureCollection has no features")
        parts = [_strict_polygons(f) for f in features]
        return shapely.union_all(parts)
    if kind == "Feature":
        return _strict_polygons(document.get("geometry"))
    if kind not in _POLYGONAL:
        found = kind or type(document).__name__
        raise InvalidArea(f"GeoJSON area must be a Polygon or MultiPolygon, not {found}")
    try:
        geometry = shape(document)
    except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.GEOSException) as error:
        raise InvalidArea(f"GeoJSON {kind} has unreadable coordinates: {error}") from error
    if geometry.is_empty:
        raise InvalidArea(f"GeoJSON {kind} is empty")
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidArea(
            f"GeoJSON {kind} has coordinates outside longitude/latitude (bounds {west:g}, "
            f"{south:g}, {east:g}, {north:g}): GeoJSON is WGS 84 degrees, longitude first"
        )
    if not geometry.is_valid:
        raise InvalidArea(f"GeoJSON {kind} is not a valid polygon: {explain_validity(geometry)}")
    return geometry


def _feature_name(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    features = document.get("features", []) if document.get("type") == "FeatureCollection" else []
    first = features[0] if features and isinstance(features[0], dict) else document
    props = first.get("properties") or {}
    for key in ("name", "NAME", "title"):
        if isinstance(props.get(key), str) and props[key]:
            return str(props[key])
    return None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "area"


EUROPE_CRS = "EPSG:3035"
_EUROPE_LONLAT = (-35.0, 25.0, 45.0, 85.0)
"""Where EPSG:3035 (ETRS89 / LAEA Europe) is meant to be used, (west, south, east, north)."""
WIDE_CRS = "EPSG:6933"
PART_GAP_DEGREES = 3.0
"""Polygons closer than this form one part: Corsica stays with France, Guiana does not."""


@dataclass(frozen=True)
class AreaPart:
    """A piece of an area mosaicked on its own grid (mainland France, French Guiana, ...)."""

    index: int
    """0 for the largest part; the order of decreasing size."""
    geometry: BaseGeometry
    """Longitude/latitude."""
    crs: str


def area_parts(area: Area, crs: str | None = None) -> list[AreaPart]:
    """The far-apart pieces of `area`, largest first, each with its CRS.

    Polygons are grouped when their buffers by PART_GAP_DEGREES / 2 touch. The CRS is `crs`
    when given, else `default_crs` of the piece.
    """
    polygons = list(shapely.get_parts(area.geometry))
    grown = [p.buffer(PART_GAP_DEGREES / 2) for p in polygons]
    clusters = shapely.get_parts(shapely.union_all(grown))
    pieces = [
        shapely.union_all([p for p, g in zip(polygons, grown, strict=True) if c.intersects(g)])
        for c in clusters
    ]
    pieces.sort(key=lambda g: (-g.area, g.bounds))
    return [AreaPart(i, g, crs or default_crs(g)) for i, g in enumerate(pieces)]


def default_crs(geometry: BaseGeometry) -> str:
    """EPSG:3035 (equal-area) in Europe; elsewhere the WGS 84 UTM zone of the centre, or the
    global equal-area EASE-Grid 2.0 (EPSG:6933) for a piece wider than two UTM zones."""
    lon, lat = geometry.centroid.x, geometry.centroid.y
    west, south, east, north = _EUROPE_LONLAT
    if west <= lon <= east and south <= lat <= north:
        return EUROPE_CRS
    if geometry.bounds[2] - geometry.bounds[0] > 12.0:
        return WIDE_CRS
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"
