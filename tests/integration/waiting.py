"""Waiting on the local runtime: its workers run in other processes, so a test polls for the
state it expects, and fails with what it waited for rather than hanging."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], what: str, timeout: float = 300.0) -> None:
    """Return once `condition()` is true; fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
