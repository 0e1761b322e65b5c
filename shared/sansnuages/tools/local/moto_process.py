"""Run moto as a separate server process on a free loopback port.

A separate process, not an in-process threaded server: GDAL's `/vsis3/` uploads hold the GIL
while they wait for the server, which deadlocks an in-process server.

The server process runs moto with two overrides (`serve_like_s3`), both keeping S3's semantics:

- **ranged reads read their range**: moto 5.2 answers every ranged GET, and every part of a
  multipart copy, by reading the whole stored object and slicing it, so reading a 1.7 GB zip
  through `/vsizip//vsis3/` (thousands of small ranges) cost it 20 CPU-minutes. The override
  reads only the requested bytes; status codes, headers and bytes returned are moto's own;
- **conditional writes are atomic**: moto checks `If-Match` / `If-None-Match` and then stores,
  so two concurrent conditional PUTs of one key could both succeed; S3 lets one win. The
  override serialises conditional PUTs (small documents only; other PUTs run in parallel).
  DynamoDB's writes likewise: moto checks a condition, then writes, in the request's thread,
  so two conditional updates of one item at once could both pass; `serialise_dynamodb_writes`
  makes each write (with its condition) one step, as DynamoDB does.

SQS sends take constant time: moto's `send_message` reads the queue's whole attribute set for
one FIFO setting, and that set counts the queue's messages by scanning them all, so a backlog
of n messages cost n² steps to send (20,000 tile messages: hours). `cheap_sqs_sends` answers
that one read without counting; every attribute a client asks for is moto's own.

Two more overrides cut the server's own CPU per request (it shares the machine's cores with
the code it serves; window-by-window raster reads make thousands of small requests): the
list of moto's service modules, which moto rebuilds from the file system on every request,
is built once, and the per-request access log, which nobody reads, is not formatted.

A fault switch, off unless a test turns it on, makes the server throttle a share of one
bucket's ranged reads (`read_faults`: GDAL's reads, which botocore's fault hook does not see).

Started with a call log (`MotoServer.start(call_log=...)`), the server also writes one JSON
line per request: who signed it, what it asked and the status it got (`calls.request_line`).
Each local function signs with an access key id of its own, so the log tells which function
made each call, GDAL's own S3 requests included.
"""

from __future__ import annotations

import contextvars
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sansnuages.tools.local import calls
from sansnuages.tools.local.read_faults import serve_read_faults

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
CALL_LOG_VARIABLE = "SANSNUAGES_CALL_LOG"
"""Set in the server process's environment: the file it appends its call log to."""


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
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(
        cls, host: str = "127.0.0.1", port: int | None = None, call_log: Path | None = None
    ) -> MotoServer:
        """A server on `host:port` (a free port by default), answering; with `call_log`, every
        request it answers is appended to that file as a JSON line."""
        server = cls.launch(host, port, call_log)
        server.wait_ready()
        return server

    @classmethod
    def launch(
        cls, host: str = "127.0.0.1", port: int | None = None, call_log: Path | None = None
    ) -> MotoServer:
        """The server's process, started but not yet answering (it imports moto for a second
        or two): its URL is known, so the caller can prepare requests meanwhile, then
        `wait_ready`."""
        port = port or free_port(host)
        env = {**os.environ, **LOCAL_CREDENTIALS}
        env.pop(CALL_LOG_VARIABLE, None)
        if call_log is not None:
            env[CALL_LOG_VARIABLE] = str(call_log)
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, "-H", host, "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        return cls(process=process, url=f"http://{host}:{port}")

    def wait_ready(self) -> None:
        """Until the server answers; stopped (and the error raised) if it never does."""
        try:
            wait_for_http(f"{self.url}/moto-api/", process=self.process)
        except Exception:
            stop_process(self.process)
            raise

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


# --- the server process: ranged reads that read only their range ---------------------------

_RANGE_HEADER = re.compile(r"bytes=(\d*)-(\d*)")
_LAZY_VALUES: contextvars.ContextVar[bool] = contextvars.ContextVar("lazy", default=False)
"""Set while moto's GetObject runs for a single byte range (per request thread)."""


def read_stored_range(key: Any, start: int, stop: int) -> bytes:
    """Bytes `start` to `stop` (excluded) of a moto `FakeKey`, read from its spooled buffer
    under the key's own lock (moto's `value` property reads the whole buffer the same way)."""
    with key.lock:
        key._value_buffer.seek(start)
        return bytes(key._value_buffer.read(max(0, stop - start)))


