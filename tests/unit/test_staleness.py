"""Which products make a synthesis stale: another product in its window, or a corrected one
(the same id, indexed again since the synthesis read it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sansnuages.stac.common import INGESTED_PROPERTY, ItemFacts, Source, build_item
from sansnuages.stages.staleness import derived_versions, is_made_stale_by

READ = "2018-07-20T10:00:00Z"
HREF = "s3://data/l2a/sentinel2-l2a/31UFS/2018/07/{id}/{id}.json"


def _synthesis(*sources: Source) -> dict[str, Any]:
    facts = ItemFacts(
        id="SENTINEL2X_20180715-000000-000_L3A_T31UFS_C_V1-0",
        collection="sentinel2-l3a",
        geometry={"type": "Point", "coordinates": [4.0, 50.0]},
        bbox=[4.0, 50.0, 4.0, 50.0],
        properties={"grid:code": "MGRS-31UFS"},
        start=datetime(2018, 6, 30, tzinfo=UTC),
        end=datetime(2018, 7, 31, tzinfo=UTC),
    )
    return build_item(facts, [], derived_from=sources).to_dict(include_self_link=False)


def _product(
    product_id: str, ingested: str | None, day: str = "2018-07-10", tile: str = "31UFS"
) -> dict[str, Any]:
    properties: dict[str, Any] = {"grid:code": f"MGRS-{tile}", "datetime": f"{day}T10:56:00Z"}
    if ingested:
        properties[INGESTED_PROPERTY] = ingested
    return {"id": product_id, "properties": properties}


def test_the_links_record_the_version_read() -> None:
    item = {"properties": {INGESTED_PROPERTY: READ}}
    synthesis = _synthesis(Source.of(HREF.format(id="A"), item), Source(HREF.format(id="B")))
    assert derived_versions(synthesis) == {"A": READ, "B": None}


@pytest.mark.parametrize(
    ("product", "stale"),
    [
        (_product("A", READ), False),  # the version read (a duplicate delivery of its ingest)
        (_product("A", "2018-07-21T08:00:00Z"), True),  # corrected since
        (_product("C", READ), True),  # another product of the window
        (_product("C", READ, tile="31UGS"), False),  # another tile
        (_product("C", READ, day="2018-08-02"), False),  # out of the window
        (_product("B", "2018-07-21T08:00:00Z"), False),  # its link says nothing: kept as it is
        (_product("A", None), False),
    ],
)
def test_what_makes_a_synthesis_stale(product: dict[str, Any], stale: bool) -> None:
    item = {"properties": {INGESTED_PROPERTY: READ}}
    synthesis = _synthesis(Source.of(HREF.format(id="A"), item), Source(HREF.format(id="B")))
    assert is_made_stale_by(synthesis, product) is stale
