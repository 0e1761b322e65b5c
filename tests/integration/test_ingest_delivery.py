"""The last delivery of an upload: invalid ones quarantined, failing ones given up with a
reason beside the dead letter, never quarantined."""

from __future__ import annotations

from typing import Any

import pytest

from sansnuages.settings import Settings
from sansnuages.stages.ingest import Ingestor
from sansnuages.stages.ingest_delivery import dead_letter_reason_key, ingest_delivery
from sansnuages.stores.uploads import Uploads

KEY = "incoming/SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8.zip"


def test_a_failure_of_the_moment_is_retried_then_given_up_with_a_reason(
    function_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = Ingestor.from_settings(function_settings)
    ingestor.bucket.put_bytes(KEY, b"PK\x05\x06" + b"\0" * 18, "application/zip")

    def reset(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(Uploads, "open_zip", reset)
    with pytest.raises(ConnectionResetError):
        ingest_delivery(ingestor, KEY, last_attempt=False)
    assert not ingestor.bucket.exists(dead_letter_reason_key(KEY))
    with pytest.raises(ConnectionResetError):  # raised: the message goes to the dead letters
        ingest_delivery(ingestor, KEY, last_attempt=True)
    record = ingestor.bucket.get_json(dead_letter_reason_key(KEY))
    assert record["key"] == KEY
    assert record["reason"] == (
        "gave up after the last retry: ConnectionResetError: connection reset by peer"
    )
    assert ingestor.bucket.list_keys("quarantine/") == []  # the upload may be valid
    assert ingestor.bucket.exists(KEY)


def test_an_invalid_upload_is_quarantined_on_its_last_delivery_too(
    function_settings: Settings,
) -> None:
    ingestor = Ingestor.from_settings(function_settings)
    ingestor.bucket.put_bytes(KEY, b"not a zip", "application/zip")
    result = ingest_delivery(ingestor, KEY, last_attempt=True)
    assert result is not None and result.outcome == "quarantined"
    assert ingestor.bucket.list_keys("dead-letters/") == []
