"""Rebuild the catalog index from the STAC JSON files on S3.

The files are the source of truth and the index a cache of them: after a lost or corrupted
table, a schema change of the index, or a restore of the bucket, one pass over the files puts
every Collection and Item back, and removes index records whose file no longer exists. The
version links between products of one acquisition are recomputed from the files found (a
purged or restored version changes which one is the newest), rewriting the files that
disagree. The production statistics (`stores.catalog.stats`) are recomputed from the product
files found and from the reasons of `quarantine/`, and written over the counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from sansnuages.layout import QUARANTINE_PREFIX
from sansnuages.stages.publish import relink_all
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.catalog.stats import counts_from_items

logger = Logger(child=True)

ITEM_PREFIXES = ("l2a/", "l3a/", "mosaics/", "snow/")
COLLECTION_PREFIX = "collections/"
PRODUCT_PREFIX = "l2a/"
"""Ingested products, whose versions link to each other."""
PAGE = 500


@dataclass
class ReindexReport:
    collections: int = 0
    items: int = 0
    removed: int = 0
    relinked: int = 0
    """Item files whose version links disagreed with the versions found, rewritten."""
    skipped: list[str] = field(default_factory=list)
    """JSON files that are not STAC Items (job plans, parts), left alone."""
    quarantined: int = 0
    """Quarantined uploads counted from their reasons."""


def is_item(document: Mapping[str, Any]) -> bool:
    return (
        document.get("type") == "Feature"
        and "stac_version" in document
        and bool(document.get("collection"))
        and bool(document.get("id"))
    )


def reindex(bucket: DataBucket, catalog: Catalog) -> ReindexReport:
    """Index every Collection and Item file; drop index records without a file."""
    report = ReindexReport()
    for key in _json_keys(bucket, (COLLECTION_PREFIX,)):
        catalog.put_collection(bucket.get_json(key))
        report.collections += 1
    found: dict[str, set[str]] = {}
    products: dict[str, dict[str, Any]] = {}
    for key in _json_keys(bucket, ITEM_PREFIXES):
        document = bucket.get_json(key)
        if not is_item(document):
            report.skipped.append(key)
            continue
        catalog.put_item(document)
        found.setdefault(document["collection"], set()).add(document["id"])
        report.items += 1
        if key.startswith(PRODUCT_PREFIX):
            products[key] = document
    report.relinked = relink_all(bucket, catalog, products)
    days = _quarantine_days(bucket)
    report.quarantined = len(days)
    catalog.put_stats(counts_from_items(products.values(), days))
    for collection_id, item_id in _indexed(catalog):
        if item_id not in found.get(collection_id, set()):
            catalog.delete_item(collection_id, item_id)
            report.removed += 1
    logger.info("reindexed", extra=vars(report) | {"skipped": len(report.skipped)})
    return report


def _quarantine_days(bucket: DataBucket) -> list[str]:
    """The day (UTC) each quarantined upload was set aside, from its reason file."""
    days = []
    for key in bucket.list_keys(QUARANTINE_PREFIX):
        if not key.endswith(".reason.json"):
            continue
        try:
            reason = bucket.get_json(key)
        except (ValueError, TypeError):  # an upload itself named like a reason
            continue
        at = reason.get("at") if isinstance(reason, dict) else None
        if isinstance(at, str) and len(at) >= 10:
            days.append(at[:10])
    return days


def _json_keys(bucket: DataBucket, prefixes: tuple[str, ...]) -> Iterator[str]:
    for prefix in prefixes:
        yield from (key for key in bucket.list_keys(prefix) if key.endswith(".json"))


def _indexed(catalog: Catalog) -> list[tuple[str, str]]:
    """Every (collection, id) of the index, read page by page before anything is deleted."""
    pairs: list[tuple[str, str]] = []
    pairs.extend(
        (item["collection"], item["id"]) for item in catalog.iter_items(None, page_size=PAGE)
    )
    return pairs
