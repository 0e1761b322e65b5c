"""Uploads through the real notification chain of the local runtime: S3 notification
(URL-encoded keys) -> IngestQueue -> ingest worker -> Items in the index and the STAC API.
An S3 test event on the same queue is acknowledged, neither retried nor quarantined; every
packaging variant, uploaded at once, is indexed once."""

from __future__ import annotations

import json
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from product_variants import variant_products
from waiting import wait_for

from sansnuages.formats.muscate import ProductLayout
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.simulate import simulate_product, simulate_snow_product

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2018, 3, 2, 10, 40, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", tmp_path_factory.mktemp("rt"), concurrency=2)
    runtime.start()
    yield runtime
    runtime.stop()


def test_landsat_and_snow_uploads_are_indexed_through_the_notifications(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    landsat = simulate_product("31TCH", WHEN, "LANDSAT8-OLITIRS-XS", tmp_path, resolution=732)
    snow = simulate_snow_product("31TCH", WHEN, "SENTINEL2B", tmp_path, resolution=1098)
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    assert runtime.stack is not None
    queue = runtime.stack.queue("IngestQueue")
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket.name}
    runtime.client("sqs").send_message(QueueUrl=queue.url, MessageBody=json.dumps(test_event))
    # keys that S3 notifications URL-encode: a space, a plus sign, parentheses
    keys = {
        landsat.stem: f"incoming/landsat 8 (copy)/{landsat.name}",
        snow.stem: f"incoming/snow+maps/{snow.name}",
    }
    for path in (landsat, snow):
        bucket.client.upload_file(str(path), bucket.name, keys[path.stem])
    catalog = Catalog(settings.catalog_table, settings=settings)

    def indexed() -> set[str]:
        page = catalog.search(["landsat8-l2a", "snow-l2b"], None, None, None, 10, None)
        return {item["id"] for item in page.items}

    wait_for(lambda: indexed() == set(keys), "both products indexed")
    wait_for(lambda: not bucket.list_keys("incoming/"), "the drop zone emptied")
    status = runtime.status()["queues"]
    assert status["IngestDeadLetterQueue"]["visible"] == 0
    assert status["IngestQueue"]["visible"] == 0
    assert not bucket.list_keys("quarantine/")
    snow_item = catalog.get_item("snow-l2b", snow.stem)
    assert snow_item["properties"]["grid:code"] == "MGRS-31TCH"
    assert catalog.get_item("landsat8-l2a", landsat.stem)["properties"]["proj:epsg"] == 32631


def test_every_variant_uploaded_at_once_is_indexed_once(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """All variants land in `incoming/` together, so the queue hands them out in batches that
    the ingest workers process in parallel; each must come out as exactly one Item."""
    products = variant_products(tmp_path)
    settings = RuntimeClient(runtime.facts()).settings()
    bucket = DataBucket(settings)
    for path in products.values():
        bucket.client.upload_file(str(path), bucket.name, f"incoming/variants/{path.name}")
    api = runtime.facts()["stac_api_url"]
    wanted = {_product_id(path) for path in products.values()}

    def found() -> list[str]:
        query = json.dumps({"ids": sorted(wanted), "limit": 100}).encode()
        request = urllib.request.Request(
            f"{api}/search", query, {"Content-Type": "application/json"}
        )
        assert not bucket.list_keys("quarantine/")  # fail at once, not at the timeout
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return [feature["id"] for feature in json.load(response)["features"]]

    wait_for(lambda: set(found()) >= wanted, "every variant indexed")
    wait_for(lambda: not bucket.list_keys("incoming/"), "the drop zone emptied")
    wait_for(lambda: not runtime.status()["busy"], "the workers idle")
    ids = found()
    assert sorted(ids) == sorted(wanted), "an Item indexed twice, or one missing"
    assert not bucket.list_keys("quarantine/")
    for queue, counts in runtime.status()["queues"].items():
        if "DeadLetter" in queue:
            assert counts == {"visible": 0, "in_flight": 0}, queue
    archived = [key.rsplit("/", 1)[-1] for key in bucket.list_keys("l2a/")]
    assert sorted(n for n in archived if n.removesuffix(".zip") in wanted) == sorted(
        f"{item_id}.zip" for item_id in wanted
    )  # every upload kept beside its Item, none lost


def _product_id(path: Path) -> str:
    """The id of the product inside the zip, whatever the zip's own name."""
    with zipfile.ZipFile(path) as archive:
        return ProductLayout.from_members(archive.namelist()).product_id
