"""Publishing STAC documents: the JSON file on S3 first (the source of truth), then the index.

An Item is indexed only once its file is complete, so a search never returns a half-written
Item; the index can always be rebuilt from the files (`reindex`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pystac

from . import errors, stac_items, storage
from .catalog import Catalog
from .muscate import ProductName
from .storage import DataBucket


def ensure_collection(bucket: DataBucket, catalog: Catalog, collection_id: str) -> None:
    try:
        catalog.get_collection(collection_id)
    except errors.NotFound:
        document = stac_items.make_collection(collection_id).to_dict(include_self_link=False)
        bucket.put_json(storage.collection_key(collection_id), document)
        catalog.put_collection(document)


def publish_item(
    bucket: DataBucket, catalog: Catalog, item: pystac.Item, item_key: str
) -> dict[str, Any]:
    collection = item.collection_id or ""
    ensure_collection(bucket, catalog, collection)
    document = stac_items.item_document(item, item_key, storage.collection_key(collection))
    bucket.put_json(item_key, document)
    catalog.put_item(document)
    return document


def publish_document(
    bucket: DataBucket, catalog: Catalog, key: str, document: dict[str, Any]
) -> None:
    """Rewrite an Item already published (file, then index)."""
    bucket.put_json(key, document)
    catalog.put_item(document)


@dataclass
class SiblingUpdates:
    """The other versions' Items, rewritten with their new version links, to publish once the
    new Item is published (so every link points to a file that exists)."""

    bucket: DataBucket
    catalog: Catalog
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def publish_siblings(self) -> None:
        for key, document in self.documents.items():
            publish_document(self.bucket, self.catalog, key, document)


def version_label(version: tuple[int, int] | None) -> str:
    return f"{version[0]}.{version[1]}" if version else "0.0"


def publish_version_links(
    bucket: DataBucket,
    catalog: Catalog,
    item: pystac.Item,
    item_key: str,
    siblings: Mapping[str, str],
    version: tuple[int, int] | None,
) -> SiblingUpdates:
    """Link `item` with the other versions of its acquisition (`siblings`: id -> Item key) and
    prepare the rewrites of those whose links change (an older one becomes deprecated)."""
    keys = {**siblings, item.id: item_key}
    versions = {i: ProductName.parse(i).version or (0, 0) for i in siblings}
    versions[item.id] = version or (0, 0)
    history = stac_items.version_history(versions)
    stac_items.set_version(item, version_label(version), history[item.id], _hrefs(item_key, keys))
    updates = SiblingUpdates(bucket, catalog)
    for sibling_id, key in siblings.items():
        document = bucket.get_json(key)
        sibling = pystac.Item.from_dict(document, migrate=False)
        label = version_label(versions[sibling_id] if versions[sibling_id] != (0, 0) else None)
        stac_items.set_version(sibling, label, history[sibling_id], _hrefs(key, keys))
        rewritten = sibling.to_dict(include_self_link=False, transform_hrefs=False)
        if rewritten != document:
            updates.documents[key] = rewritten
    return updates


def _hrefs(from_key: str, keys: Mapping[str, str]) -> dict[str, str]:
    folder = posixpath.dirname(from_key)
    return {product: posixpath.relpath(key, folder) for product, key in keys.items()}
