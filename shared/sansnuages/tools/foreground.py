"""What the CLI's commands and the demo share: where the project's template is, and how a
command that keeps the local runtime up waits in the foreground until it is stopped."""

from __future__ import annotations

import signal
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def default_template() -> Path:
    """`template.yaml` of the working directory, else the project's own."""
    here = Path.cwd() / "template.yaml"
    return here if here.exists() else PROJECT_ROOT / "template.yaml"


def wait_for_signal() -> None:
    """Block until SIGTERM or Ctrl-C."""
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _frame: stopping.append(number))
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
