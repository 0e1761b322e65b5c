"""The GDAL environment of every raster step, set once per process at the edge.

A handler (or a CLI command, or a test fixture) calls `use_gdal(settings)` once, from the main
thread, where rasterio makes GDAL's options process-wide; stages then open `/vsis3/` paths
without entering any environment of their own. Worker threads are the exception: rasterio
gives a thread without its own environment a new AWS session (a boto3 one, about 17 ms of CPU)
for every dataset it opens, so tasks sent to threads go through `in_thread_env`.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
import rasterio
from rasterio.session import AWSSession

from sansnuages.settings import Settings

GDAL_DRIVERS = ("COG", "GTiff", "JPEG", "MEM", "Memory", "PNG", "VRT")
"""The drivers the code opens or writes with: uploads and COGs (GTiff, COG), the COG writer's
in-memory VRT and the mosaic's VRT, previews (PNG, JPEG), arrays in memory (MEM), the vector
layer of footprints (`rasterio.features.shapes`, OGR's Memory before GDAL 3.11). The template's
`GDAL_SKIP` removes every other one from the deployed functions."""

_process_env: tuple[tuple[Any, ...], rasterio.Env] | None = None


@cache
def _session(region: str) -> AWSSession:
    """Credentials only: the endpoint is in `Settings.gdal_options()`, as GDAL wants it."""
    return AWSSession(boto3.Session(region_name=region))


def gdal_env(settings: Settings, **options: Any) -> rasterio.Env:
    """A rasterio environment for `/vsis3/` on AWS or on the local S3 endpoint (`options` on
    top of the settings').

    Also the way to reach another endpoint inside the process's environment: its explicit
    session matters, since rasterio lets a parent environment's `AWS_*` options override those
    of a nested one whose session it made itself."""
    return rasterio.Env(session=_session(settings.region), **{**settings.gdal_options(), **options})


def use_gdal(settings: Settings, **options: Any) -> None:
    """Set GDAL's environment for the whole process (`options` on top of the settings'): once
    per process, from the main thread. Calling again with the same settings does nothing;
    other settings replace the environment (a test that moves to another endpoint)."""
    global _process_env
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("GDAL's process environment is set from the main thread only")
    key = (settings.region, tuple(sorted({**settings.gdal_options(), **options}.items())))
    if _process_env is not None:
        if _process_env[0] == key:
            return
        _process_env[1].__exit__(None, None, None)
        _process_env = None
    env = gdal_env(settings, **options)
    env.__enter__()
    _process_env = (key, env)
