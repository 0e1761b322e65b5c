"""Areas: countries by name or code from the shipped borders, or polygons from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import Point

from sansnuages.areas import area_geometry, area_parts
from sansnuages.errors import UnknownArea

BRUSSELS = Point(4.35, 50.85)
PARIS = Point(2.35, 48.86)
CAYENNE = Point(-52.33, 4.94)  # French Guiana
SAINT_DENIS_REUNION = Point(55.45, -20.9)


@pytest.mark.parametrize("spec", ["Belgium", "belgium", " BELGIUM ", "BEL", "bel", "BE"])
def test_belgium_by_name_or_code(spec: str) -> None:
    area = area_geometry(spec)
    assert (area.id, area.name) == ("BEL", "Belgium")
    assert area.geometry.contains(BRUSSELS)
    assert not area.geometry.contains(PARIS)
    assert 28_000 < area.geometry.area * 111 * 71 < 34_000  # about 30,700 km2 at 50 N


def test_long_name_matches() -> None:
    assert area_geometry("Democratic Republic of the Congo").id == "COD"


def test_france_includes_its_overseas_parts() -> None:
    """Natural Earth writes ISO -99 for France: the code must still work."""
    for spec in ("France", "FRA", "FR"):
        area = area_geometry(spec)
        assert area.id == "FRA"
        assert area.geometry.geom_type == "MultiPolygon"
        for place in (PARIS, CAYENNE, SAINT_DENIS_REUNION):
            assert area.geometry.contains(place)
        assert not area.geometry.contains(BRUSSELS)


def test_a_dependency_does_not_steal_its_sovereign_code() -> None:
    assert area_geometry("AU").name == "Australia"
    assert area_geometry("Clipperton I.").id == "CLP"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownArea, match="Belgium"):
        area_geometry("Belgum")
    with pytest.raises(UnknownArea, match="not a country"):
        area_geometry("Atlantis")


def _write(path: Path, document: object) -> str:
    path.write_text(json.dumps(document))
    return str(path)


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[1.0, 43.0], [2.0, 43.0], [2.0, 44.0], [1.0, 44.0], [1.0, 43.0]]],
}


def test_geojson_feature_collection_file(tmp_path: Path) -> None:
    other = {
        "type": "Polygon",
        "coordinates": [[[5.0, 43.0], [6.0, 43.0], [6.0, 44.0], [5.0, 43.0]]],
    }
    path = _write(
        tmp_path / "Mes Parcelles.geojson",
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"name": "Parcels"}, "geometry": SQUARE},
                {"type": "Feature", "properties": {}, "geometry": other},
            ],
        },
    )
    area = area_geometry(path)
    assert (area.id, area.name) == ("mes-parcelles", "Parcels")
    assert area.geometry.contains(Point(1.5, 43.5)) and area.geometry.contains(Point(5.8, 43.2))
    assert area.geometry.area == pytest.approx(1.5)


def test_geojson_feature_and_bare_geometry_files(tmp_path: Path) -> None:
    feature = _write(tmp_path / "f.json", {"type": "Feature", "geometry": SQUARE})
    bare = _write(tmp_path / "g.geojson", SQUARE)
    for path, slug in ((feature, "f"), (bare, "g")):
        area = area_geometry(path)
        assert area.id == slug and area.name == slug
        assert area.geometry.area == pytest.approx(1.0)


def test_bad_files_are_unknown_areas(tmp_path: Path) -> None:
    with pytest.raises(UnknownArea, match="does not exist"):
        area_geometry(str(tmp_path / "missing.geojson"))
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    with pytest.raises(UnknownArea, match="not readable"):
        area_geometry(str(broken))
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    with pytest.raises(UnknownArea, match="no polygon"):
        area_geometry(_write(tmp_path / "line.geojson", line))


def test_shipped_file_stays_small() -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "sansnuages" / "data"
    assert (data / "countries.geojson").stat().st_size < 3.2e6


def test_france_splits_into_far_apart_pieces_each_with_its_crs() -> None:
    pieces = area_parts(area_geometry("France"))
    assert pieces[0].geometry.contains(PARIS) and pieces[0].crs == "EPSG:3035"
    assert pieces[0].geometry.contains(Point(9.1, 42.1))  # Corsica stays with the mainland
    guiana = next(p for p in pieces if p.geometry.contains(CAYENNE))
    reunion = next(p for p in pieces if p.geometry.contains(SAINT_DENIS_REUNION))
    assert (guiana.crs, reunion.crs) == ("EPSG:32622", "EPSG:32740")  # UTM 22N, 40S
    assert len({p.index for p in pieces}) == len(pieces) >= 5
    assert [p.index for p in pieces] == list(range(len(pieces)))


def test_one_piece_areas_and_crs_choices() -> None:
    (belgium,) = area_parts(area_geometry("Belgium"))
    assert belgium.crs == "EPSG:3035" and belgium.geometry.contains(BRUSSELS)
    assert area_parts(area_geometry("Belgium"), crs="EPSG:31370")[0].crs == "EPSG:31370"
    assert area_parts(area_geometry("Brazil"))[0].crs == "EPSG:6933"  # too wide for one zone
