"""Lambda's execution environment, played locally: warm worker processes held to the function's
declared timeout and memory, so that what would fail on Lambda fails here too.

Each worker imports the handler from the function's code folder, as the Lambda runtime does,
with the function's environment; its output goes to a log file, like CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import psutil

POLL_SECONDS = 0.05


@dataclass
class LocalContext:
    """The fields of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    code_dir: Path
    handler: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    log_file: Path


@dataclass(frozen=True)
class Invocation:
    ok: bool
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration_s: float = 0.0
    max_rss_mb: float = 0.0


PRELOADED = (
    "numpy",
    "boto3",
    "botocore.client",
    "pystac",
    "shapely.geometry",
    "aws_lambda_powertools",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes",
)
"""What every function's handler imports (the same for all of them), imported once by the
fork server that workers are forked from instead of once per worker: about 1.5 s of CPU per
worker, a dozen workers a run. Only what they all import, so that no worker holds (and counts
in its resident memory) a library its own handler does not load; none of these reads the
environment when imported."""


def worker_context() -> multiprocessing.context.ForkServerContext:
    """Workers are forked from a server process that has imported `PRELOADED` (started on
    the first worker, or by `prepare_workers`). Not forked from this process: it runs threads
    (pollers, HTTP servers) that a fork would copy half-way."""
    context = cast(
        multiprocessing.context.ForkServerContext, multiprocessing.get_context("forkserver")
    )
    context.set_forkserver_preload(list(PRELOADED))
    return context


def prepare_workers() -> None:
    """Start the fork server now (it imports `PRELOADED` on another core while the caller
    goes on), so that the first workers do not wait for it."""
    from multiprocessing import forkserver

    worker_context()
    forkserver.ensure_running()


def _worker_main(conn: Connection, config: FunctionConfig, environment: dict[str, str]) -> None:
    log = open(config.log_file, "a", buffering=1)  # noqa: SIM115 (lives as long as the worker)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    # The environment of the process that asked for the worker, as a spawned process would
    # inherit it (the fork server's own is that of when it started), then the function's.
    os.environ.clear()
    os.environ.update(environment)
    os.environ.update(config.environment)
    sys.path.insert(0, str(config.code_dir))
    module_name, function_name = config.handler.rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except BaseException as error:  # noqa: BLE001 (reported as Lambda reports an init error)
        traceback.print_exc()
        conn.send(("init_error", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready", None))
    while True:
        message = conn.recv()
        if message is None:
            return
        context = LocalContext(config.name, config.memory_mb, config.timeout_s)
        try:
            conn.send(("ok", handler(message, context)))
        except Exception as error:  # noqa: BLE001 (the invocation fails, the worker lives on)
            traceback.print_exc()
            conn.send(("error", (type(error).__name__, str(error))))


class Worker:
    """One warm execution environment; replaced after a timeout, a crash or too much memory."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None

    def _start(self) -> None:
        context = worker_context()
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(child, self.config, dict(os.environ)), daemon=True
        )
        process.start()
        child.close()
        self.process, self.conn = process, parent
        if not parent.poll(120):
            self.kill()
            raise RuntimeError(f"{self.config.name}: worker did not start within 120 s")
        try:
            status, detail = parent.recv()
        except (EOFError, OSError) as error:  # killed while importing its handler
            self.kill()
            raise RuntimeError(f"{self.config.name}: worker exited while starting") from error
        if status != "ready":
            self.kill()
            raise RuntimeError(f"{self.config.name}: init error: {detail}")

    def invoke(self, event: Any) -> Invocation:
        if self.process is None or not self.process.is_alive():
            self._start()
        assert self.conn is not None and self.process is not None
        started = time.monotonic()
        try:
            self.conn.send(event)
            watched = psutil.Process(self.process.pid)
        except (OSError, psutil.NoSuchProcess):  # died between two invocations
            return self._failed("Runtime.ExitError", "the runtime exited", started, 0.0)
        peak = 0.0
        while not self.conn.poll(POLL_SECONDS):
            elapsed = time.monotonic() - started
            peak = max(peak, _rss_mb(watched))
            if not self.process.is_alive():
                return self._failed("Runtime.ExitError", "the runtime exited", started, peak)
            if peak > self.config.memory_mb:
                return self._failed(
                    "Runtime.OutOfMemory",
                    f"memory limit of {self.config.memory_mb} MB exceeded ({peak:.0f} MB)",
                    started,
                    peak,
                )
            if elapsed > self.config.timeout_s:
                return self._failed(
                    "Sandbox.Timedout",
                    f"task timed out after {self.config.timeout_s} seconds",
                    started,
                    peak,
                )
        try:
            status, detail = self.conn.recv()
        except (EOFError, OSError):  # the pipe closed: the worker died as it answered
            return self._failed("Runtime.ExitError", "the runtime exited", started, peak)
        duration = time.monotonic() - started
        if status == "ok":
            return Invocation(True, detail, duration_s=duration, max_rss_mb=peak)
        error_type, message = detail
        return Invocation(False, None, error_type, message, duration, peak)

    def _failed(self, error_type: str, message: str, started: float, peak: float) -> Invocation:
        self.kill()
        with open(self.config.log_file, "a") as log:
            log.write(f"{error_type}: {message}\n")
        return Invocation(False, None, error_type, message, time.monotonic() - started, peak)

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            try:
                children = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.NoSuchProcess:  # gone already (killed by someone else meanwhile)
                children = []
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    continue
            self.process.kill()
            self.process.join(5)
        self.process, self.conn = None, None

    def stop(self) -> None:
        if self.conn is not None and self.process is not None and self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(5)
            except (BrokenPipeError, OSError):
                pass
        self.kill()


def _rss_mb(process: psutil.Process) -> float:
    try:
        processes = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


class FunctionPool:
    """Up to `concurrency` warm workers of one function, handed out one invocation at a time."""

    def __init__(self, config: FunctionConfig, concurrency: int = 2) -> None:
        self.config = config
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._all = [Worker(config) for _ in range(concurrency)]
        for worker in self._all:
            self._idle.put(worker)
        self.invocations = 0
        self.errors = 0
        self.busy_s = 0.0
        self.peak_rss_mb = 0.0
        self._lock = threading.Lock()

    def invoke(self, event: Any) -> Invocation:
        worker = self._idle.get()
        try:
            try:
                result = worker.invoke(event)
            except RuntimeError as error:
                result = Invocation(False, None, "Runtime.InitError", str(error))
        finally:
            self._idle.put(worker)
        with self._lock:
            self.invocations += 1
            self.errors += 0 if result.ok else 1
            self.busy_s += result.duration_s
            self.peak_rss_mb = max(self.peak_rss_mb, result.max_rss_mb)
        return result

    def stop(self) -> None:
        for worker in self._all:
            worker.stop()
