"""GDAL's options in worker threads.

rasterio makes an environment's options process-wide only when it is entered from the main
thread; a worker thread without an environment of its own gets a new AWS session (a boto3 one,
about 17 ms of CPU) for every dataset it opens. Tasks sent to threads go through `in_thread_env`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import rasterio
from rasterio.env import getenv, hasenv
from rasterio.session import DummySession

_T = TypeVar("_T")
_R = TypeVar("_R")
CREDENTIAL_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Options rasterio refuses from callers: a thread reads them from the process's options."""


def in_thread_env(task: Callable[[_T], _R]) -> Callable[[_T], _R]:
    """`task`, for a worker thread, inside a rasterio environment with the caller's GDAL
    options (credentials excepted: GDAL reads them from the process's options)."""
    options = {
        key: value
        for key, value in (getenv() if hasenv() else {}).items()
        if key not in CREDENTIAL_OPTIONS
    }

    def run(arg: _T) -> _R:
        with rasterio.Env(session=DummySession(), **options):
            return task(arg)

    return run
