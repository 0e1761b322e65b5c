"""Syntheses and snow seasons made stale by products that arrived (or were reprocessed) after
them.

When an L2A product is indexed, every L3A synthesis of its tile whose window holds its date
and which was not derived from it is out of date; when a snow map is indexed, so is every snow
season of its tile whose year or margins hold its date. Its Item gets `sansnuages:stale` and
the ids of the late products, so that a user (and the job status) sees it, and re-running the
month or the season writes a new version. Called by ingest once the product's Item is
published.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sansnuages import layout
from sansnuages.errors import TransientError
from sansnuages.stac.collections import (
    L2A_REFLECTANCE,
    SENTINEL2_L3A,
    SNOW_L2B,
    SNOW_SEASONS,
)
from sansnuages.stac.common import INGESTED_PROPERTY
from sansnuages.stac.extents import parse_datetime
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint

DERIVED: dict[str, tuple[str, timedelta]] = {
    **{collection: (SENTINEL2_L3A, timedelta(days=62)) for collection in L2A_REFLECTANCE},
    SNOW_L2B: (SNOW_SEASONS, timedelta(days=400)),
}
"""What each input collection is made into, and how far around an input's date to look for
those products by their `datetime`: syntheses are indexed at their centre (more than any
half-window away), seasons at their first day (a year and its margins away)."""


def derived_ids(item: dict[str, Any]) -> set[str]:
    """Ids of the products a synthesis was made from (its `derived_from` links)."""
    return set(derived_versions(item))


def derived_versions(item: dict[str, Any]) -> dict[str, str | None]:
    """The id of each product a synthesis was made from, with the `sansnuages:ingested` of
    the version it read (None when its link does not say)."""
    return {
        link["href"].rsplit("/", 1)[-1].removesuffix(".json"): link.get(INGESTED_PROPERTY)
        for link in item.get("links", [])
        if link.get("rel") == "derived_from"
    }


def is_made_stale_by(synthesis: dict[str, Any], product: dict[str, Any]) -> bool:
    """Whether `product` (an input's Item) falls in the synthesis' window (a season's with its
    margins) and is not the version of an input it was made from: another product, or a
    corrected one (the same id, indexed again since). Pure: both are Item documents."""
    same_tile = synthesis["properties"].get("grid:code") == product["properties"].get("grid:code")
    props = synthesis["properties"]
    margin = timedelta(days=int(props.get("sansnuages:margin_days") or 0))
    start = parse_datetime(props["start_datetime"]) - margin
    end = parse_datetime(props["end_datetime"]) + margin
    acquired = parse_datetime(product["properties"]["datetime"])
    if not (same_tile and start <= acquired <= end):
        return False
    versions = derived_versions(synthesis)
    if product["id"] not in versions:
        return True
    read, now = versions[product["id"]], product["properties"].get(INGESTED_PROPERTY)
    return read is not None and now is not None and now != read


def mark_stale_syntheses(
    bucket: DataBucket, catalog: Catalog, product: dict[str, Any], now: datetime | None = None
) -> list[str]:
    """Flag the syntheses (or seasons) `product` makes stale (Item file first, then the index);
    returns the ids this call marked. Idempotent: a product already recorded as late changes
    nothing."""
    derived = DERIVED.get(str(product.get("collection")))
    if derived is None:
        return []
    collection, margin = derived
    when = parse_datetime(product["properties"]["datetime"])
    page = catalog.search(
        collections=[collection],
        bbox=None,
        datetime_range=(when - margin, when + margin),
        ids=None,
        limit=100,
        token=None,
        filters={"grid:code": product["properties"].get("grid:code", "")},
    )
    marked = []
    for found in page.items:
        if not is_made_stale_by(found, product):
            continue
        if _mark(bucket, catalog, layout.item_key(found), product["id"], now):
            marked.append(str(found["id"]))
    return marked


def _mark(
    bucket: DataBucket,
    catalog: Catalog,
    key: str,
    product_id: str,
    now: datetime | None,
    tries: int = 20,
) -> bool:
    """Add `product_id` to the late inputs of the synthesis at `key`: the Item file with a
    conditional write (again on a lost race, so two late products at once both stay), then
    the index from the file as it is, again until the file no longer changes under it.
    True when this call added it."""
    for _ in range(tries):
        synthesis, etag = bucket.get_json_and_etag(key)
        if synthesis is None:
            return False
        late = synthesis["properties"].get("sansnuages:late_inputs", [])
        if product_id in late:
            _index_current(bucket, catalog, key)  # a retry after a crash past the file
            return False
        synthesis["properties"]["sansnuages:stale"] = True
        synthesis["properties"]["sansnuages:late_inputs"] = sorted([*late, product_id])
        synthesis["properties"]["updated"] = (now or datetime.now(UTC)).isoformat()
        if bucket.put_json_if(key, synthesis, etag):
            checkpoint("staleness.after-item-file")
            _index_current(bucket, catalog, key)
            return True
    raise TransientError(f"the Item file {key} kept changing while marking it stale")


def _index_current(bucket: DataBucket, catalog: Catalog, key: str) -> None:
    """Index the Item file as it is now, until it did not change while indexing (a writer that
    changed it after that indexes its own version later)."""
    for _ in range(20):
        document, etag = bucket.get_json_and_etag(key)
        if document is None:
            return
        catalog.put_item(document)
        if bucket.get_json_and_etag(key)[1] == etag:
            return
    raise TransientError(f"the Item file {key} kept changing while indexing it")
