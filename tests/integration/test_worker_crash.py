"""A worker killed while it starts is a failed invocation: its batch is released and retried.

The handler's module takes a moment to import (as the raster functions do); the test kills
the worker process during that import, with SIGKILL as an operator would, and measures how
long the message takes to be processed after all.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import boto3
import pytest

from sansnuages.tools.local.invoker import FunctionConfig, FunctionPool, Worker
from sansnuages.tools.local.pump import QueueBinding, QueuePoller

SLOW_IMPORT = """
import json, os, time
time.sleep(float(os.environ["IMPORT_SECONDS"]))
DONE = os.environ["DONE_FILE"]

def handler(event, context):
    with open(DONE, "a") as out:
        for record in event["Records"]:
            out.write(record["body"] + "\\n")
    return {"batchItemFailures": []}
"""
IMPORT_SECONDS = 1.5
RETRY_DELAY_S = 2


@pytest.fixture()
def config(tmp_path: Path) -> FunctionConfig:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(SLOW_IMPORT)
    return FunctionConfig(
        name="Slow",
        code_dir=code,
        handler="app.handler",
        memory_mb=512,
        timeout_s=30,
        environment={"IMPORT_SECONDS": str(IMPORT_SECONDS), "DONE_FILE": str(tmp_path / "done")},
        log_file=tmp_path / "slow.log",
    )


def _kill_while_starting(pool: FunctionPool) -> threading.Thread:
    """SIGKILL the pool's first worker process once it exists, while it imports."""
    worker: Worker = pool._all[0]  # noqa: SLF001 (the test reaches the worker to kill it)

    def kill() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            process = worker.process
            if process is not None and process.pid is not None and process.is_alive():
                time.sleep(IMPORT_SECONDS / 3)
                os.kill(process.pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_while_starting_fails_the_invocation_and_the_next_one_works(
    config: FunctionConfig,
) -> None:
    pool = FunctionPool(config, concurrency=1)
    try:
        killer = _kill_while_starting(pool)
        failed = pool.invoke({"Records": [{"body": "a"}]})
        killer.join()
        assert not failed.ok and failed.error_type == "Runtime.InitError"
        assert "exited while starting" in (failed.error_message or "")
        assert pool.invoke({"Records": [{"body": "b"}]}).ok  # a new worker starts
    finally:
        pool.stop()
    assert Path(config.environment["DONE_FILE"]).read_text() == "b\n"


def test_the_message_of_a_killed_worker_is_retried_at_once(
    config: FunctionConfig,
    moto_server,
    unique_name: str,  # type: ignore[no-untyped-def]
) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = sqs.create_queue(QueueName=unique_name, Attributes={"VisibilityTimeout": "5400"})[
        "QueueUrl"
    ]
    binding = QueueBinding(
        "Slow", url, f"arn:aws:sqs:us-east-1:123456789012:{unique_name}", 1, 0, True
    )
    pool = FunctionPool(config, concurrency=1)
    stop = threading.Event()
    poller = QueuePoller(binding, pool, sqs, "us-east-1", stop, retry_delay_s=RETRY_DELAY_S)
    done = Path(config.environment["DONE_FILE"])
    try:
        killer = _kill_while_starting(pool)
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"tile": "31UFS"}))
        poller.start()
        while not done.exists() and time.monotonic() - sent < 60:
            time.sleep(0.1)
        recovery = time.monotonic() - sent
        killer.join()
    finally:
        stop.set()
        poller.join(10)
        pool.stop()
    assert done.read_text() == '{"tile": "31UFS"}\n'  # once: the killed start did not run it
    # released after the back-off, not after the queue's 90-minute visibility timeout
    assert recovery < RETRY_DELAY_S + 3 * IMPORT_SECONDS + 10, recovery
    print(f"recovery after a worker killed while starting: {recovery:.1f} s")
