"""The local API Gateway: an HTTP server that turns requests into HTTP API (payload 2.0) events.

Browsers, pystac-client and tests talk HTTP to it and the real `api` handler sees the same events
as behind API Gateway. One request runs in the handler at a time, as in one Lambda instance
(Powertools' resolver also keeps the current event in shared state).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], object], dict[str, Any]]

TEXT_TYPES = ("text/", "application/json", "application/geo+json", "application/xml")
TIMEOUT_MS = 30_000


@dataclass
class LocalContext:
    """The parts of a Lambda context object that handlers and Powertools read."""

    function_name: str = "api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/api"
    log_stream_name: str = "local"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:api"
    deadline: float = field(default_factory=lambda: time.monotonic() + TIMEOUT_MS / 1000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def query_parameters(raw_query: str) -> dict[str, str] | None:
    """Repeated parameters joined with commas, as API Gateway's payload 2.0 does."""
    joined: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined or None


def is_text(content_type: str | None) -> bool:
    return bool(content_type) and any(t in str(content_type) for t in TEXT_TYPES)


def _is_utf8(body: bytes) -> bool:
    """API Gateway passes a body that is not valid text base64-encoded, whatever its type."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    stage: str = "$default",
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """A payload 2.0 event for one request, shaped as API Gateway's HTTP API sends it."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    host = lowered.get("host", "localhost")
    lowered.setdefault("x-forwarded-proto", "http")
    lowered.setdefault("x-forwarded-for", source_ip)
    text = (is_text(lowered.get("content-type")) and _is_utf8(body)) or not body
    raw_path = parts.path or "/"
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not text,
    }
    if cookies:
        event["cookies"] = cookies
    params = query_parameters(parts.query)
    if params:
        event["queryStringParameters"] = params
    if body:
        event["body"] = body.decode("utf-8") if text else base64.b64encode(body).decode()
    return event


def response_parts(result: Any) -> tuple[int, dict[str, str], list[str], bytes]:
    """Status, headers, cookies and body bytes of a handler's payload 2.0 response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # API Gateway's rule for a bare return value: 200, JSON.
        body = json.dumps(result).encode()
        return 200, {"content-type": "application/json"}, [], body
    headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ",".join(str(v) for v in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return int(result["statusCode"]), headers, list(result.get("cookies") or []), body


class HttpFront:
    """A ThreadingHTTPServer in a daemon thread that forwards every request to `handler`."""

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, stage: str = "$default"
    ) -> None:
        self.handler = handler
        self.stage = stage
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._request_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        prefix = "" if self.stage == "$default" else f"/{self.stage}"
        return f"http://{host!s}:{port}{prefix}"

    def start(self) -> HttpFront:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-front", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, str], list[str], bytes]:
        with self._lock:
            try:
                result = self.handler(event, LocalContext())
            except Exception:  # API Gateway answers 500 when an invocation fails
                log.exception("the handler failed")
                body = b'{"message":"Internal Server Error"}'
                return 500, {"content-type": "application/json"}, [], body
        return response_parts(result)

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                event = build_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    self.client_address[0],
                    front.stage,
                    self.request_version,
                )
                status, headers, cookies, payload = front.invoke(event)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests and the local runtime log through their own loggers."""

        return Request
