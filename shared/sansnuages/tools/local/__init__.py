"""The embedded local AWS: moto server process, resources from the template, and the parts of
AWS that moto does not run (event pump, scheduler, HTTP front for the API)."""

import os

WORKERS_PER_FUNCTION = (os.cpu_count() or 1) + 1
"""Warm workers per function (and pollers per queue): one more than the cores, since a worker
waits on the local S3 server (one Python process) for about a third of its time. The demo on
2 cores: 2 workers ingested its 207 products in 120 s after the last upload, 3 in 94.5 s,
4 in 89 s with a simulation slowed by as much (175 s in all against 170.5 s with 3)."""
