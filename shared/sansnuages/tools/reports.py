"""The `timeseries` and `stats production` commands: what operators look at every week, from
the catalog index and the COGs, printed, written as CSV and drawn as PNG (matplotlib)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sansnuages.settings import Settings

SettingsOf = Callable[[argparse.Namespace], "Settings"]


def add_timeseries(
    commands: Any, formatter: Any, settings_of: SettingsOf
) -> argparse.ArgumentParser:
    series: argparse.ArgumentParser = commands.add_parser(
        "timeseries",
        help="surface reflectance and AOT at a point over time (the stability plot)",
        description="Every Sentinel-2 and Landsat-8 L2A product of the catalog over a point:\n"
        "reflectance per band, AOT, flags and angles, read from a few pixels of each COG.",
        epilog="examples:\n"
        "  sansnuages timeseries --lon 4.35 --lat 50.85 --from 2018-01-01 --to 2018-12-31\n"
        "  sansnuages timeseries --lon 4.35 --lat 50.85 --from 2018-07-01 --to 2018-07-31 \\\n"
        "      --bands B2,B4,B8,B11 --png stability.png --csv series.csv",
        formatter_class=formatter,
    )
    series.add_argument("--lon", type=float, required=True, help="longitude (degrees)")
    series.add_argument("--lat", type=float, required=True, help="latitude (degrees)")
    series.add_argument("--from", dest="start", required=True, help="first day, yyyy-mm-dd")
    series.add_argument("--to", dest="end", required=True, help="last day, yyyy-mm-dd")
    series.add_argument("--bands", default="B2,B3,B4,B8", help="Sentinel-2 band names")
    series.add_argument(
        "--versions",
        choices=("newest", "all"),
        default="newest",
        help="all: every version of a reprocessed product",
    )
    series.add_argument("--png", type=Path, help="draw the stability plot into this PNG")
    series.add_argument("--csv", type=Path, help="write the observations as CSV")
    series.add_argument("--json", action="store_true", help="print the JSON document")
    series.set_defaults(func=lambda args: run_timeseries(args, settings_of(args)))
    return series


def run_timeseries(args: argparse.Namespace, settings: Settings) -> int:
    from sansnuages.api.timeseries_routes import parse_series
    from sansnuages.processing.timeseries import series_csv
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.stores.catalog import Catalog
    from sansnuages.stores.timeseries import time_series
    from sansnuages.tools.plots import series_table, stability_plot

    use_gdal(settings)
    params = {
        "lon": args.lon,
        "lat": args.lat,
        "datetime": f"{args.start}/{args.end}",
        "bands": args.bands,
        "versions": args.versions,
    }
    query, _ = parse_series(params)
    result = time_series(Catalog(settings.catalog_table, settings=settings), query)
    document = {
        "bands": list(query.bands),
        "observations": [o.to_dict() for o in result.observations],
    }
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        print("\n".join(series_table(document)))
        print(f"{len(result.observations)} observations, {result.reads} rasters read")
    if args.csv:
        args.csv.write_text(series_csv(result.observations, query.bands))
    if args.png:
        title = f"{args.lat:.4f}, {args.lon:.4f}: surface reflectance (filled: clear)"
        print(f"plot written: {stability_plot(document, args.png, title)}")
    return 0


def add_stats(commands: Any, formatter: Any, settings_of: SettingsOf) -> argparse.ArgumentParser:
    stats: argparse.ArgumentParser = commands.add_parser(
        "stats",
        help="production statistics (the production counter)",
        description="Counters kept at ingest in the catalog index.",
        epilog="example:\n  sansnuages stats production --from 2018-07-01 --to 2018-07-31 "
        "--png production.png",
        formatter_class=formatter,
    )
    kinds = stats.add_subparsers(dest="kind", required=True, metavar="KIND")
    production = kinds.add_parser(
        "production",
        help="products a day by platform, with the monthly average",
        description="Products acquired per day and platform (those over 90 % cloud apart),\n"
        "products ingested and uploads quarantined per day, and each month's average of\n"
        "daily acquisitions (over 90 % cloud left out).",
        epilog="examples:\n"
        "  sansnuages stats production --from 2018-07-01 --to 2018-07-31\n"
        "  sansnuages stats production --from 2018-01-01 --to 2018-12-31 "
        "--collection sentinel2-l2a --png production.png",
        formatter_class=formatter,
    )
    production.add_argument("--from", dest="start", required=True, help="first day, yyyy-mm-dd")
    production.add_argument("--to", dest="end", required=True, help="last day, yyyy-mm-dd")
    production.add_argument("--collection", help="one collection (default: every product's)")
    production.add_argument("--png", type=Path, help="draw the daily bars into this PNG")
    production.add_argument("--json", action="store_true", help="print the JSON document")
    production.set_defaults(func=lambda args: run_stats_production(args, settings_of(args)))
    return production


def run_stats_production(args: argparse.Namespace, settings: Settings) -> int:
    from sansnuages.api.stats_routes import parse_stats
    from sansnuages.stores.catalog import Catalog
    from sansnuages.stores.catalog.stats import production_stats
    from sansnuages.tools.plots import production_plot

    params = {"from": args.start, "to": args.end}
    if args.collection:
        params["collection"] = args.collection
    start, end, collections, _ = parse_stats(params)
    catalog = Catalog(settings.catalog_table, settings=settings)
    document = production_stats(catalog, start, end, collections)
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        print("month    days  acquired  >90% cloud  daily average  ingested  quarantined")
        for m in document["monthly"]:
            print(
                f"{m['month']}  {m['days']:4}  {m['acquired']:8}  {m['acquired_cloudy']:10}  "
                f"{m['daily_average']:13.2f}  {m['ingested']:8}  {m['quarantined']:11}"
            )
    if args.png:
        print(f"plot written: {production_plot(document, args.png)}")
    return 0


def add_season_plot(
    commands: Any, formatter: Any, settings_of: SettingsOf
) -> argparse.ArgumentParser:
    plot: argparse.ArgumentParser = commands.add_parser(
        "season-plot",
        help="snow-covered area per day over a snow season, of a tile or a polygon",
        description="The snow-covered share of a tile (stored with its season) or of a small polygon\n"
        "(computed from the snow maps under it) per day of a hydrological year: the gap-filled\n"
        "curve, and the observation days, Sentinel-2 and Landsat-8 marked apart.",
        epilog="examples:\n"
        "  sansnuages season-plot 2018 --tile 31TCH --png season.png\n"
        "  sansnuages season-plot 2018 --polygon valley.geojson --csv valley.csv",
        formatter_class=formatter,
    )
    plot.add_argument("season", help="the year the season ends in (2018: Sep 2017 to Aug 2018)")
    where = plot.add_mutually_exclusive_group(required=True)
    where.add_argument("--tile", help="a Sentinel-2 tile, e.g. 31TCH")
    where.add_argument("--polygon", type=Path, help="a GeoJSON file of one small Polygon")
    plot.add_argument("--png", type=Path, help="draw the season plot into this PNG")
    plot.add_argument("--csv", type=Path, help="write the daily values as CSV")
    plot.add_argument("--json", action="store_true", help="print the JSON document")
    plot.set_defaults(func=lambda args: run_season_plot(args, settings_of(args)))
    return plot


def run_season_plot(args: argparse.Namespace, settings: Settings) -> int:
    from sansnuages.api.season_routes import season_curve_response
    from sansnuages.processing.season_curve import curve_csv
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.stores.catalog import Catalog
    from sansnuages.tools.plots import season_plot

    use_gdal(settings)
    params: dict[str, Any] = {"season": args.season}
    if args.tile:
        params["tile"] = args.tile
    else:
        params["geometry"] = _polygon_of(args.polygon)
    catalog = Catalog(settings.catalog_table, settings=settings)
    response = season_curve_response(catalog, DataBucket(settings), params)
    body = response.body
    document = json.loads(body.decode() if isinstance(body, bytes) else str(body))
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        seen = document["observations"]
        peak = max(document["daily"], key=lambda d: d["snow"])
        print(
            f"season {document['season']} ({document['start']} to {document['end']}), tile "
            f"{document['tile']}: {document['pixels']:,} pixels with a season, "
            f"{len(seen)} observation days; most snow {peak['snow']:.0%} on {peak['date']}"
        )
    if args.csv:
        args.csv.write_text(curve_csv(document))
    if args.png:
        title = f"Snow season {document['season']}, tile {document['tile']}"
        print(f"plot written: {season_plot(document, args.png, title)}")
    return 0


def _polygon_of(path: Path) -> dict[str, Any]:
    """The one Polygon of a GeoJSON file (a geometry, a Feature, or a collection of one)."""
    from sansnuages.errors import InvalidRequest

    document = json.loads(path.read_text("utf-8"))
    if document.get("type") == "FeatureCollection":
        features = document.get("features") or []
        if len(features) != 1:
            raise InvalidRequest(f"{path}: give one polygon, not {len(features)} features")
        document = features[0]
    if document.get("type") == "Feature":
        document = document.get("geometry") or {}
    return dict(document)
