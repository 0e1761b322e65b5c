"""The embedded local AWS, assembled: moto server, resources from template.yaml, workers,
queue pollers, scheduler, the API's HTTP front and a small control endpoint.

While it runs, its connection facts are in `.sansnuages/local.json` of the working directory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import boto3

from sansnuages.tools.local import WORKERS_PER_FUNCTION
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.local.invoker import (
    FunctionConfig,
    FunctionPool,
    Invocation,
    prepare_workers,
)
from sansnuages.tools.local.moto_process import LOCAL_CREDENTIALS, MotoServer
from sansnuages.tools.local.provision import local_environment, provision
from sansnuages.tools.local.pump import QueueBinding, QueuePoller
from sansnuages.tools.local.scheduler import LocalSchedule, Scheduler, schedule_event
from sansnuages.tools.local.template import (
    EXPANSIONS_DIR,
    Resolver,
    Stack,
    expanded_template,
    load_stack,
)

log = logging.getLogger("sansnuages.local")

REGION = "us-east-1"
STATE_DIR = ".sansnuages"


def state_file(workdir: Path) -> Path:
    return workdir / STATE_DIR / "local.json"


@dataclass
class LocalRuntime:
    template: Path
    workdir: Path
    concurrency: int = WORKERS_PER_FUNCTION
    api_port: int = 0
    moto: MotoServer | None = None
    stack: Stack | None = None
    pools: dict[str, FunctionPool] = field(default_factory=dict)
    pollers: list[QueuePoller] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    api: HttpFront | None = None
    control: ThreadingHTTPServer | None = None
    schedules: list[LocalSchedule] = field(default_factory=list)
    call_log: Path | None = None
    """When set, the moto server appends every request it answers to this file (JSON lines)."""
    started: str = ""
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    """The template's Outputs resolved for this runtime (`OutputKey` -> value, description),
    served as CloudFormation's DescribeStacks answers them."""

    startup: dict[str, float] = field(default_factory=dict)
    """Seconds each step of `start` took (`moto` is the wait for the server that was started
    first, beyond the template's expansion done meanwhile)."""

    def start(self) -> LocalRuntime:
        os.environ.update(LOCAL_CREDENTIALS)
        self.started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._step("launch"):  # the server, and the workers' fork server, import meanwhile
            self.moto = MotoServer.launch(call_log=self.call_log)
            prepare_workers()
        try:
            self._start_after_moto()
        except BaseException:
            self.stop()
            raise
        return self

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.startup[name] = time.monotonic() - started

    def _start_after_moto(self) -> None:
        assert self.moto is not None
        with self._step("template"):  # while the server imports moto
            self.stack = load_stack(self.template, endpoint_url=self.moto.url)
            self.outputs = stack_outputs(self.template, self.stack)
        with self._step("moto"):
            self.moto.wait_ready()
        with self._step("provision"):
            provision(self.stack, endpoint_url=self.moto.url)
        with self._step("functions"):
            self._start_functions()
        with self._step("api"):
            self._start_api()
            if self.api is not None and "ApiUrl" in self.outputs:
                self.outputs["ApiUrl"]["value"] = self.api.url
            self._start_control()
            self._write_state()

    def _start_functions(self) -> None:
        """The function pools, their queue pollers and the scheduler."""
        assert self.stack is not None and self.moto is not None
        logs = self.workdir / STATE_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for function in self.stack.functions:
            config = FunctionConfig(
                name=function.logical_id,
                code_dir=Path(function.code_dir),
                handler=function.handler,
                memory_mb=function.memory_mb,
                timeout_s=function.timeout_s,
                environment=local_environment(self.stack, function, self.moto.url),
                log_file=logs / f"{function.logical_id}.log",
            )
            self.pools[function.logical_id] = FunctionPool(config, self.concurrency)
        self._start_pollers()
        self.schedules = [
            LocalSchedule(s.logical_id, s.function_logical_id, s.expression, s.input)
            for s in self.stack.schedules
        ]
        Scheduler(self.schedules, self.fire_schedule, self.stop_event).start()

    def client(self, service: str) -> Any:
        assert self.moto is not None
        return cast(Any, boto3.client)(service, endpoint_url=self.moto.url, region_name=REGION)

    def _start_pollers(self) -> None:
        assert self.stack is not None and self.moto is not None
        for source in self.stack.event_sources:
            if not source.enabled:
                continue
            queue = self.stack.queue(source.queue_logical_id)
            binding = QueueBinding(
                function=source.function_logical_id,
                queue_url=queue.url,
                queue_arn=queue.arn,
                batch_size=source.batch_size,
                batching_window_s=source.batching_window_s,
                report_batch_item_failures=source.report_batch_item_failures,
            )
            for _ in range(self.concurrency):
                poller = QueuePoller(
                    binding,
                    self.pools[source.function_logical_id],
                    self.client("sqs"),
                    REGION,
                    self.stop_event,
                )
                poller.start()
                self.pollers.append(poller)

    def _start_api(self) -> None:
        assert self.stack is not None
        if not self.stack.http_apis:
            return
        pool = self.pools[self.stack.http_apis[0].function_logical_id]

        def handle(event: dict[str, Any], _context: object) -> dict[str, Any]:
            result = pool.invoke(event)
            if result.ok and isinstance(result.payload, dict):
                return result.payload
            return {
                "statusCode": 502 if result.error_type != "Sandbox.Timedout" else 504,
                "headers": {"content-type": "application/json"},
                "body": json.dumps(
                    {"code": "InternalServerError", "description": "the function failed"}
                ),
            }

        self.api = HttpFront(handle, port=self.api_port)
        self.api.start()

    def _start_control(self) -> None:
        handler = type("Control", (ControlHandler,), {"runtime": self})
        self.control = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.control.serve_forever, name="control", daemon=True).start()

    @property
    def control_url(self) -> str:
        assert self.control is not None
        host, port = self.control.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def stack_name(self) -> str:
        assert self.stack is not None
        return self.stack.name

    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke a function by logical id, or by its name or ARN as deployed."""
        if function not in self.pools and self.stack is not None:
            deployed = {f.name: f.logical_id for f in self.stack.functions}
            function = deployed.get(function.rsplit(":", 1)[-1], function)
        if function not in self.pools:
            return Invocation(False, None, "ResourceNotFoundException", f"no function {function}")
        return self.pools[function].invoke(event)

    def fire_schedule(self, schedule: LocalSchedule, when: datetime) -> Invocation:
        log.info("schedule %s fired for %s", schedule.name, when.isoformat())
        return self.invoke(schedule.function, schedule_event(schedule.input_text, when))

    def status(self) -> dict[str, Any]:
        assert self.stack is not None
        sqs = self.client("sqs")
        queues = {}
        for queue in self.stack.queues:
            attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
                "Attributes"
            ]
            queues[queue.logical_id] = {
                "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            }
        functions = {
            name: {
                "invocations": p.invocations,
                "errors": p.errors,
                "busy_s": round(p.busy_s, 2),
                "peak_rss_mb": round(p.peak_rss_mb, 1),
            }
            for name, p in self.pools.items()
        }
        busy = any(p.busy for p in self.pollers)
        schedules = [schedule.name for schedule in self.schedules]
        return {"queues": queues, "functions": functions, "busy": busy, "schedules": schedules}

    def facts(self) -> dict[str, Any]:
        assert self.stack is not None and self.moto is not None
        bucket = self.stack.buckets[0].name if self.stack.buckets else ""
        return {
            "s3_endpoint_url": self.moto.url,
            "endpoint_url": self.moto.url,
            "data_bucket": bucket,
            "region": REGION,
            "credentials": dict(LOCAL_CREDENTIALS),
            "stac_api_url": self.api.url if self.api else None,
            "control_url": self.control_url,
            "stack_name": self.stack.name,
            "outputs": {key: output["value"] for key, output in self.outputs.items()},
            "pid": os.getpid(),
            "environment": self.stack.functions[0].environment if self.stack.functions else {},
        }

    def _write_state(self) -> None:
        path = state_file(self.workdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.facts(), indent=2))

    def stop(self) -> None:
        self.stop_event.set()
        for poller in self.pollers:
            poller.join(5)
        if self.api is not None:
            self.api.stop()
        if self.control is not None:
            self.control.shutdown()
            self.control.server_close()
        for pool in self.pools.values():
            pool.stop()
        if self.moto is not None:
            self.moto.stop()
        path = state_file(self.workdir)
        if path.exists():
            path.unlink()


class ControlHandler(BaseHTTPRequestHandler):
    """The control endpoint: the CLI's calls, Lambda's Invoke API and CloudFormation's
    DescribeStacks, for the runtime set as the `runtime` attribute of a subclass."""

    runtime: LocalRuntime

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        self._reply(200, self.runtime.status())

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        segments = parts.path.strip("/").split("/")
        if parts.path in ("", "/"):
            self._cloudformation(parse_qs(raw.decode()))
            return
        body = json.loads(raw or b"{}")
        if len(segments) == 4 and segments[1:4:2] == ["functions", "invocations"]:
            self._lambda_invoke(unquote(segments[2]), body)
        elif len(segments) == 2 and segments[0] == "invoke":
            self._reply(200, _as_dict(self.runtime.invoke(segments[1], body)))
        elif len(segments) == 3 and segments[0] == "schedules" and segments[2] == "fire":
            at = parse_qs(parts.query).get("time", [None])[0]
            when = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
            schedule = next((s for s in self.runtime.schedules if s.name == segments[1]), None)
            if schedule is None:
                self._reply(404, {"error": f"no schedule {segments[1]}"})
            else:
                self._reply(200, _as_dict(self.runtime.fire_schedule(schedule, when)))
        else:
            self._reply(404, {"error": f"unknown path {parts.path}"})

    def _lambda_invoke(self, function: str, event: Any) -> None:
        """Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so
        that a boto3 Lambda client pointed here invokes the local functions."""
        result = self.runtime.invoke(function, event)
        if result.error_type == "ResourceNotFoundException":
            self._reply(404, {"Type": "User", "message": result.error_message})
            return
        headers = {} if result.ok else {"X-Amz-Function-Error": "Unhandled"}
        document = (
            result.payload
            if result.ok
            else {"errorType": result.error_type, "errorMessage": result.error_message}
        )
        self._reply(200, document, headers)

    def _cloudformation(self, form: dict[str, list[str]]) -> None:
        """CloudFormation's DescribeStacks (query protocol), answering with the
        template's Outputs, so that the operator commands read the local runtime as
        they read a deployed stack."""
        action = form.get("Action", [""])[0]
        name = form.get("StackName", [""])[0]
        if action != "DescribeStacks" or name not in ("", self.runtime.stack_name):
            message = f"Stack with id {name} does not exist"
            if action != "DescribeStacks":
                message = f"{action} is not served by the local runtime"
            self._reply_xml(400, cloudformation_error(message))
            return
        assert self.runtime.stack is not None
        xml = describe_stacks_xml(self.runtime.stack, self.runtime.outputs, self.runtime.started)
        self._reply_xml(200, xml)

    def _reply_xml(self, status: int, text: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/xml")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reply(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document, default=str).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def stack_outputs(template: Path, stack: Stack) -> dict[str, dict[str, str]]:
    """The template's Outputs, resolved for `stack` as CloudFormation would after deploying."""
    template = Path(template)
    cfn = expanded_template(template.read_text(), stack.region, template.parent / EXPANSIONS_DIR)
    resolver = Resolver(cfn, stack.name, {}, stack.region, stack.account_id, stack.endpoint_url)
    return {
        key: {
            "value": str(resolver.resolve(output["Value"])),
            "description": str(output.get("Description", "")),
        }
        for key, output in cfn.get("Outputs", {}).items()
        if "Condition" not in output or resolver.condition(output["Condition"])
    }


