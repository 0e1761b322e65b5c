"""S3 that throttles GDAL's reads: a fault switch of the local S3 server, off until asked.

GDAL reads rasters from S3 with its own HTTP client, which botocore's fault hook
(`stores/faults.Transport`) never sees. This switch makes the server itself answer a share of
the ranged GETs of one bucket with S3's `503 SlowDown`, as S3 does under load, so that the
fault suite proves the reads are retried (`GDAL_HTTP_MAX_RETRY`, `Settings.gdal_options`).

A test turns it on for its stack's bucket with `set_read_faults(endpoint, bucket, rate)` (a
request to the server's control path) and off with rate 0; `read_faults(endpoint)` tells how
many reads were failed. Only the local server has it: deployed functions talk to S3.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.request
from typing import Any

CONTROL_PATH = "/_sansnuages/read-faults"
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class ReadFaults:
    """The switch's state in the server process: one bucket, a rate, a seeded draw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bucket: str | None = None
        self.rate = 0.0
        self.rng = random.Random(0)
        self.failed = 0

    def configure(self, bucket: str | None, rate: float, seed: int) -> None:
        """Fail `rate` of `bucket`'s ranged reads from now on, counting from zero."""
        with self.lock:
            self.bucket, self.rate, self.rng = bucket, rate, random.Random(seed)
            self.failed = 0

    def fails(self, environ: dict[str, Any]) -> bool:
        """Whether to fail this request: a ranged GET of the bucket, at the rate."""
        if not self.rate or environ.get("REQUEST_METHOD") != "GET":
            return False
        if "HTTP_RANGE" not in environ:
            return False
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(f"/{self.bucket}/"):
            return False
        with self.lock:
            if self.rng.random() >= self.rate:
                return False
            self.failed += 1
            return True

    def control(self, environ: dict[str, Any]) -> bytes:
        """The state and the reads failed so far; a POSTed JSON body (`bucket`, `rate`,
        `seed`) then configures the switch anew."""
        with self.lock:
            state = {"bucket": self.bucket, "rate": self.rate, "failed": self.failed}
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            self.configure(body.get("bucket"), float(body.get("rate", 0)), int(body.get("seed", 0)))
        return json.dumps(state).encode()


def serve_read_faults() -> None:
    """Patch moto's request dispatcher (in the server process only) with the switch."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    faults = ReadFaults()
    dispatch = DomainDispatcherApplication.__call__

    def with_faults(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [faults.control(environ)]
        if faults.fails(environ):
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [SLOW_DOWN]
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = with_faults  # type: ignore[method-assign]


def set_read_faults(
    endpoint: str, bucket: str | None, rate: float, seed: int = 0
) -> dict[str, Any]:
    """Fail `rate` of the ranged GETs of `bucket` on the local server at `endpoint` (0: off)."""
    body = json.dumps({"bucket": bucket, "rate": rate, "seed": seed}).encode()
    request = urllib.request.Request(endpoint + CONTROL_PATH, body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return dict(json.loads(response.read()))


def read_faults(endpoint: str) -> dict[str, Any]:
    """The switch's state and the reads it failed so far."""
    with urllib.request.urlopen(endpoint + CONTROL_PATH, timeout=10) as response:  # noqa: S310
        return dict(json.loads(response.read()))
