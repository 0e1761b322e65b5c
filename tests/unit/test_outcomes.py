"""The outcome map: every error retried, or failing its unit at once, with its reason."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sansnuages import errors
from sansnuages.stages.outcomes import Action, decide, is_last_attempt


def _throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
        "PutItem",
    )


@pytest.mark.parametrize(
    "error",
    [
        errors.NoInputs("no product of tile 31UFS"),
        errors.InvalidRequest("not a tile message"),
        errors.MissingBand("B4"),
        errors.NotFound("job"),
    ],
)
def test_invalid_input_fails_at_once_on_any_delivery(error: Exception) -> None:
    for last in (False, True):
        outcome = decide(error, last)
        assert outcome.action == Action.FAIL and not outcome.raises
        assert str(error) in outcome.reason and type(error).__name__ in outcome.reason


@pytest.mark.parametrize(
    "error",
    [
        errors.TransientError("throttled"),
        _throttled(),
        EndpointConnectionError(endpoint_url="http://s3"),
        ConnectionResetError("reset"),
        MemoryError(),
        RuntimeError("unforeseen"),
    ],
)
def test_errors_of_the_moment_are_retried_then_fail_on_the_last_delivery(
    error: Exception,
) -> None:
    first = decide(error, last_attempt=False)
    assert first.action == Action.RETRY and first.raises and not first.fails_unit
    last = decide(error, last_attempt=True)
    assert last.action == Action.FAIL_AND_RAISE and last.fails_unit and last.raises
    assert last.reason.startswith("gave up after the last retry: " + type(error).__name__)


def test_the_last_delivery_is_known_from_the_receive_count() -> None:
    assert not is_last_attempt("2", "3") and is_last_attempt("3", "3") and is_last_attempt(4, 3)
    assert not is_last_attempt("3", None) and not is_last_attempt("x", "3")
