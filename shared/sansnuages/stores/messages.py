"""Every queue message, typed and versioned: a tile task, a mosaic job, a mosaic part.

A tile task names its job's period: a month (`"period": "2018-07"`, a synthesis) or a snow
season (`"period": "snow-2018"`); bodies written before seasons existed name it `month`.

Producers build these and send their `body()`; consumers read them with `parse_*`, which
refuses anything else with `InvalidRequest` (a poison message fails its unit at once, it is
never retried). `SCHEMA` is written in every body as `v`; a body of another version is refused.
Batches go out through `send_all`, which checks every entry's result and sends the failed
ones again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sansnuages.errors import InvalidRequest, TransientError
from sansnuages.period import HydrologicalYear, SynthesisPeriod, parse_job_period

SCHEMA = 1
SEND_TRIES = 4
BATCH = 10


def _load(body: str | dict[str, Any], kind: str) -> dict[str, Any]:
    try:
        document = json.loads(body) if isinstance(body, str) else body
    except ValueError as error:
        raise InvalidRequest(f"not a {kind} message: unreadable JSON") from error
    if not isinstance(document, dict):
        raise InvalidRequest(f"not a {kind} message: not a JSON object")
    version = document.get("v", SCHEMA)
    if version != SCHEMA:
        raise InvalidRequest(f"{kind} message of version {version!r}; this code reads {SCHEMA}")
    return document


def _text(document: dict[str, Any], name: str, kind: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"not a {kind} message: '{name}' must be a non-empty string")
    return value


def _optional_number(document: dict[str, Any], name: str, kind: str) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidRequest(f"not a {kind} message: '{name}' must be a positive number")
    return float(value)


def _optional_text(document: dict[str, Any], name: str, kind: str) -> str | None:
    if document.get(name) is None:
        return None
    return _text(document, name, kind)


@dataclass(frozen=True)
class TileTask:
    """One tile of a job's period (composite queue): a month to synthesise, or a snow season."""

    job_id: str
    tile: str
    period: SynthesisPeriod | HydrologicalYear
    version: int = 0
    """Run of the period (0 first): each run writes its own product, never over another."""

    def body(self) -> str:
        return json.dumps(
            {
                "v": SCHEMA,
                "job_id": self.job_id,
                "tile": self.tile,
                "period": self.period.label,
                "version": self.version,
            }
        )

    @classmethod
    def from_message(cls, body: str | dict[str, Any]) -> TileTask:
        kind = "tile"
        document = _load(body, kind)
        version = document.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidRequest("not a tile message: 'version' must be a run number (0, 1, ...)")
        label = "period" if "period" in document else "month"
        try:
            period = parse_job_period(_text(document, label, kind))
        except ValueError as error:
            raise InvalidRequest(f"not a tile message: {error}") from error
        return cls(_text(document, "job_id", kind), _text(document, "tile", kind), period, version)


@dataclass(frozen=True)
class MosaicJob:
    """A finished job to mosaic (mosaic queue); a grid or codec given asks for a rebuild."""

    job_id: str
    resolution: float | None = None
    crs: str | None = None
    codec: str | None = None

    def body(self) -> str:
        document: dict[str, Any] = {"v": SCHEMA, "job_id": self.job_id}
        for name in ("resolution", "crs", "codec"):
            if getattr(self, name) is not None:
                document[name] = getattr(self, name)
        return json.dumps(document)


@dataclass(frozen=True)
class MosaicPart:
    """One part of a mosaic planned in parts (mosaic queue): the plan's key and the cell."""

    plan: str
    part: str

    def body(self) -> str:
        return json.dumps({"v": SCHEMA, "plan": self.plan, "part": self.part})


def parse_mosaic_message(body: str | dict[str, Any]) -> MosaicJob | MosaicPart:
    """A mosaic queue message: a part when it names one, else a job."""
    document = _load(body, "mosaic")
    if "part" in document:
        return MosaicPart(_text(document, "plan", "part"), _text(document, "part", "part"))
    return MosaicJob(
        _text(document, "job_id", "mosaic"),
        _optional_number(document, "resolution", "mosaic"),
        _optional_text(document, "crs", "mosaic"),
        _optional_text(document, "codec", "mosaic"),
    )


def send_all(sqs: Any, queue_url: str, bodies: list[str], sleep: float = 0.2) -> None:
    """Send `bodies` in batches of ten; entries a batch reports failed are sent again (with a
    growing pause) and `TransientError` is raised when some still fail after `SEND_TRIES`."""
    for start in range(0, len(bodies), BATCH):
        entries = {str(n): body for n, body in enumerate(bodies[start : start + BATCH])}
        failed: list[dict[str, Any]] = []
        for attempt in range(SEND_TRIES):
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": i, "MessageBody": b} for i, b in entries.items()],
            )
            failed = list(response.get("Failed") or [])
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:  # a message the queue will never take (too large, malformed)
                raise InvalidRequest(f"messages refused by the queue: {refused}")
            entries = {f["Id"]: entries[f["Id"]] for f in failed}
            if not entries:
                break
            time.sleep(sleep * 2**attempt)
        if entries:
            reasons = sorted({str(f.get("Code", "?")) for f in failed})
            raise TransientError(f"{len(entries)} messages not accepted by the queue: {reasons}")
