"""Talking to a running local runtime from another process (the CLI), through local.json."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sansnuages.settings import Settings
from sansnuages.tools.local.runtime import state_file


class RuntimeNotRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class RuntimeClient:
    facts: dict[str, Any]

    @classmethod
    def connect(cls, workdir: Path) -> RuntimeClient:
        path = state_file(workdir)
        if not path.exists():
            raise RuntimeNotRunning(
                f"no local runtime: {path} is missing (start one with `sansnuages local up`)"
            )
        client = cls(json.loads(path.read_text()))
        client.use_credentials()
        return client

    def use_credentials(self) -> None:
        """Let this process's AWS clients sign with the local runtime's credentials (moto's
        test keys, no secret) unless the shell has its own, so that the CLI works in a new
        shell beside a detached runtime."""
        for name, value in (self.facts.get("credentials") or {}).items():
            os.environ.setdefault(name, str(value))

    def settings(self) -> Settings:
        env = {
            **self.facts["environment"],
            "AWS_ENDPOINT_URL": self.facts["endpoint_url"],
            "AWS_REGION": self.facts["region"],
        }
        return Settings.from_env(env)

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/invoke/{function}", event)

    def fire_schedule(self, schedule: str, time: str | None = None) -> dict[str, Any]:
        query = f"?time={quote(time)}" if time else ""
        return self._post(f"/schedules/{schedule}/fire{query}", {})

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.facts["control_url"] + "/status", timeout=30) as response:  # noqa: S310
            return dict(json.load(response))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (loopback control endpoint)
            self.facts["control_url"] + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=1000) as response:  # noqa: S310
            return dict(json.load(response))
