"""Shared fixtures: a real moto server process, fresh AWS resources, loopback-only network."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sansnuages.local.moto_process import LOCAL_CREDENTIALS, MotoServer

ROOT = Path(__file__).resolve().parents[1]
os.environ.update(LOCAL_CREDENTIALS)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    """Tests reach nothing but loopback: a library that downloads fails loudly, not slowly."""
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ConnectionRefusedError(f"tests may only reach loopback, not {host}")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[assignment,method-assign]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture()
def endpoint_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and through Settings, GDAL) at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    return moto_server.url


@pytest.fixture()
def unique_name() -> str:
    """A fresh resource name per test: GDAL caches what it read, so buckets are never reused."""
    return f"t-{uuid.uuid4().hex[:12]}"
