"""The deployed API handler module, loaded afresh for a test, so that it reads the environment
of that test's stack (the module reads its settings once, at import, as on Lambda)."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parents[2] / "functions" / "api" / "app.py"


def load_api_handler() -> Callable[[Any, Any], Any]:
    spec = importlib.util.spec_from_file_location(f"api_app_{uuid.uuid4().hex}", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler  # type: ignore[no-any-return]
