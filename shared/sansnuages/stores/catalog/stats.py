"""Production statistics kept in the catalog table: counters per day, on two axes.

- **Acquired** (coverage), ``pk = "stats#acquired"``, ``sk = yyyy-mm-dd`` of acquisition: one
  counter per collection and platform (``sentinel2-l2a|sentinel-2b``), and the products over
  90 % cloud apart (``...|cloudy``). A reprocessed product counts once: each acquisition
  leaves a marker (``pk = "acquisition#{collection}"``, ``sk = "{tile}#{datetime}"``) written
  only if absent, and the counter moves only with a new marker.
- **Ingested** (production), ``pk = "stats#ingested"``, ``sk = yyyy-mm-dd`` of ingest: every
  product ingested, reprocessings included (``{collection}|{platform}``), and every upload
  quarantined (``quarantined``).

Counters move in the transaction that writes an Item's primary record (`CatalogIndex`), so
they can never count an Item the index does not hold; reading a range of days is one Query
of one partition per axis, never a scan. `counts_from_items` recomputes them from Item
files and quarantine reasons, which is how `reindex` corrects them.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sansnuages.stac.common import CLOUDY_PROPERTY, INGESTED_PROPERTY
from sansnuages.stores.catalog.records import from_attrs
from sansnuages.stores.catalog.table import IndexTable

ACQUIRED_PK = "stats#acquired"
INGESTED_PK = "stats#ingested"
MARKER_PREFIX = "acquisition#"
QUARANTINED = "quarantined"
CLOUDY_SUFFIX = "|cloudy"
PRODUCT_COLLECTIONS = frozenset({"sentinel2-l2a", "landsat8-l2a", "snow-l2b"})
"""The collections of ingested products: syntheses and mosaics are not counted here."""


def counted(item: Mapping[str, Any]) -> bool:
    return item.get("collection") in PRODUCT_COLLECTIONS


def ingest_day(item: Mapping[str, Any]) -> str:
    """The day the product was ingested; for an Item written before that was recorded, the
    day it was produced, else acquired."""
    properties = item.get("properties", {})
    for name in (INGESTED_PROPERTY, "created", "datetime"):
        value = properties.get(name)
        if isinstance(value, str) and len(value) >= 10:
            return value[:10]
    raise ValueError(f"Item {item.get('id')!r} has no date")


def acquisition_day(item: Mapping[str, Any]) -> str:
    properties = item.get("properties", {})
    value = properties.get("datetime") or properties.get("start_datetime")
    return str(value)[:10]


def counter_name(item: Mapping[str, Any]) -> str:
    platform = item.get("properties", {}).get("platform") or "unknown"
    return f"{item['collection']}|{platform}"


def is_cloudy(item: Mapping[str, Any]) -> bool:
    return bool(item.get("properties", {}).get(CLOUDY_PROPERTY, False))


def marker_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """(pk, sk) of the acquisition marker: one per tile and acquisition instant, whatever the
    version or processing flag."""
    properties = item.get("properties", {})
    tile = properties.get("grid:code") or "-"
    return f"{MARKER_PREFIX}{item['collection']}", f"{tile}#{properties.get('datetime')}"


def acquired_counter(item: Mapping[str, Any]) -> str:
    return counter_name(item) + (CLOUDY_SUFFIX if is_cloudy(item) else "")


@dataclass
class Counts:
    """Counters by partition and day: what the table should hold."""

    days: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    markers: set[tuple[str, str]] = field(default_factory=set)

    def add(self, pk: str, day: str, name: str, n: int = 1) -> None:
        self.days.setdefault((pk, day), Counter())[name] += n


def counts_from_items(
    items: Iterable[Mapping[str, Any]], quarantine_days: Iterable[str] = ()
) -> Counts:
    """The counters recomputed from Item documents and the days of quarantined uploads.

    Of the versions of one acquisition, the one first ingested is the one counted, as ingest
    counts it (a tie goes to the first id)."""
    counts = Counts()
    first: dict[tuple[str, str], Mapping[str, Any]] = {}
    for item in items:
        if not counted(item):
            continue
        counts.add(INGESTED_PK, ingest_day(item), counter_name(item))
        key = marker_key(item)
        held = first.get(key)
        if held is None or (ingest_day(item), item["id"]) < (ingest_day(held), held["id"]):
            first[key] = item
    for key, item in first.items():
        counts.markers.add(key)
        counts.add(ACQUIRED_PK, acquisition_day(item), acquired_counter(item))
    for day in quarantine_days:
        counts.add(INGESTED_PK, day[:10], QUARANTINED)
    return counts


# --- reading ---------------------------------------------------------------------------------


def read_days(table: IndexTable, pk: str, start: date, end: date) -> dict[str, dict[str, int]]:
    """The counter records of one axis from `start` to `end`: one Query of its partition
    (`sk` between the two days), by day."""
    kwargs: dict[str, Any] = {
        "TableName": table.table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {
            ":pk": {"S": pk},
            ":a": {"S": start.isoformat()},
            ":b": {"S": end.isoformat()},
        },
    }
    days: dict[str, dict[str, int]] = {}
    while True:
        response = table.client.query(**kwargs)
        for attrs in response.get("Items", []):
            record = from_attrs(attrs)
            day = record.pop("sk")
            record.pop("pk", None)
            days[day] = {
                k: int(v) for k, v in record.items() if isinstance(v, int | float | Decimal)
            }
        if "LastEvaluatedKey" not in response:
            return days
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def production_stats(
    table: IndexTable, start: date, end: date, collections: Iterable[str] | None = None
) -> dict[str, Any]:
    """The production statistics document of a range of days (two Queries)."""
    acquired = read_days(table, ACQUIRED_PK, start, end)
    ingested = read_days(table, INGESTED_PK, start, end)
    return production_document(acquired, ingested, start, end, collections)


def _days(start: date, end: date) -> list[date]:
    return [date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1)]


def production_document(
    acquired: Mapping[str, Mapping[str, int]],
    ingested: Mapping[str, Mapping[str, int]],
    start: date,
    end: date,
    collections: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Daily counts by platform on both axes and the monthly averages of daily acquisitions
    (products over 90 % cloud left out), from the counter records of the days (by day)."""
    wanted = set(collections) if collections else None

    def keep(name: str) -> tuple[str, str, bool] | None:
        parts = name.split("|")
        if len(parts) < 2 or (wanted is not None and parts[0] not in wanted):
            return None
        return parts[0], parts[1], len(parts) > 2 and parts[2] == "cloudy"

    days = []
    months: dict[str, dict[str, Any]] = {}
    for day in _days(start, end):
        text = day.isoformat()
        clear: Counter[str] = Counter()
        cloudy: Counter[str] = Counter()
        done: Counter[str] = Counter()
        for name, n in acquired.get(text, {}).items():
            parsed = keep(name)
            if parsed is not None:
                (cloudy if parsed[2] else clear)[parsed[1]] += int(n)
        for name, n in ingested.get(text, {}).items():
            parsed = keep(name)
            if parsed is not None:
                done[parsed[1]] += int(n)
        quarantined = int(ingested.get(text, {}).get(QUARANTINED, 0))
        days.append(
            {
                "date": text,
                "acquired": dict(sorted(clear.items())),
                "acquired_cloudy": dict(sorted(cloudy.items())),
                "ingested": dict(sorted(done.items())),
                "quarantined": quarantined,
            }
        )
        month = months.setdefault(
            text[:7], {"month": text[:7], "days": 0, "acquired": 0, "acquired_cloudy": 0,
                       "ingested": 0, "quarantined": 0, "by_platform": Counter()},
        )  # fmt: skip
        month["days"] += 1
        month["acquired"] += sum(clear.values())
        month["acquired_cloudy"] += sum(cloudy.values())
        month["ingested"] += sum(done.values())
        month["quarantined"] += quarantined
        month["by_platform"].update(clear)
    monthly = []
    for month in months.values():
        n = month["days"]
        monthly.append(
            {
                **{k: v for k, v in month.items() if k != "by_platform"},
                "daily_average": round(month["acquired"] / n, 4),
                "daily_average_by_platform": {
                    p: round(c / n, 4) for p, c in sorted(month["by_platform"].items())
                },
                "whole_month": n == calendar.monthrange(int(month["month"][:4]),
                                                        int(month["month"][5:]))[1],
            }
        )  # fmt: skip
    return {
        "type": "ProductionStatistics",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "collections": sorted(wanted) if wanted else sorted(PRODUCT_COLLECTIONS),
        "days": days,
        "monthly": monthly,
    }


def production_csv(document: Mapping[str, Any]) -> str:
    """One row per day and platform: acquired, acquired over 90 % cloud, ingested; and one row
    per day for the uploads quarantined (platform left empty)."""
    lines = ["date,platform,acquired,acquired_cloudy,ingested,quarantined"]
    for day in document["days"]:
        platforms = sorted({*day["acquired"], *day["acquired_cloudy"], *day["ingested"]})
        for p in platforms:
            lines.append(
                f"{day['date']},{p},{day['acquired'].get(p, 0)},"
                f"{day['acquired_cloudy'].get(p, 0)},{day['ingested'].get(p, 0)},0"
            )
        if day["quarantined"]:
            lines.append(f"{day['date']},,0,0,0,{day['quarantined']}")
    return "\n".join(lines) + "\n"
