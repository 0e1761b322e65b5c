"""The GDAL environment of every raster step, set once at the edge.

`rasterio.Env()` without a session builds a new boto3 session on every entry (about 17 ms of
CPU each, for every band of every product); one shared session per configuration avoids it.
"""

from __future__ import annotations

from functools import cache

import boto3
import rasterio
from rasterio.session import AWSSession

from sansnuages.settings import Settings


@cache
def _session(region: str) -> AWSSession:
    """Credentials only: the endpoint is in `Settings.gdal_options()`, as GDAL wants it."""
    return AWSSession(boto3.Session(region_name=region))


def gdal_env(settings: Settings) -> rasterio.Env:
    """A rasterio environment for `/vsis3/` on AWS or on the local S3 endpoint."""
    return rasterio.Env(session=_session(settings.region), **settings.gdal_options())
