"""Named crash points for fault tests: `checkpoint(name)` does nothing unless a test or the
local runtime installed a hook (`install`), which may raise there to play a crash.

Deployed functions never install one. The points are named `<stage>.<moment>`, for example
`plan.after-create`, `plan.after-send`, `composite.after-item-file`, `composite.before-claim-send`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Hook = Callable[[str], None]

_hook: Hook | None = None


class InjectedCrash(Exception):
    """A crash played at a named point (not a `SansnuagesError`: it is retried like any
    unexpected failure)."""


def checkpoint(name: str) -> None:
    if _hook is not None:
        _hook(name)


def install(hook: Hook | None) -> None:
    global _hook
    _hook = hook


@contextmanager
def crash_at(name: str, times: int = 1) -> Iterator[list[str]]:
    """Raise `InjectedCrash` the first `times` times `name` is reached; yields the points
    passed, in order."""
    passed: list[str] = []
    left = [times]

    def hook(point: str) -> None:
        passed.append(point)
        if point == name and left[0] > 0:
            left[0] -= 1
            raise InjectedCrash(point)

    previous = _hook
    install(hook)
    try:
        yield passed
    finally:
        install(previous)
