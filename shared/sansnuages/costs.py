"""What a job used, and what that costs at a price table's prices: the one cost table.

A job records its `Usage` as its units run (the plan, each tile, the mosaic): Lambda time times
declared memory, and requests to S3, DynamoDB and SQS. Requests made through boto3 are counted
exactly (`stores.usage`); those GDAL makes to S3 are not seen by boto3, so they are estimated,
and the figure says so: one GET per 512 px block of every raster a unit reads and one more for
its header, one PUT per raster written (plus one per 50 MB part above that size).

Prices come from one JSON file (`data/prices.json`, AWS list prices; `SANSNUAGES_PRICES` names
another), so that an operator can put in their region's or their contract's.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sansnuages.errors import InvalidRequest

PRICES_VARIABLE = "SANSNUAGES_PRICES"
BLOCK = 512
"""The COGs' block size: a read of a window costs at most one GET per block it touches."""
PART_BYTES = 50 * 2**20
"""GDAL's multipart chunk for S3 writes (CPL_VSIS3_CHUNK_SIZE's default)."""


@dataclass(frozen=True)
class Usage:
    invocations: int = 0
    lambda_mb_ms: int = 0
    """Declared memory (MB) times duration (ms), summed over the invocations."""
    s3_gets: int = 0
    s3_puts: int = 0
    """PUT, COPY, POST and LIST requests (S3 prices them alike)."""
    s3_estimated: int = 0
    """Of the S3 requests above, those estimated (GDAL's), not counted."""
    dynamodb_reads: int = 0
    dynamodb_writes: int = 0
    """Request units: a transaction's items count twice, as DynamoDB bills them."""
    sqs_requests: int = 0

    @property
    def gb_seconds(self) -> float:
        return self.lambda_mb_ms / 1024 / 1000

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Usage:
        return cls(**{f.name: int(document.get(f.name) or 0) for f in fields(cls)})


def gdal_reads(rasters: list[tuple[int, int]]) -> int:
    """GETs to read rasters of these (rows, columns) whole, by blocks: an upper bound for a
    unit that reads them by windows once."""
    return sum(1 + math.ceil(rows / BLOCK) * math.ceil(cols / BLOCK) for rows, cols in rasters)


def gdal_writes(sizes: list[int]) -> int:
    """Requests to write rasters of these sizes: one PUT each, or a multipart upload (start,
    the parts, complete) above one part."""
    return sum(1 if size <= PART_BYTES else 2 + math.ceil(size / PART_BYTES) for size in sizes)


@dataclass(frozen=True)
class PriceTable:
    region: str
    currency: str
    as_of: str
    lambda_gb_second: float
    lambda_request: float
    s3_get_request: float
    s3_put_request: float
    s3_storage_gb_month: float
    dynamodb_read_unit: float
    dynamodb_write_unit: float
    sqs_request: float

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The table at `path`, else at `$SANSNUAGES_PRICES`, else the packaged one."""
        path = path or os.environ.get(PRICES_VARIABLE)
        try:
            if path:
                text = Path(path).read_text("utf-8")
            else:
                text = resources.files("sansnuages").joinpath("data/prices.json").read_text()
            document = json.loads(text)
            return cls(**{f.name: document[f.name] for f in fields(cls)})
        except (OSError, ValueError, KeyError, TypeError) as error:
            where = path or "data/prices.json"
            raise InvalidRequest(f"unreadable price table {where}: {error}") from error

    def cost(self, usage: Usage) -> dict[str, float]:
        """Per service, and the total, in the table's currency."""
        parts = {
            "lambda": usage.gb_seconds * self.lambda_gb_second
            + usage.invocations * self.lambda_request,
            "s3": usage.s3_gets * self.s3_get_request + usage.s3_puts * self.s3_put_request,
            "dynamodb": usage.dynamodb_reads * self.dynamodb_read_unit
            + usage.dynamodb_writes * self.dynamodb_write_unit,
            "sqs": usage.sqs_requests * self.sqs_request,
        }
        return {**parts, "total": sum(parts.values())}
