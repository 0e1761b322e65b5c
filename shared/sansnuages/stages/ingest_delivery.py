"""One delivery of an upload's notification, through the outcome map.

Invalid uploads are quarantined by the ingest stage itself. Any other error is `decide`d: a
failure of the moment is raised for a retry; on the queue's last delivery (or for an error no
retry can mend) a reason record is written under `dead-letters/` beside the upload's key, and
the message goes on to the dead-letter queue (or is acknowledged). Never to quarantine: the
upload may be valid.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger

from sansnuages import layout
from sansnuages.stages.ingest import Ingestor, IngestResult
from sansnuages.stages.outcomes import Outcome, decide

logger = Logger(child=True)

DEAD_LETTERS_PREFIX = "dead-letters/"


def dead_letter_reason_key(key: str) -> str:
    return DEAD_LETTERS_PREFIX + key.removeprefix(layout.INCOMING_PREFIX) + ".reason.json"


def ingest_delivery(ingestor: Ingestor, key: str, last_attempt: bool) -> IngestResult | None:
    try:
        return ingestor.ingest(key)
    except Exception as error:
        outcome = decide(error, last_attempt)
        if outcome.fails_unit:
            _record(ingestor, key, outcome)
        if outcome.raises:
            raise
        return None


def _record(ingestor: Ingestor, key: str, outcome: Outcome) -> None:
    reason_key = dead_letter_reason_key(key)
    ingestor.bucket.put_json(
        reason_key,
        {
            "key": key,
            "action": str(outcome.action),
            "reason": outcome.reason,
            "at": datetime.now(UTC).isoformat(),
        },
    )
    logger.warning("upload given up", extra={"key": key, "reason": outcome.reason})
