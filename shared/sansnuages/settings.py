"""Typed configuration, read once from the environment.

The same variables are set by `template.yaml` on AWS and by the local runtime on this machine,
so the core never needs to know where it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    catalog_table: str = ""
    jobs_table: str = ""
    composite_queue_url: str = ""
    mosaic_queue_url: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    """Set only off AWS (the local moto server): every client and GDAL then talk to it."""
    extra: dict[str, str] = field(default_factory=dict)
    nadir_normalisation: bool = True
    """`NADIR_NORMALISATION` (default on; `false` turns it off): bring each observation to
    nadir view (BRDF c-factor) before the synthesis averages it, which lowers the error at every
    cloudiness level of `bench/quality.py --directional` (README, synthesis quality)."""
    reduced_resolutions: bool = False
    """`REDUCED_RESOLUTIONS=true`: ingest accepts products coarser than the native 10 / 20 /
    30 m (the simulator's, the demo's and the tests'), still on the tile's 109,800 m extent.
    For the local runtime only: the template never sets it."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            data_bucket=env.get("DATA_BUCKET", ""),
            catalog_table=env.get("CATALOG_TABLE", ""),
            jobs_table=env.get("JOBS_TABLE", ""),
            composite_queue_url=env.get("COMPOSITE_QUEUE_URL", ""),
            mosaic_queue_url=env.get("MOSAIC_QUEUE_URL", ""),
            region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            nadir_normalisation=env.get("NADIR_NORMALISATION", "true").lower()
            not in ("0", "false", "no", "off"),
            reduced_resolutions=env.get("REDUCED_RESOLUTIONS", "false").lower()
            in ("1", "true", "yes", "on"),
        )

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration for `/vsis3/` against AWS or the local S3 endpoint."""
        options = {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_USE_TEMP_FILE_FOR_RANDOM_WRITE": "YES",
            "GDAL_NUM_THREADS": "ALL_CPUS",
            "AWS_REGION": self.region,
            # S3 answers 503 SlowDown (and now and then 500) under load: a read is tried again
            # after 0.5 s, 1 s, 2 s... rather than failing the whole tile or upload
            "GDAL_HTTP_MAX_RETRY": "5",
            "GDAL_HTTP_RETRY_DELAY": "0.5",
        }
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options.update(
                AWS_S3_ENDPOINT=parts.netloc,
                AWS_VIRTUAL_HOSTING="FALSE",
                AWS_HTTPS="YES" if parts.scheme == "https" else "NO",
            )
        return options