def describe_stacks_xml(stack: Stack, outputs: dict[str, dict[str, str]], created: str) -> str:
    """DescribeStacks' answer (query protocol XML) for one stack and its outputs."""
    name = escape(stack.name)
    members = "".join(
        f"<member><OutputKey>{escape(key)}</OutputKey><OutputValue>{escape(output['value'])}"
        f"</OutputValue><Description>{escape(output['description'])}</Description></member>"
        for key, output in outputs.items()
    )
    stack_id = f"arn:aws:cloudformation:{stack.region}:{stack.account_id}:stack/{name}/local"
    return (
        '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        "<DescribeStacksResult><Stacks><member>"
        f"<StackName>{name}</StackName><StackId>{stack_id}</StackId>"
        f"<CreationTime>{created}</CreationTime>"
        f"<StackStatus>CREATE_COMPLETE</StackStatus><Outputs>{members}</Outputs>"
        "</member></Stacks></DescribeStacksResult>"
        "<ResponseMetadata><RequestId>local</RequestId></ResponseMetadata>"
        "</DescribeStacksResponse>"
    )


def cloudformation_error(message: str) -> str:
    return (
        '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        f"<Error><Type>Sender</Type><Code>ValidationError</Code><Message>{escape(message)}"
        "</Message></Error><RequestId>local</RequestId></ErrorResponse>"
    )


def _as_dict(result: Invocation) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "payload": result.payload,
        "error_type": result.error_type,
        "error_message": result.error_message,
        "duration_s": round(result.duration_s, 3),
    }
