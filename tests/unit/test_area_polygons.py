"""Inline GeoJSON areas: what a plan event or the CLI may carry, and what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import Point

from sansnuages import areas
from sansnuages.errors import InvalidArea, InvalidRequest
from sansnuages.stages.plan import JobRequest, request_area

EVENTS = Path(__file__).resolve().parents[2] / "events"
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[4.2, 50.6], [4.9, 50.6], [4.9, 51.0], [4.2, 51.0], [4.2, 50.6]]],
}
BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[4.0, 50.0], [5.0, 51.0], [5.0, 50.0], [4.0, 51.0], [4.0, 50.0]]],
}


def test_a_polygon_event_is_a_job_over_that_polygon() -> None:
    event = json.loads((EVENTS / "plan-polygon.json").read_text())
    request = JobRequest.from_event(event)
    assert request.period.label == "2018-07"
    area = areas.area_geometry(request.area)  # what the job record holds reads back
    assert area.name == "Brabant fields" and area.id.startswith("geojson-")
    assert area.geometry.contains(Point(4.5, 50.8)) and not area.geometry.contains(Point(4, 50.8))
    assert area == areas.area_from_geojson(SQUARE, "Brabant fields")


def test_the_same_polygon_is_the_same_job_in_any_form() -> None:
    as_object = request_area({"area_geojson": SQUARE})
    as_text = request_area({"area_geojson": json.dumps(SQUARE)})
    as_feature = request_area({"area": {"type": "Feature", "properties": {}, "geometry": SQUARE}})
    ids = {areas.area_geometry(spec).id for spec in (as_object, as_text, as_feature)}
    assert len(ids) == 1
    moved = dict(SQUARE, coordinates=[[[x + 1, y] for x, y in SQUARE["coordinates"][0]]])
    assert areas.area_geometry(request_area({"area_geojson": moved})).id not in ids


def test_a_country_event_is_unchanged() -> None:
    assert request_area({"area": "Belgium"}) == "Belgium"


def test_feature_collections_are_merged() -> None:
    east = dict(SQUARE, coordinates=[[[x + 1, y] for x, y in SQUARE["coordinates"][0]]])
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "West"}, "geometry": SQUARE},
            {"type": "Feature", "properties": {}, "geometry": east},
        ],
    }
    area = areas.area_from_geojson(collection)
    assert area.name == "West"
    assert area.geometry.area == pytest.approx(2 * 0.7 * 0.4)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "Point", "coordinates": [4.5, 50.8]}, "Polygon or MultiPolygon, not Point"),
        (
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
            },
            "not LineString",
        ),
        ({"type": "FeatureCollection", "features": []}, "no features"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "unreadable coordinates"),
        ({"type": "Polygon", "coordinates": []}, "empty"),
        (BOWTIE, "Self-intersection"),
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[500000, 5600000], [600000, 5600000], [600000, 5700000], [500000, 5600000]]
                ],
            },
            "outside longitude/latitude",
        ),
        ("[1, 2, 3]", "not list"),
    ],
)
def test_bad_polygons_are_refused_with_the_reason(document: object, message: str) -> None:
    with pytest.raises(InvalidArea, match=message):
        request_area({"area_geojson": document})


def test_a_polygon_too_large_for_a_message_is_refused() -> None:
    import math

    ring = [
        [
            4.5 + 0.3 * math.cos(2 * math.pi * i / 20000),
            50.8 + 0.3 * math.sin(2 * math.pi * i / 20000),
        ]
        for i in range(20000)
    ]
    ring.append(ring[0])
    big = {"type": "Polygon", "coordinates": [ring]}
    assert len(json.dumps(big)) > areas.MAX_GEOJSON_BYTES
    with pytest.raises(InvalidArea, match="over the 256 KB"):
        request_area({"area_geojson": big})
    # the same ring, thinned, is accepted
    small = {"type": "Polygon", "coordinates": [ring[::100] + [ring[0]]]}
    assert areas.area_geometry(request_area({"area_geojson": small})).geometry.is_valid


def test_bad_requests_are_invalid_requests() -> None:
    with pytest.raises(InvalidRequest, match="not both"):
        request_area({"area": "Belgium", "area_geojson": SQUARE})
    with pytest.raises(InvalidRequest, match="area_geojson"):
        request_area({})
    with pytest.raises(InvalidRequest, match="GeoJSON object"):
        request_area({"area_geojson": 42})
    assert issubclass(InvalidArea, InvalidRequest)  # the plan function refuses, never retries


def test_the_cli_argument_is_a_file_or_inline_json(tmp_path: Path) -> None:
    path = tmp_path / "zone.geojson"
    path.write_text(json.dumps(SQUARE))
    from_file = areas.area_geometry(areas.geojson_argument(str(path), "Zone"))
    inline = areas.area_geometry(areas.geojson_argument(json.dumps(SQUARE), "Zone"))
    assert from_file == inline and from_file.name == "Zone"
    with pytest.raises(InvalidArea, match="cannot read"):
        areas.geojson_argument(str(tmp_path / "missing.geojson"))
    with pytest.raises(InvalidArea, match="Self-intersection"):
        areas.geojson_argument(json.dumps(BOWTIE))


def test_the_month_command_refuses_a_bad_polygon_before_asking_for_a_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sansnuages.tools.cli import main

    monkeypatch.chdir(tmp_path)  # no runtime here: the polygon is refused before looking for one
    assert main(["month", "2018-07", "--area-geojson", json.dumps(BOWTIE)]) == 2
    assert "Self-intersection" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["month", "2018-07", "--area", "BEL", "--area-geojson", json.dumps(SQUARE)])


def test_a_tile_list_is_an_area_of_those_tiles_only() -> None:
    spec = request_area({"tiles": ["31TCH", "t31tch", "31TDH"]})
    area = areas.area_geometry(spec)  # what the job record holds reads back
    assert area.tiles == ("31TCH", "31TDH") and area.id.startswith("tiles-")
    assert area.name == "tiles 31TCH, 31TDH"
    assert area.geometry.contains(Point(1.5, 42.5))  # Andorra lies in 31TCH
    same = areas.area_geometry(request_area({"tiles": "31TDH,31TCH", "area_name": "Andorra"}))
    assert same.id == area.id and same.name == "Andorra"
    other = areas.area_geometry(request_area({"tiles": ["31TCH"]}))
    assert other.id != area.id and other.tiles == ("31TCH",)


@pytest.mark.parametrize(
    "event",
    [
        {"tiles": ["31TCH", "not-a-tile"]},
        {"tiles": ["99ZZZ"]},
        {"tiles": []},
        {"tiles": {"31TCH": 1}},
        {"tiles": ["31TCH"] * (areas.MAX_AREA_TILES + 1)},
        {"tiles": ["31TCH"], "area": "Andorra"},
    ],
)
def test_a_bad_tile_list_is_refused(event: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        request_area(event)


def test_a_tile_list_smuggled_in_a_polygon_is_checked_too() -> None:
    feature = {"type": "Feature", "properties": {"tiles": ["../31TCH"]}, "geometry": SQUARE}
    with pytest.raises(InvalidArea, match="not tile names"):
        areas.area_from_geojson(feature)
