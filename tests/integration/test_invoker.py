"""The local execution environment holds a function to its declared timeout and memory."""

from pathlib import Path

import pytest

from sansnuages.tools.local.invoker import FunctionConfig, FunctionPool, prepare_workers

HANDLERS = """
import os, time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.5)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis(),
            "memory": context.memory_limit_in_mb, "env": os.environ.get("MY_SETTING")}
"""


@pytest.fixture()
def pool(tmp_path: Path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(HANDLERS)
    config = FunctionConfig(
        name="Probe",
        code_dir=code,
        handler="app.handler",
        memory_mb=256,
        timeout_s=3,
        environment={"MY_SETTING": "from-template"},
        log_file=tmp_path / "probe.log",
    )
    pool = FunctionPool(config, concurrency=1)
    yield pool
    pool.stop()


def test_a_warm_worker_serves_invocations_with_the_function_environment(pool: FunctionPool) -> None:
    first, second = pool.invoke({}), pool.invoke({})
    assert first.ok and second.ok
    assert first.payload["pid"] == second.payload["pid"]
    assert first.payload["env"] == "from-template"
    assert first.payload["memory"] == 256
    assert 0 < first.payload["remaining"] <= 3000


def test_a_handler_error_fails_the_invocation_not_the_worker(pool: FunctionPool) -> None:
    failed = pool.invoke({"fail": True})
    assert not failed.ok and failed.error_type == "ValueError"
    assert pool.invoke({}).ok


def test_the_declared_timeout_kills_the_invocation(pool: FunctionPool) -> None:
    before = pool.invoke({}).payload["pid"]
    result = pool.invoke({"sleep": 10})
    assert not result.ok and result.error_type == "Sandbox.Timedout"
    assert 3 <= result.duration_s < 6
    after = pool.invoke({})
    assert after.ok and after.payload["pid"] != before  # a fresh environment replaced the dead one


def test_the_declared_memory_kills_the_invocation(pool: FunctionPool) -> None:
    result = pool.invoke({"allocate_mb": 600})
    assert not result.ok and result.error_type == "Runtime.OutOfMemory"
    assert pool.invoke({"allocate_mb": 20}).ok


def test_a_worker_sees_the_environment_of_when_it_starts_not_of_its_fork_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers are forked from a server started once per process (with the environment of
    then); each must still see the environment as it is when the worker starts, as a spawned
    one would, the function's variables over it."""
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(
        "import os, sys\n"
        "def handler(event, context):\n"
        "    return {name: os.environ.get(name) for name in event['names']} | "
        "{'preloaded': 'pystac' in sys.modules}\n"
    )
    prepare_workers()  # the fork server runs before the variables below are set
    monkeypatch.setenv("SET_AFTER_THE_SERVER", "seen")
    monkeypatch.setenv("MY_SETTING", "the parent's")
    monkeypatch.delenv("HOME", raising=False)
    config = FunctionConfig(
        name="Env",
        code_dir=code,
        handler="app.handler",
        memory_mb=256,
        timeout_s=10,
        environment={"MY_SETTING": "from-template"},
        log_file=tmp_path / "env.log",
    )
    pool = FunctionPool(config, concurrency=1)
    try:
        result = pool.invoke({"names": ["SET_AFTER_THE_SERVER", "MY_SETTING", "HOME"]})
    finally:
        pool.stop()
    assert result.ok, result.error_message
    assert result.payload == {
        "SET_AFTER_THE_SERVER": "seen",
        "MY_SETTING": "from-template",
        "HOME": None,
        "preloaded": True,
    }
