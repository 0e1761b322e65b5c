"""The deployed functions carry only the GDAL drivers the code uses: the template's GDAL_SKIP
names every other raster driver of the pinned GDAL, so no upload can reach one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sansnuages.raster.gdal import GDAL_DRIVERS
from sansnuages.tools.local.template import load_stack

ROOT = Path(__file__).resolve().parents[2]
LIST_DRIVERS = (
    "import rasterio\nwith rasterio.Env() as env:\n    print('\\n'.join(sorted(env.drivers())))\n"
)


def _drivers(**environment: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "GDAL_SKIP"} | environment
    done = subprocess.run(
        [sys.executable, "-c", LIST_DRIVERS], env=env, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split("\n")) - {""}


def _skip() -> str:
    stack = load_stack(ROOT / "template.yaml")
    values = {f.environment.get("GDAL_SKIP") for f in stack.functions}
    assert len(values) == 1 and None not in values, "every function skips the same drivers"
    return str(values.pop())


def test_the_template_skips_every_driver_the_code_does_not_use() -> None:
    every = _drivers()
    assert set(GDAL_DRIVERS) <= every
    # GDAL_SKIP is split on spaces: a name with one (a vector driver) cannot be listed, and
    # rasters are never opened with vector drivers.
    expected = {d for d in every - set(GDAL_DRIVERS) if " " not in d}
    assert set(_skip().split()) == expected


def test_with_the_skip_list_only_the_used_drivers_remain() -> None:
    left = _drivers(GDAL_SKIP=_skip())
    assert {d for d in left if " " not in d} == set(GDAL_DRIVERS)
