"""Faults for fault tests, all off unless a test or the local runtime installs them.

- Named crash points: `checkpoint(name)` does nothing unless a hook was installed (`install`),
  which may raise there to play a crash. The points are named `<stage>.<moment>`, for example
  `plan.after-create`, `plan.after-send`, `composite.after-publish`.
- Faults of the storage services: every client made by `stores.aws` asks `transport_fault`
  before each request it sends; an installed `Transport` answers some of them, at its rate,
  as S3 and DynamoDB do when they throttle (`SlowDown`, `ProvisionedThroughputExceeded`) or
  as a connection that was reset or timed out. botocore retries them as it would the real
  ones, and what its retries do not absorb reaches the stage's outcome map.

Deployed functions never install either.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

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


THROTTLES: dict[str, tuple[int, str, bytes]] = {
    "s3": (
        503,
        "application/xml",
        b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    ),
    "dynamodb": (
        400,
        "application/x-amz-json-1.0",
        b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
        b'"message":"The level of configured provisioned throughput for the table was exceeded."}',
    ),
}
"""What each service answers when it throttles: status, content type, body."""


class _Body:
    """The raw body botocore reads from a response (`stream()`)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class Transport:
    """Fail a share (`rate`) of the requests to the services in `THROTTLES`: half throttled,
    a quarter reset, a quarter timed out. Seeded, thread-safe; counts what it did."""

    rate: float
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self, service: str, request: Any) -> AWSResponse | None:
        if service not in THROTTLES:
            return None
        with self.lock:
            draw = self.rng.random()
        if draw >= self.rate:
            return None
        share = draw / self.rate
        if share < 0.5:
            self._count(f"{service} throttled")
            status, content_type, body = THROTTLES[service]
            return AWSResponse(request.url, status, {"Content-Type": content_type}, _Body(body))
        if share < 0.75:
            self._count(f"{service} connection reset")
            raise ConnectionClosedError(endpoint_url=request.url)
        self._count(f"{service} timed out")
        raise ReadTimeoutError(endpoint_url=request.url)

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    @property
    def injected(self) -> int:
        with self.lock:
            return sum(self.counts.values())


_transport: Transport | None = None


def install_transport(transport: Transport | None) -> None:
    global _transport
    _transport = transport


def attach(client: Any) -> Any:
    """Let an installed `Transport` answer `client`'s requests before they are sent (botocore's
    `before-send` event: a response returned there is the request's, an error raised there is
    the connection's); returns the client. Costs one test per request when none is."""
    service = client.meta.service_model.service_name

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        return None if _transport is None else _transport(service, request)

    client.meta.events.register("before-send", before_send)
    return client
