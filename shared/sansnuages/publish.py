"""Publishing STAC documents: the JSON file on S3 first (the source of truth), then the index.

An Item is indexed only once its file is complete, so a search never returns a half-written
Item; the index can always be rebuilt from the files.
"""

from __future__ import annotations

from typing import Any

import pystac

from . import errors, stac_items, storage
from .catalog import Catalog
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
