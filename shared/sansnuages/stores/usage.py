"""Counting what a unit of work uses: the requests its boto3 clients make, and its time.

Every client `stores.aws` makes reports each call it is about to send to one process-wide
counter, by service and operation, with the request units DynamoDB will bill for it. A unit
(a plan, a tile, a mosaic) takes the counter's difference over its work and its duration times
the function's declared memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, which Lambda and the local
runtime set): a `costs.Usage`. GDAL's own S3 requests are not seen here (`costs.gdal_reads`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sansnuages.costs import Usage, gdal_reads, gdal_writes

S3_GETS = frozenset({"GetObject", "HeadObject", "HeadBucket"})
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan"})


def _units(operation: str, params: dict[str, Any]) -> tuple[str, int]:
    """What DynamoDB bills a request in (`reads` or `writes`) and how many units, counting
    each item of a batch once and of a transaction twice (items up to 1 KB)."""
    if operation in DYNAMODB_WRITES:
        return "writes", 1
    if operation == "BatchWriteItem":
        return "writes", sum(len(v) for v in (params.get("RequestItems") or {}).values())
    if operation == "TransactWriteItems":
        return "writes", 2 * len(params.get("TransactItems") or [])
    if operation == "BatchGetItem":
        keys = (params.get("RequestItems") or {}).values()
        return "reads", sum(len(v.get("Keys") or []) for v in keys)
    return "reads", 1


@dataclass
class RequestCounter:
    """Requests by (service, kind): S3 `gets`/`puts`, DynamoDB `reads`/`writes` units, SQS
    `requests`. Thread-safe; only grows."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if service == "s3":
            kind, units = ("gets" if operation in S3_GETS else "puts"), 1
        elif service == "dynamodb":
            kind, units = _units(operation, params)
        elif service == "sqs":
            kind, units = "requests", 1
        else:
            return
        with self.lock:
            self.counts[(service, kind)] += units

    def attach(self, client: Any) -> Any:
        """Count the calls of `client` from now on; returns it."""
        service = client.meta.service_model.service_name

        def count(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.record(service, model.name, params)

        client.meta.events.register(f"provide-client-params.{service}.*", count)
        return client

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter(self.counts)


COUNTER = RequestCounter()


def memory_mb() -> int:
    """The function's declared memory, or 0 outside Lambda and the local runtime."""
    try:
        return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0)
    except ValueError:
        return 0


@dataclass
class Meter:
    """The usage of one unit: what `measure` yields. GDAL's requests are `add`ed to it as
    estimates; `close` takes the time and the counted requests; `total` is the whole."""

    counter: RequestCounter = field(default_factory=lambda: COUNTER)
    estimated: Usage = field(default_factory=Usage)
    measured: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    before: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def start(cls, counter: RequestCounter = COUNTER) -> Meter:
        """A meter of the unit of work starting now (one invocation's worth): `close` it when
        the work is done, before recording `total()` (whose own requests are not counted)."""
        return cls(counter=counter, before=counter.snapshot())

    def add(self, usage: Usage) -> None:
        self.estimated = self.estimated + usage

    def add_gdal(self, inputs: list[dict[str, Any]], written: list[int]) -> None:
        """GDAL's requests for a unit that read every raster asset of `inputs` (Item
        documents) by windows once, and wrote rasters of the `written` sizes."""
        shapes = [
            (int(asset["proj:shape"][0]), int(asset["proj:shape"][1]))
            for item in inputs
            for asset in item.get("assets", {}).values()
            if asset.get("type", "").startswith("image/tiff") and asset.get("proj:shape")
        ]
        gets, puts = gdal_reads(shapes), gdal_writes(written)
        self.add(Usage(s3_gets=gets, s3_puts=puts, s3_estimated=gets + puts))

    def close(self) -> None:
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        after = self.counter.snapshot()
        delta = {key: after[key] - self.before.get(key, 0) for key in after}
        self.measured = Usage(
            invocations=1,
            lambda_mb_ms=elapsed_ms * memory_mb(),
            s3_gets=delta.get(("s3", "gets"), 0),
            s3_puts=delta.get(("s3", "puts"), 0),
            dynamodb_reads=delta.get(("dynamodb", "reads"), 0),
            dynamodb_writes=delta.get(("dynamodb", "writes"), 0),
            sqs_requests=delta.get(("sqs", "requests"), 0),
        )

    def total(self) -> Usage:
        return self.measured + self.estimated
