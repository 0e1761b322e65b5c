"""Publishing STAC documents: the JSON file on S3 first (the source of truth), then the index.

An Item is indexed only once its file is complete, so a search never returns a half-written
Item; the index can always be rebuilt from the files (`reindex`).

Two things are shared by several writers that may run at the same instant, and are kept
right without locks:

- the **Collection file**: its extent grows by read, widen, conditional write (`If-Match` on
  the ETag read, `If-None-Match: *` to create), retried when another writer got there first,
  so no Item's extent is lost;
- the **version links** between the products of one acquisition: every writer, after
  publishing, re-reads the versions' files and rewrites those whose links disagree with the
  set it sees, until a pass changes nothing. Links are a function of the set of versions only,
  and that set only grows, so the last writer to finish sees every version and leaves every
  file (and its index record) with the same links, whatever the order or timing.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pystac

from sansnuages import errors, layout
from sansnuages.formats.muscate import ProductName
from sansnuages.stac.collections import make_collection, new_extent, widened_extent
from sansnuages.stac.common import COG, item_document
from sansnuages.stac.extents import item_bbox, item_interval
from sansnuages.stac.versions import relinked, version_fields
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog

MAX_ATTEMPTS = 10
"""Conditional writes or link passes before giving up (the message is then retried)."""
SINGLE_PUT_BYTES = 8 * 2**20
"""Files up to this size are stored with one PUT (boto3's own threshold for parts)."""


# --- Files ---------------------------------------------------------------------------------


def upload_file(bucket: DataBucket, path: str, key: str, content_type: str = COG) -> int:
    """Store a local file at `key`; its size in bytes.

    Rasters are written on local disk and then stored this way, rather than written by GDAL
    to `/vsis3/`: GDAL creating a new object costs about ten requests (existence checks,
    listings of the folder, sidecar probes) where this costs one PUT (or a multipart upload
    above `SINGLE_PUT_BYTES`), and the size is known without asking. Only for keys that never
    get other bytes (a product's files, named after its run): GDAL's cache of what it read
    from `/vsis3/` in this process forgets a key that GDAL rewrites, not one stored this way
    (a mosaic rebuilt on another grid, at the same key, is written by GDAL)."""
    size = os.path.getsize(path)
    if size <= SINGLE_PUT_BYTES:
        with open(path, "rb") as body:
            bucket.client.put_object(
                Bucket=bucket.name, Key=key, Body=body, ContentType=content_type
            )
    else:
        extra = {"ContentType": content_type}
        bucket.client.upload_file(path, bucket.name, key, ExtraArgs=extra)
    return size


# --- Collections ---------------------------------------------------------------------------


_INDEXED: set[tuple[str, str]] = set()
"""(table, collection id) of the collection records this process found or wrote: a record is
never removed, so each publisher reads it once, not once per Item (a request per tile)."""


def ensure_collection(bucket: DataBucket, catalog: Catalog, collection_id: str) -> None:
    """Index the collection once (its extent in the index comes from the Items indexed)."""
    known = (catalog.table, collection_id)
    if known in _INDEXED:
        return
    try:
        catalog.get_collection(collection_id)
    except errors.NotFound:
        document = make_collection(collection_id).to_dict(include_self_link=False)
        catalog.put_collection(document)
    _INDEXED.add(known)


def widen_collection(bucket: DataBucket, collection_id: str, item: Mapping[str, Any]) -> bool:
    """Grow the Collection file's extent to cover `item`; True when the file was written.

    Read, widen, write only if the file is still the one read (S3 conditional writes); on a
    lost race read again. Covering an Item twice changes nothing (idempotent)."""
    key = layout.collection_key(collection_id)
    start, end = item_interval(item)
    for _ in range(MAX_ATTEMPTS):
        current, etag = bucket.get_json_and_etag(key)
        if current is None:
            fresh = make_collection(collection_id).to_dict(include_self_link=False)
            document = {**fresh, "extent": new_extent(item_bbox(item), start, end)}
        else:
            extent = widened_extent(current.get("extent") or {}, item_bbox(item), start, end)
            if extent == current.get("extent"):
                return False
            document = {**current, "extent": extent}
        if bucket.put_json_if(key, document, etag):
            return True
    raise errors.TransientError(f"collection file {key} kept changing")


# --- Items ---------------------------------------------------------------------------------


def publish_item(
    bucket: DataBucket, catalog: Catalog, item: pystac.Item, item_key: str
) -> dict[str, Any]:
    """Write the Item file, index it, then make its Collection file cover it."""
    collection = item.collection_id or ""
    ensure_collection(bucket, catalog, collection)
    document = item_document(item, item_key, layout.collection_key(collection))
    bucket.put_json(item_key, document)
    catalog.put_item(document)
    widen_collection(bucket, collection, document)
    return document


def publish_document(
    bucket: DataBucket, catalog: Catalog, key: str, document: dict[str, Any]
) -> None:
    """Rewrite an Item already published (file, then index)."""
    bucket.put_json(key, document)
    catalog.put_item(document)


# --- versions of one acquisition ------------------------------------------------------------


def published_versions(
    bucket: DataBucket, month_prefix: str, name: ProductName
) -> dict[str, dict[str, Any]]:
    """The Item files of every published version of `name`'s acquisition, by key: the folders
    under the tile and month named after the acquisition that hold their Item file."""
    found: dict[str, dict[str, Any]] = {}
    for folder in bucket.list_folders(f"{month_prefix}{name.acquisition}_"):
        product_id = folder.rstrip("/").rsplit("/", 1)[-1]
        key = f"{folder}{product_id}.json"
        document = bucket.get_json_or_none(key)
        if document is not None and document.get("id") == product_id:
            found[key] = document
    return found


def link_versions(
    bucket: DataBucket, catalog: Catalog, month_prefix: str, name: ProductName
) -> int:
    """Make the version links of every published version of an acquisition agree, in the
    files and in the index; returns how many documents were rewritten. Passes repeat until
    one changes nothing (see the module docstring for why that converges)."""
    rewritten = 0
    for _ in range(MAX_ATTEMPTS):
        documents = published_versions(bucket, month_prefix, name)
        changes = relinked(documents)
        for key, document in changes.items():
            publish_document(bucket, catalog, key, document)
        stale = _stale_index_records(catalog, documents, changes)
        for document in stale:
            catalog.put_item(document)
        if not changes and not stale:
            return rewritten
        rewritten += len(changes)
    raise errors.TransientError(f"versions of {name.acquisition} kept changing")


def _stale_index_records(
    catalog: Catalog,
    documents: Mapping[str, dict[str, Any]],
    changes: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Files whose index record carries other version links (a writer's index write that
    landed after another's): the file is the truth."""
    stale = []
    for key, document in documents.items():
        if key in changes:
            continue
        try:
            indexed = catalog.get_item(str(document["collection"]), str(document["id"]))
        except errors.NotFound:
            indexed = {}
        if version_fields(indexed) != version_fields(document):
            stale.append(document)
    return stale


def relink_all(
    bucket: DataBucket, catalog: Catalog, documents: Mapping[str, Mapping[str, Any]]
) -> int:
    """Recompute the version links of every product Item among `documents` (by key), group by
    acquisition, rewriting the files and index records that disagree (`reindex`)."""
    groups: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for key, document in documents.items():
        try:
            name = ProductName.parse(str(document.get("id")))
        except errors.InvalidProduct:
            continue
        if name.level.startswith(("L2A", "L2B")):
            group = (posixpath.dirname(posixpath.dirname(key)), name.acquisition)
            groups.setdefault(group, {})[key] = document
    rewritten = 0
    for members in groups.values():
        for key, document in relinked(members).items():
            publish_document(bucket, catalog, key, document)
            rewritten += 1
    return rewritten


# --- Runs of a job's products --------------------------------------------------------------


def run_number(product_id: str) -> int:
    """The run number of a product a job made (`..._V1-3` -> 3); 0 when it carries none."""
    _, _, tail = product_id.rpartition("_V")
    minor = tail.rpartition("-")[2]
    return int(minor) if minor.isdigit() else 0


def retire_older_versions(
    catalog: Catalog, collection_id: str, when: datetime, tile: str, version: int
) -> None:
    """Once run `version` of a tile's product is indexed, earlier runs leave the index (their
    files stay at their keys until purged), so a search never mixes two runs of one tile and
    period. `when` is the products' `datetime`. The first run (0) has none to retire."""
    if version <= 0:
        return
    page = catalog.search(
        collections=[collection_id],
        bbox=None,
        datetime_range=(when, when),
        ids=None,
        limit=100,
        token=None,
        filters={"grid:code": f"MGRS-{tile}"},
    )
    for old in page.items:
        if run_number(old["id"]) < version:
            catalog.delete_item(collection_id, old["id"])
