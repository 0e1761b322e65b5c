"""The search index: a DynamoDB cache of the STAC Item JSON files, which stay the source of truth.

Records are keyed so that a search reads about as many records as it returns, never the table:

- an Item lives under ``pk = "item#{collection}#{yyyy-mm}"``, ``sk = "{utc datetime}#{id}"``, so a
  collection and a time range are a few range queries over monthly partitions;
- the same Item is copied under ``pk = "tile#{collection}#{grid:code}"`` (same ``sk``), so "this
  tile's items in this window" (the planner and the compositor) is one range query;
- the primary record carries ``item_key = "{collection}/{id}"``, indexed by the sparse GSI
  ``by_id``, so lookups by id need no datetime;
- a collection lives under ``pk = "collection"``, ``sk = id``, with its JSON, the string set
  ``months`` of the partitions holding items, the extent of its items and the string set
  ``cells`` of the 10-degree cells where its tiles lie, and a count of items per month
  (``count#yyyy-mm``, changed in the same transaction as the item's primary record), so that a
  search by collection and whole months knows ``numberMatched`` without reading the items;
- the extents of a collection's tiles are kept per cell, under ``pk = "cells#{collection}"``,
  ``sk = cell``, so that a small bbox reads one or two cell records to find the tile partitions
  it touches. One record for all the tiles of a collection would pass DynamoDB's 400 KB item
  limit at about 8,000 tiles (51 bytes a tile by DynamoDB's sizing rules; 2.9 MB for the 57,000
  Sentinel-2 tiles of the world); the busiest cell of the world holds about 190 tiles (10 KB).

Paging tokens are positions (partition and last sort key returned), so pages never skip or repeat
records, whatever was written in between.

The package splits the index along its seams: `records` (keys and codecs, pure), `planning`
(which partitions a search reads, pure), `index` (the writer), `search` (the reader).
"""

from __future__ import annotations

from sansnuages.stores.catalog.index import CatalogIndex
from sansnuages.stores.catalog.planning import SearchPage
from sansnuages.stores.catalog.search import CatalogSearch

__all__ = ["Catalog", "SearchPage"]


class Catalog(CatalogIndex, CatalogSearch):
    """The catalog index in one DynamoDB table: its writer and its searcher over one client."""
