"""`sansnuages local up --detach` / `local down`: a background runtime others can use, stopped
cleanly with no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import psutil

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sansnuages", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_detached_runtime_serves_then_stops_without_leftovers(tmp_path: Path) -> None:
    started = run_cli(
        "local", "up", "--detach", "--template", str(ROOT / "template.yaml"), cwd=tmp_path
    )
    assert started.returncode == 0, started.stdout + started.stderr
    facts = json.loads((tmp_path / ".sansnuages" / "local.json").read_text())
    runtime = psutil.Process(facts["pid"])
    family = [runtime]
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=facts["s3_endpoint_url"],
            region_name=facts["region"],
            aws_access_key_id=facts["credentials"]["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=facts["credentials"]["AWS_SECRET_ACCESS_KEY"],
        )
        assert facts["data_bucket"] in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        with urllib.request.urlopen(facts["stac_api_url"], timeout=60) as response:
            landing = json.load(response)
        assert landing["type"] == "Catalog" and any(
            link["rel"] == "search" for link in landing["links"]
        )
        family += runtime.children(recursive=True)
        assert len(family) >= 3  # the runtime, moto and the API function's worker
        # a new shell, with no AWS variable: the commands sign with the runtime's credentials
        bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        reindexed = subprocess.run(
            [sys.executable, "-m", "sansnuages", "reindex"],
            cwd=tmp_path, env=bare, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert reindexed.returncode == 0, reindexed.stdout + reindexed.stderr
    finally:
        stopped = run_cli("local", "down", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [p.pid for p in alive]
    assert not (tmp_path / ".sansnuages" / "local.json").exists()


def test_every_command_says_what_it_does_with_an_example(tmp_path: Path) -> None:
    for command in (
        [],
        ["local"],
        ["local", "up"],
        ["local", "down"],
        ["local", "fire"],
        ["simulate"],
        ["demo"],
        ["month"],
        ["jobs"],
    ):
        result = run_cli(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, command
        assert "example" in result.stdout.lower(), command


def test_commands_that_need_a_runtime_say_so(tmp_path: Path) -> None:
    result = run_cli("jobs", cwd=tmp_path)
    assert result.returncode != 0
    assert "sansnuages local up" in result.stderr
