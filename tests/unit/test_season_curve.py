"""The season plot's data: shares of the pixels with a season, per day and per observation."""

from __future__ import annotations

import csv
import io

from sansnuages.period import HydrologicalYear
from sansnuages.processing.season_curve import CSV_COLUMNS, curve_csv, curve_document
from sansnuages.processing.snow_season_tile import ObservationDay, SeasonSummary

YEAR = HydrologicalYear(2019)  # 365 days


def _summary() -> SeasonSummary:
    daily = [0] * YEAR.n_days
    daily[100:200] = [40] * 100  # 40 of 80 pixels snow-covered from day 100 to 199
    return SeasonSummary(
        used=("S2-a", "L8-b", "S2-c"),
        sentinel2_observations=2,
        landsat8_observations=1,
        pixels=80,
        daily_snow=tuple(daily),
        observed=(
            ObservationDay(-3, ("sentinel-2a",), clear=80, snow=0),  # in the first margin
            ObservationDay(150, ("sentinel-2b", "landsat-8"), clear=20, snow=10),
            ObservationDay(151, ("landsat-8",), clear=0, snow=0),  # all cloud
        ),
    )


def test_the_document_gives_shares_of_the_pixels_with_a_season() -> None:
    document = curve_document({"tile": "31TCH"}, YEAR, _summary())
    assert document["tile"] == "31TCH" and document["season"] == 2019
    assert (document["start"], document["end"]) == ("2018-09-01", "2019-08-31")
    shares = [day["snow"] for day in document["daily"]]
    assert len(shares) == 365 and shares[99] == 0 and shares[100] == shares[199] == 0.5
    assert document["daily"][100]["date"] == "2018-12-10"
    margin, both, cloudy = document["observations"]
    assert margin == {"date": "2018-08-29", "platforms": ["sentinel-2a"], "clear": 1.0, "snow": 0.0}
    assert (both["clear"], both["snow"]) == (0.25, 0.5)
    assert cloudy["clear"] == 0 and cloudy["snow"] is None  # nothing seen: no share of it


def test_the_csv_has_a_row_per_day_of_the_year_and_marks_the_observation_days() -> None:
    text = curve_csv(curve_document({"tile": "31TCH"}, YEAR, _summary()))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 365  # the margin day is not a row
    seen = [row for row in rows if row["observed"] == "1"]
    assert [row["date"] for row in seen] == ["2019-01-29", "2019-01-30"]  # days 150, 151
    assert seen[0]["platforms"] == "sentinel-2b landsat-8" and seen[0]["snow_observed"] == "0.5"
    assert seen[1]["snow_observed"] == "" and rows[0]["platforms"] == ""
