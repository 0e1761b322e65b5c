"""The cost table: usage adds up, GDAL's requests are estimated as documented, prices come from
one file and turn usage into money."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sansnuages.costs import PRICES_VARIABLE, PriceTable, Usage, gdal_reads, gdal_writes
from sansnuages.errors import InvalidRequest
from sansnuages.stores.usage import RequestCounter


def test_usage_adds_up_and_reads_back() -> None:
    one = Usage(invocations=1, lambda_mb_ms=4096 * 1500, s3_gets=10, dynamodb_writes=3)
    two = one + Usage(invocations=2, lambda_mb_ms=1024 * 1000, sqs_requests=4)
    assert (two.invocations, two.s3_gets, two.dynamodb_writes, two.sqs_requests) == (3, 10, 3, 4)
    assert two.gb_seconds == pytest.approx(4 * 1.5 + 1)
    assert Usage.from_dict({k: str(v) for k, v in two.as_dict().items()}) == two


def test_gdal_requests_are_one_per_block_and_header_and_one_per_part() -> None:
    assert gdal_reads([(10980, 10980)]) == 1 + 22 * 22
    assert gdal_reads([(512, 512), (513, 1)]) == 2 + 1 + 2
    assert gdal_writes([10, 50 * 2**20]) == 2  # one PUT each up to a part
    assert gdal_writes([120 * 2**20]) == 2 + 3  # start, three parts, complete


def test_the_packaged_prices_and_an_operators_own(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    packaged = PriceTable.load()
    assert packaged.currency == "USD" and packaged.lambda_gb_second > 0
    mine = json.loads(
        (Path(__file__).parents[2] / "shared/sansnuages/data/prices.json").read_text()
    )
    mine.update(region="eu-west-3", lambda_gb_second=1.0, lambda_request=0.0)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(mine))
    monkeypatch.setenv(PRICES_VARIABLE, str(path))
    table = PriceTable.load()
    assert table.region == "eu-west-3"
    cost = table.cost(Usage(invocations=5, lambda_mb_ms=2048 * 3000, s3_gets=1000))
    assert cost["lambda"] == pytest.approx(6.0)
    assert cost["s3"] == pytest.approx(1000 * mine["s3_get_request"])
    assert cost["total"] == pytest.approx(cost["lambda"] + cost["s3"])


@pytest.mark.parametrize("content", ["not json", "{}", '{"region": "x"}'])
def test_a_broken_price_table_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(InvalidRequest, match="unreadable price table"):
        PriceTable.load(path)


def test_dynamodb_requests_count_the_units_billed() -> None:
    counter = RequestCounter()
    items = [{"PutRequest": {"Item": {}}}] * 25
    counter.record("dynamodb", "BatchWriteItem", {"RequestItems": {"t": items}})
    counter.record("dynamodb", "TransactWriteItems", {"TransactItems": [{}, {}]})
    counter.record("dynamodb", "UpdateItem", {})
    counter.record("dynamodb", "Query", {})
    counter.record("dynamodb", "BatchGetItem", {"RequestItems": {"t": {"Keys": [{}, {}, {}]}}})
    counter.record("s3", "GetObject", {})
    counter.record("s3", "PutObject", {})
    counter.record("s3", "ListObjectsV2", {})
    counts = counter.snapshot()
    assert counts[("dynamodb", "writes")] == 25 + 4 + 1
    assert counts[("dynamodb", "reads")] == 1 + 3
    assert (counts[("s3", "gets")], counts[("s3", "puts")]) == (1, 2)
