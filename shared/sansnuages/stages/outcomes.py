"""The one map from an error to what a queue stage does with it.

Every queue stage (ingest, plan, composite, mosaic) asks `decide` what an error means for the
unit it works on (an upload, a job, a tile, a mosaic):

- `RETRY`: raise again, so that the queue delivers the message again;
- `FAIL`: the unit fails at once with the reason (quarantine for an upload), the message is
  acknowledged: invalid input is never retried;
- on the queue's last delivery, a retryable error fails the unit with its reason too (and is
  raised, so that the message still reaches the dead-letter queue for an operator).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from sansnuages import errors


class Action(enum.StrEnum):
    RETRY = "retry"
    FAIL = "fail"
    FAIL_AND_RAISE = "fail-and-raise"
    """The last delivery of a retryable error: record the failure, then let the message go
    to the dead-letter queue."""


RETRIED: tuple[type[BaseException], ...] = (
    errors.TransientError,
    ClientError,
    BotoCoreError,
    OSError,
    TimeoutError,
    MemoryError,
)
"""Errors of the moment: storage, network, throttling, a process out of memory."""

FAILED: tuple[type[BaseException], ...] = (
    errors.InvalidProduct,
    errors.InvalidRequest,
    errors.NoInputs,
    errors.NotFound,
)
"""Errors of the input: the same message fails the same way on every delivery."""


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str

    @property
    def fails_unit(self) -> bool:
        return self.action in (Action.FAIL, Action.FAIL_AND_RAISE)

    @property
    def raises(self) -> bool:
        return self.action in (Action.RETRY, Action.FAIL_AND_RAISE)


def is_retryable(error: BaseException) -> bool:
    """Retryable unless the error says it is a fault of the input. An error the code did not
    foresee is retried (it may be of the moment), and fails the unit on the last delivery."""
    if isinstance(error, errors.SansnuagesError):
        return bool(error.retryable)
    return not isinstance(error, FAILED)


def reason_of(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decide(error: BaseException, last_attempt: bool) -> Outcome:
    if not is_retryable(error):
        return Outcome(Action.FAIL, reason_of(error))
    if last_attempt:
        return Outcome(Action.FAIL_AND_RAISE, f"gave up after the last retry: {reason_of(error)}")
    return Outcome(Action.RETRY, reason_of(error))


def is_last_attempt(receive_count: str | int | None, max_receive_count: str | int | None) -> bool:
    """Whether this delivery is the queue's last before the dead-letter queue (the redrive
    policy's maxReceiveCount, which the template also passes to the function)."""
    try:
        return int(receive_count or 0) >= int(max_receive_count or 0) > 0
    except ValueError:
        return False
