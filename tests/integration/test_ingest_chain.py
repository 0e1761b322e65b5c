"""Landsat-8 and snow uploads through the real notification chain of the local runtime:
S3 notification (URL-encoded keys) -> IngestQueue -> ingest worker -> Items in the index.
An S3 test event on the same queue is acknowledged, neither retried nor quarantined."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sansnuages.catalog import Catalog
from sansnuages.local.client import RuntimeClient
from sansnuages.local.runtime import LocalRuntime
from sansnuages.simulate import simulate_product, simulate_snow_product
from sansnuages.storage import DataBucket

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2018, 3, 2, 10, 40, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", tmp_path_factory.mktemp("rt"), concurrency=2)
    runtime.start()
    yield runtime
    runtime.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


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

    _wait(lambda: indexed() == set(keys), "both products indexed")
    _wait(lambda: not bucket.list_keys("incoming/"), "the drop zone emptied")
    status = runtime.status()["queues"]
    assert status["IngestDeadLetterQueue"]["visible"] == 0
    assert status["IngestQueue"]["visible"] == 0
    assert not bucket.list_keys("quarantine/")
    snow_item = catalog.get_item("snow-l2b", snow.stem)
    assert snow_item["properties"]["grid:code"] == "MGRS-31TCH"
    assert catalog.get_item("landsat8-l2a", landsat.stem)["properties"]["proj:epsg"] == 32631
