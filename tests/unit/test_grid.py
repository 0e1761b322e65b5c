"""The Sentinel-2 tile grid: corners of known tiles, names of known places, areas to tiles."""

from __future__ import annotations

import pytest
from shapely.geometry import Point, shape

from sansnuages.formats import grid

BELGIUM = {
    "type": "Polygon",
    "coordinates": [
        [
            [2.54, 51.09],
            [3.0, 50.77],
            [4.2, 50.33],
            [4.8, 50.0],
            [5.0, 49.5],
            [5.8, 49.5],
            [6.4, 50.3],
            [5.9, 51.0],
            [4.3, 51.5],
            [2.54, 51.09],
        ]
    ],
}


@pytest.mark.parametrize(
    ("name", "epsg", "ulx", "uly"),
    [
        ("31TCJ", 32631, 300000.0, 4900020.0),  # FORMATS.md
        ("31UFS", 32631, 600000.0, 5700000.0),  # 5700000 is already a multiple of 60
        ("32ULB", 32632, 300000.0, 5700000.0),  # even zone: row letters shifted by 5
        ("33UUU", 32633, 300000.0, 5900040.0),
        ("18TWL", 32618, 500000.0, 4600020.0),
    ],
)
def test_upper_left_corner_is_the_snapped_north_west_corner(name, epsg, ulx, uly):
    tile = grid.tile(name)
    assert (tile.epsg, tile.ulx, tile.uly) == (epsg, ulx, uly)
    assert tile.bounds == (ulx, uly - 109800.0, ulx + 109800.0, uly)


def test_leading_t_and_lower_case_are_accepted():
    assert grid.tile("T31tcj") == grid.tile("31TCJ")


@pytest.mark.parametrize("name", ["31TIJ", "61TCJ", "31TCZ", "XYZ", "", "31TCJJ"])
def test_impossible_names_are_refused(name):
    with pytest.raises(ValueError):
        grid.tile(name)


def test_southern_tiles_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="south"):
        grid.tile("33HUC")
    with pytest.raises(ValueError, match="south"):
        grid.tile_for_lonlat(18.4, -33.9)


@pytest.mark.parametrize(
    ("lon", "lat", "name"),
    [
        (1.44, 43.60, "31TCJ"),  # Toulouse
        (2.35, 48.85, "31UDQ"),  # Paris
        (4.35, 50.85, "31UES"),  # Brussels
        (-74.0, 40.7, "18TWL"),  # New York
        (5.32, 60.39, "32VKN"),  # Bergen: zone 32 by the Norway exception
    ],
)
def test_tile_for_known_places(lon, lat, name):
    assert grid.tile_for_lonlat(lon, lat) == name


@pytest.mark.parametrize("name", ["31TCJ", "31UFS", "32ULB", "31UDP", "18TWL", "35VLG"])
def test_centre_of_a_tile_maps_back_to_it(name):
    tile = grid.tile(name)
    assert grid.tile_for_lonlat(*tile.centre_lonlat) == name


def test_footprint_is_a_lonlat_polygon_around_the_centre():
    tile = grid.tile("31TCJ")
    footprint = tile.footprint_lonlat()
    assert footprint.is_valid
    assert footprint.contains(Point(tile.centre_lonlat))
    west, south, east, north = footprint.bounds
    assert 0.4 < west < 0.6 and 1.8 < east < 2.0
    assert 43.2 < south < 43.3 and 44.2 < north < 44.3


def test_belgium_spans_two_utm_zones():
    tiles = grid.tiles_for_geometry(BELGIUM)
    assert {"31UES", "31UFS", "31UFR", "32ULA"} <= set(tiles)
    assert {t[:2] for t in tiles} == {"31", "32"}
    assert tiles == sorted(tiles)
    assert "31TCJ" not in tiles
    country = shape(BELGIUM)
    assert all(grid.tile(t).footprint_lonlat().intersects(country) for t in tiles)


def test_geometry_inputs_shapely_feature_and_point():
    as_feature = {"type": "Feature", "properties": {}, "geometry": BELGIUM}
    assert grid.tiles_for_geometry(as_feature) == grid.tiles_for_geometry(shape(BELGIUM))
    assert grid.tiles_for_geometry(Point(1.44, 43.60)) == ["31TCJ"]


def test_small_area_far_from_a_sample_is_still_found():
    tiny = Point(2.35, 48.85).buffer(0.001)
    assert grid.tiles_for_geometry(tiny) == ["31UDQ"]
