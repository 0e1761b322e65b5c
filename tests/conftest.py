"""Shared fixtures: a real moto server process, fresh AWS resources, loopback-only network."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pystac import StacIO
from pystac.stac_io import DefaultStacIO

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS, MotoServer
from sansnuages.tools.local.provision import local_environment, provision
from sansnuages.tools.local.template import Stack, load_stack

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


STAC_SCHEMAS = ROOT.parent / "shared" / "stac-schemas"
EXTENSIONS_URL = "https://stac-extensions.github.io/"


class OfflineSchemasIO(DefaultStacIO):
    """Reads STAC extension schemas from the mirror beside the repository, when there is one."""

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        href = str(source)
        if href.startswith(EXTENSIONS_URL) and STAC_SCHEMAS.is_dir():
            return (STAC_SCHEMAS / href.removeprefix(EXTENSIONS_URL)).read_text()
        return str(super().read_text(source, *args, **kwargs))


@pytest.fixture(scope="session", autouse=True)
def offline_stac_schemas() -> Iterator[None]:
    previous = StacIO._default_io
    StacIO.set_default(OfflineSchemasIO)
    yield
    StacIO._default_io = previous


@pytest.fixture()
def local_stack(moto_server: MotoServer, unique_name: str) -> Stack:
    """The resources of template.yaml, freshly provisioned under a unique stack name."""
    stack = load_stack(ROOT / "template.yaml", stack_name=unique_name, endpoint_url=moto_server.url)
    provision(stack, endpoint_url=moto_server.url)
    return stack


@pytest.fixture()
def function_settings(local_stack: Stack, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Settings as a function of the stack sees them (the same for every function)."""
    environment = local_environment(local_stack, "IngestFunction", moto_server.url)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(environment)
    use_gdal(settings)  # as each handler does at import
    return settings
