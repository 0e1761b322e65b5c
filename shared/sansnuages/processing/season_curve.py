"""The season plot's data: the snow-covered share of an area per day of a season, gap-filled
and as observed, with the sensors of each observation day; as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from sansnuages.period import HydrologicalYear
from sansnuages.processing.snow_season_tile import SeasonSummary


def curve_document(
    where: dict[str, Any], year: HydrologicalYear, summary: SeasonSummary
) -> dict[str, Any]:
    """The season plot's data of an area (`where`: `{"tile": ...}`, or a polygon's facts): the
    snow-covered share of its pixels with a season, per day of the gap-filled series, and per
    observation day the clear share and the snow-covered share of what was clear, with the
    platforms seen that day (Sentinel-2 and Landsat-8 days are told apart by them)."""
    pixels = max(summary.pixels, 1)
    return {
        **where,
        "season": year.year,
        "start": year.start.isoformat(),
        "end": year.end.isoformat(),
        "pixels": summary.pixels,
        "daily": [
            {"date": year.date_of(day).isoformat(), "snow": round(count / pixels, 5)}
            for day, count in enumerate(summary.daily_snow)
        ],
        "observations": [
            {
                "date": year.date_of(obs.day).isoformat(),
                "platforms": list(obs.platforms),
                "clear": round(obs.clear / pixels, 5),
                "snow": round(obs.snow / obs.clear, 5) if obs.clear else None,
            }
            for obs in summary.observed
        ],
    }


CSV_COLUMNS = ("date", "snow_gap_filled", "observed", "platforms", "clear", "snow_observed")


def curve_csv(document: dict[str, Any]) -> str:
    """One row per day of the season: the gap-filled snow share, and where a product was
    seen that day, its platforms, clear share and observed snow share."""
    seen = {obs["date"]: obs for obs in document["observations"]}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for day in document["daily"]:
        obs = seen.get(day["date"])
        if obs is None:
            writer.writerow([day["date"], day["snow"], 0, "", "", ""])
        else:
            snow = "" if obs["snow"] is None else obs["snow"]
            platforms = " ".join(obs["platforms"])
            writer.writerow([day["date"], day["snow"], 1, platforms, obs["clear"], snow])
    return out.getvalue()
