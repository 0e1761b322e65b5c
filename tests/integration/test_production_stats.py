"""Production statistics: counters kept at ingest in the index's transactions, served by the
route and the command, and rebuilt by a reindex from the Item files and quarantine reasons."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rasterio
from api_handler import load_api_handler
from product_variants import SMALL

from sansnuages.settings import Settings
from sansnuages.stages.ingest import Ingestor, Outcome
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.catalog.stats import production_stats
from sansnuages.tools.cli import main as cli
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.simulate import simulate_product

TILE = "31UFS"
S2B = datetime(2018, 7, 4, 10, 56, 26, 461000, tzinfo=UTC)
S2A = datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=UTC)
L8 = datetime(2018, 7, 9, 10, 30, 12, tzinfo=UTC)


@dataclass
class Produced:
    url: str
    catalog: Catalog
    today: str


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("stats")
    return [
        simulate_product(TILE, S2B, "SENTINEL2B", out, SMALL, seed=1, cloud_cover=0.1),
        simulate_product(TILE, S2B, "SENTINEL2B", out, SMALL, seed=2, version="2-0"),
        simulate_product(TILE, S2A, "SENTINEL2A", out, SMALL, seed=3, cloud_cover=1.0),
        simulate_product(TILE, L8, "LANDSAT8-OLITIRS-XS", out, SMALL * 2 / 3, version="1-9"),
    ]


@pytest.fixture()
def produced(function_settings: Settings, zips: list[Path]) -> Iterator[Produced]:
    ingestor = Ingestor.from_settings(function_settings)
    for path in zips:
        key = f"incoming/{path.name}"
        ingestor.bucket.put_bytes(key, path.read_bytes(), "application/zip")
        assert ingestor.ingest(key).outcome is Outcome.INGESTED
    for name in ("notes.zip", "broken.zip"):
        ingestor.bucket.put_bytes(f"incoming/{name}", b"not a zip", "application/zip")
        assert ingestor.ingest(f"incoming/{name}").outcome is Outcome.QUARANTINED
    today = datetime.now(UTC).date().isoformat()
    front = HttpFront(load_api_handler()).start()
    yield Produced(front.url, ingestor.catalog, today)
    front.stop()


def _day(document: dict[str, Any], day: str) -> dict[str, Any]:
    return next(d for d in document["days"] if d["date"] == day)


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.headers.get("Content-Type", ""), response.read()


def _check_july(document: dict[str, Any]) -> None:
    assert _day(document, "2018-07-04")["acquired"] == {"sentinel-2b": 1}  # two versions, once
    assert _day(document, "2018-07-09")["acquired"] == {"landsat-8": 1}
    assert _day(document, "2018-07-14")["acquired"] == {}
    assert _day(document, "2018-07-14")["acquired_cloudy"] == {"sentinel-2a": 1}
    assert sum(sum(d["acquired"].values()) for d in document["days"]) == 2
    [july] = document["monthly"]
    assert july["days"] == 31 and july["acquired"] == 2 and july["acquired_cloudy"] == 1
    assert july["daily_average"] == pytest.approx(2 / 31, abs=1e-4)


def test_acquisitions_are_counted_once_and_cloudy_ones_apart(produced: Produced) -> None:
    _, body = _get(f"{produced.url}/stats/production?from=2018-07-01&to=2018-07-31")
    _check_july(json.loads(body))
    _, body = _get(
        f"{produced.url}/stats/production?from=2018-07-01&to=2018-07-31&collection=landsat8-l2a"
    )
    landsat = json.loads(body)
    assert landsat["monthly"][0]["acquired"] == 1
    assert _day(landsat, "2018-07-04")["acquired"] == {}


def test_every_ingest_and_quarantine_counts_on_its_day(produced: Produced) -> None:
    today = produced.today
    media_type, body = _get(f"{produced.url}/stats/production?from={today}&to={today}&format=csv")
    assert media_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    ingested = {r["platform"]: int(r["ingested"]) for r in rows if r["platform"]}
    assert ingested == {"sentinel-2a": 1, "sentinel-2b": 2, "landsat-8": 1}  # reprocessing too
    assert sum(int(r["quarantined"]) for r in rows) == 2


def test_a_reindex_puts_corrupted_counters_right(produced: Produced) -> None:
    catalog = produced.catalog
    client, table = catalog.client, catalog.table
    client.update_item(  # a counter gone wrong, a day that never was, a lost record
        TableName=table,
        Key={"pk": {"S": "stats#acquired"}, "sk": {"S": "2018-07-04"}},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "sentinel2-l2a|sentinel-2b"},
        ExpressionAttributeValues={":n": {"N": "7"}},
    )
    client.put_item(
        TableName=table,
        Item={"pk": {"S": "stats#acquired"}, "sk": {"S": "2018-07-20"},
              "landsat8-l2a|landsat-8": {"N": "3"}},
    )  # fmt: skip
    client.delete_item(
        TableName=table, Key={"pk": {"S": "stats#ingested"}, "sk": {"S": produced.today}}
    )
    july = production_stats(catalog, datetime(2018, 7, 1).date(), datetime(2018, 7, 31).date())
    assert _day(july, "2018-07-04")["acquired"] == {"sentinel-2b": 7}  # corrupted indeed
    assert cli(["reindex", "--from-env"]) == 0
    _, body = _get(f"{produced.url}/stats/production?from=2018-07-01&to=2018-07-31")
    _check_july(json.loads(body))
    today = produced.today
    _, body = _get(f"{produced.url}/stats/production?from={today}&to={today}")
    [day] = json.loads(body)["days"]
    assert day["ingested"] == {"sentinel-2a": 1, "sentinel-2b": 2, "landsat-8": 1}
    assert day["quarantined"] == 2


def test_the_command_draws_daily_bars(
    produced: Produced, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "production.png"
    args = ["stats", "production", "--from-env", "--from", "2018-07-01", "--to", "2018-07-31",
            "--png", str(png)]  # fmt: skip
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "2018-07" in out and "0.06" in out  # 2 products / 31 days
    with rasterio.open(png) as image:
        assert image.width > 600 and image.read().std() > 10


def test_bad_ranges_are_refused(produced: Produced) -> None:
    for query in ("from=2018-07-01", "from=2018-07-31&to=2018-07-01",
                  "from=2000-01-01&to=2030-01-01", "from=2018-02-30&to=2018-03-01",
                  "from=2018-07-01&to=2018-07-31&collection=mosaics"):  # fmt: skip
        request = urllib.request.Request(f"{produced.url}/stats/production?{query}")
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=30)
        assert raised.value.code == 400, query
