"""The data bucket's layout (the design notes' prefixes): the one place keys are spelt out, so
that every stage, and every Item that points at another, agrees on them. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sansnuages.stac.collections import (
    L2A_REFLECTANCE,
    MOSAICS,
    SENTINEL2_L3A,
    SNOW_L2B,
    SNOW_SEASONS,
)
from sansnuages.stac.common import tile_of
from sansnuages.stac.extents import parse_datetime

INCOMING_PREFIX = "incoming/"
QUARANTINE_PREFIX = "quarantine/"


def l2a_month_prefix(collection: str, tile: str, acquired: datetime) -> str:
    return f"l2a/{collection}/{tile}/{acquired:%Y/%m}/"


def l2a_prefix(collection: str, tile: str, acquired: datetime, product_id: str) -> str:
    return f"{l2a_month_prefix(collection, tile, acquired)}{product_id}/"


def l3a_prefix(tile: str, year: int, month: int, product_id: str) -> str:
    return f"l3a/{tile}/{year:04d}/{month:02d}/{product_id}/"


def season_prefix(tile: str, year: int, product_id: str) -> str:
    """A snow season's folder: `year` is the one it ends in (2018: 1 Sept 2017 to 31 Aug 2018)."""
    return f"snow-seasons/{tile}/{year:04d}/{product_id}/"


def mosaic_prefix(area_id: str, year: int, month: int) -> str:
    return f"mosaics/{area_id}/{year:04d}/{month:02d}/"


def collection_key(collection_id: str) -> str:
    return f"collections/{collection_id}.json"


def s3_href(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def vsi_path(bucket: str, key: str) -> str:
    return f"/vsis3/{bucket}/{key}"


def split_s3_href(href: str) -> tuple[str, str]:
    if not href.startswith("s3://"):
        raise ValueError(f"not an s3:// href: {href}")
    bucket, _, key = href[5:].partition("/")
    return bucket, key


def item_key(item: Mapping[str, Any]) -> str:
    """Where the Item file of `item` is stored, from its collection, tile, date and id: how a
    product points at the Items it was made from without cutting their asset hrefs."""
    collection, item_id = str(item["collection"]), str(item["id"])
    properties = item["properties"]
    when = parse_datetime(str(properties.get("datetime") or properties.get("start_datetime")))
    if collection in (*L2A_REFLECTANCE, SNOW_L2B):
        return f"{l2a_prefix(collection, _tile(item), when, item_id)}{item_id}.json"
    if collection == SENTINEL2_L3A:
        return f"{l3a_prefix(_tile(item), when.year, when.month, item_id)}{item_id}.json"
    if collection == SNOW_SEASONS:
        ends = parse_datetime(str(properties["end_datetime"]))
        return f"{season_prefix(_tile(item), ends.year, item_id)}{item_id}.json"
    if collection == MOSAICS:
        piece = int(properties.get("sansnuages:piece") or 0)
        folder = mosaic_prefix(str(properties["sansnuages:area_id"]), when.year, when.month)
        return f"{folder}{f'p{piece}/' if piece else ''}{item_id}.json"
    raise ValueError(f"no layout for collection {collection!r}")


def item_href(bucket: str, item: Mapping[str, Any]) -> str:
    return s3_href(bucket, item_key(item))


def _tile(item: Mapping[str, Any]) -> str:
    tile = tile_of(dict(item))
    if not tile:
        raise ValueError(f"item {item.get('id')!r} has no grid:code")
    return tile
