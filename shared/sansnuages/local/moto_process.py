"""Run moto as a separate server process on a free loopback port.

A separate process, not an in-process threaded server: GDAL's `/vsis3/` uploads hold the GIL
while they wait for the server, which deadlocks an in-process server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server process exited with code {process.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback only)
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int | None = None) -> MotoServer:
        port = port or free_port(host)
        env = {**os.environ, **LOCAL_CREDENTIALS}
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        url = f"http://{host}:{port}"
        try:
            wait_for_http(f"{url}/moto-api/", process=process)
        except Exception:
            stop_process(process)
            raise
        return cls(process=process, url=url)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a process group started with `start_new_session`, then kill what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=grace)