class StoredBytes:
    """A stored object's bytes, read only where sliced: what moto's range handling does with
    a GetObject body is `len(body)` and `body[begin : end + 1]`."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.size)

    def __getitem__(self, index: slice) -> bytes:
        start, stop, step = index.indices(len(self))
        if step != 1:
            return bytes(self)[index]
        return read_stored_range(self.key, start, stop)

    def __bytes__(self) -> bytes:
        return read_stored_range(self.key, 0, len(self))


def sliced_by_moto(header: str | None, length: int) -> bool:
    """Whether moto's `_handle_range_header` answers this Range by slicing the body (or by
    refusing it) rather than by returning the whole body: a single `bytes=a-b`, `a-` or `-n`."""
    match = _RANGE_HEADER.fullmatch((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return False
    begin = int(match.group(1)) if match.group(1) else None
    end = int(match.group(2)) if match.group(2) else None
    last = length - 1
    if (begin is None and end == 0) or (begin is not None and begin > last):
        return True  # 416 InvalidRange: the body is not used
    if begin is not None:
        end = last if end is None else min(end, last)
    else:
        begin, end = length - min(end or 0, length), last
    return begin <= min(end, last)


def serve_like_s3() -> None:
    """Patch moto (in the server process only): a ranged GetObject and UploadPartCopy read
    only their range, conditional PutObjects are atomic. Everything else is moto's code."""
    _serve_cheaply()
    from moto.s3.models import FakeKey, S3Backend
    from moto.s3.responses import S3Response

    whole_value: Any = FakeKey.value

    def value(self: Any) -> Any:
        return StoredBytes(self) if _LAZY_VALUES.get() else whole_value.fget(self)

    FakeKey.value = property(value, whole_value.fset)  # type: ignore[method-assign,assignment]
    get_object = S3Response.get_object

    def ranged_get_object(self: Any) -> Any:
        header = self.headers.get("range")
        if not header:
            return get_object(self)
        token = _LAZY_VALUES.set(True)
        try:
            response = get_object(self)
        finally:
            _LAZY_VALUES.reset(token)
        body: Any = response[2] if isinstance(response, tuple) else None
        if isinstance(body, StoredBytes):
            status, headers = response[0], response[1]
            if status != 200 or not sliced_by_moto(header, len(body)):
                body = bytes(body)  # moto sends this body whole: read it all, as moto does
            return status, headers, body
        return response

    S3Response.get_object = ranged_get_object  # type: ignore[method-assign]

    def upload_part_copy(
        self: Any,
        dest_bucket_name: str,
        multipart_id: str,
        part_id: int,
        src_bucket_name: str,
        src_key_name: str,
        src_version_id: str | None,
        start_byte: int | None,
        end_byte: int | None,
    ) -> Any:
        """moto's `S3Backend.upload_part_copy`, reading only the copied range."""
        multipart = self.get_bucket(dest_bucket_name).multiparts[multipart_id]
        source = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
        if start_byte is None or end_byte is None:
            return multipart.set_part(part_id, source.value)
        return multipart.set_part(part_id, read_stored_range(source, start_byte, end_byte + 1))

    S3Backend.upload_part_copy = upload_part_copy  # type: ignore[method-assign]
    put_object = S3Response.put_object
    conditional_writes = threading.Lock()

    def atomic_put_object(self: Any) -> Any:
        if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
            with conditional_writes:  # the check and the store, as one step
                return put_object(self)
        return put_object(self)

    S3Response.put_object = atomic_put_object  # type: ignore[method-assign]


def serialise_dynamodb_writes() -> None:
    """Patch moto (in the server process only): each DynamoDB write, its condition checked
    and applied, runs alone; reads still run in parallel."""
    from moto.dynamodb.responses import DynamoHandler

    writes = threading.Lock()

    def alone(method: Any) -> Any:
        def write(self: Any) -> Any:
            with writes:
                return method(self)

        return write

    for name in (
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "batch_write_item",
    ):
        setattr(DynamoHandler, name, alone(getattr(DynamoHandler, name)))


def cheap_sqs_sends() -> None:
    """While moto sends a message, a queue's `attributes` are the one it reads
    (`ContentBasedDeduplication`, of FIFO queues), not a count of every message."""
    from moto.sqs import models

    sending = threading.local()
    full_attributes = models.Queue.attributes.fget  # type: ignore[attr-defined]
    send = models.SQSBackend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(sending, "active", False):
            return dict(full_attributes(self))
        if not self.fifo_queue:
            return {}
        return {"ContentBasedDeduplication": str(self.content_based_deduplication).lower()}

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return send(self, *args, **kwargs)
        finally:
            sending.active = False

    models.Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    models.SQSBackend.send_message = send_message  # type: ignore[method-assign]


def _serve_cheaply() -> None:
    """Less CPU per request: moto's module list built once (moto lists its package folder on
    every request to route it), and no access log line per request."""
    import logging

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def record_calls(path: Path) -> None:
    """Patch moto's request dispatcher (in the server process only) to append one JSON line
    per answered request to `path`: `calls.request_line` and the status."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__
    lock = threading.Lock()
    log = open(path, "a", buffering=1)  # noqa: SIM115 (lives as long as the server)

    def recorded(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            body = None
            if calls.wants_body(environ):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if 0 < length <= calls.MAX_RECORDED_BODY:
                    body = environ["wsgi.input"].read(length)
                    environ["wsgi.input"] = io.BytesIO(body)
            line = calls.request_line(environ, body)
        except Exception as error:  # noqa: BLE001 (the request is still served; the log says)
            line = {"unreadable": f"{type(error).__name__}: {error}"}

        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            line["status"] = int(status.split(" ", 1)[0])
            text = json.dumps(line)
            with lock:
                log.write(text + "\n")
            return start_response(status, headers, exc_info)

        return dispatch(self, environ, start)

    DomainDispatcherApplication.__call__ = recorded  # type: ignore[method-assign]


if __name__ == "__main__":
    from moto.server import main

    serve_like_s3()
    serialise_dynamodb_writes()
    cheap_sqs_sends()
    if os.environ.get(CALL_LOG_VARIABLE):
        record_calls(Path(os.environ[CALL_LOG_VARIABLE]))
    serve_read_faults()  # off until a test turns it on (`read_faults.set_read_faults`)
    main()
