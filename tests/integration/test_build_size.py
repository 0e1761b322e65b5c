"""What `sam build` produced fits in Lambda and is built for the Lambda runtime.

Lambda refuses a function whose code plus layers exceed 250 MB unzipped; the raster stack alone
takes most of it. These tests read `.aws-sam/build` (made by scripts/sam.sh) and fail, rather than
skip, when it is missing: a skipped size check is how an undeployable build gets merged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sansnuages.tools.local.template import parse_template

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB, code and all layers of one function
PYTHON_TAG = "cpython-313-x86_64-linux-gnu"


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    template = BUILD / "template.yaml"
    if not template.is_file():
        pytest.fail(f"{template} is missing: run scripts/sam.sh (sam build) before the tests")
    return parse_template(template.read_text())


def tree_size(folder: Path) -> int:
    """Bytes of the regular files under `folder`, as they count once unzipped in Lambda."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def of_type(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def function_sizes(built: dict[str, Any]) -> dict[str, int]:
    layers = {
        logical_id: BUILD / layer["Properties"]["ContentUri"]
        for logical_id, layer in of_type(built, "AWS::Serverless::LayerVersion").items()
    }
    sizes = {}
    for logical_id, function in of_type(built, "AWS::Serverless::Function").items():
        props = function["Properties"]
        folders = [BUILD / props["CodeUri"]] + [layers[ref["Ref"]] for ref in props["Layers"]]
        for folder in folders:
            assert folder.is_dir(), f"{logical_id}: {folder} was not built"
        sizes[logical_id] = sum(tree_size(folder) for folder in folders)
    return sizes


def test_every_function_of_the_template_was_built(built: dict[str, Any]) -> None:
    source = parse_template((ROOT / "template.yaml").read_text())
    for rtype in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
        assert set(of_type(built, rtype)) == set(of_type(source, rtype)), (
            f"{rtype}: the build is stale, run scripts/sam.sh"
        )


def test_every_function_with_its_layers_fits_in_lambda(built: dict[str, Any]) -> None:
    sizes = function_sizes(built)
    report = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(sizes.items()))
    print(f"unzipped sizes: {report}")
    assert {"ApiFunction", "IngestFunction", "PlanFunction", "CompositeFunction"} <= set(sizes)
    too_big = {name: size for name, size in sizes.items() if size >= LAMBDA_UNZIPPED_LIMIT}
    assert too_big == {}, f"over Lambda's 250 MB: {report}"
    # The raster stack is most of it: a tiny total means the layers were not installed.
    assert sizes["CompositeFunction"] > 100_000_000


def test_layers_hold_python313_builds_of_the_pinned_versions(built: dict[str, Any]) -> None:
    python = BUILD / "RasterLayer" / "python"
    assert (python / "rasterio-1.4.4.dist-info").is_dir()
    assert (python / "numpy-2.4.6.dist-info").is_dir()
    extensions = [p.name for p in (python / "rasterio").glob("*.so")]
    assert extensions and all(PYTHON_TAG in name for name in extensions), extensions
    common = BUILD / "CommonLayer" / "python"
    assert (common / "botocore-1.43.117.dist-info").is_dir()
    assert (common / "aiobotocore").is_dir() and (common / "pystac").is_dir()
    assert (BUILD / "CoreLayer" / "python" / "sansnuages" / "settings.py").is_file()


def test_layers_are_stripped_of_tests_and_caches(built: dict[str, Any]) -> None:
    for layer in ("RasterLayer", "CommonLayer", "CoreLayer"):
        root = BUILD / layer / "python"
        leftovers = [
            path
            for pattern in ("**/__pycache__", "**/tests", "**/*.pyi")
            for path in root.glob(pattern)
        ]
        assert leftovers == [], leftovers[:5]


def test_the_pruned_botocore_of_the_common_layer_serves_every_client_the_code_makes(
    built: dict[str, Any],
) -> None:
    """The common layer keeps the models of the services the code calls, and only those."""
    import re
    import subprocess
    import sys

    source = "\n".join(p.read_text() for p in (ROOT / "shared" / "sansnuages").rglob("*.py"))
    services = sorted(set(re.findall(r'aws\.client\(\s*"([a-z0-9-]+)"', source)))
    assert {"s3", "sqs", "dynamodb"} <= set(services)
    layer = BUILD / "CommonLayer" / "python"
    script = (
        "import sys, botocore.session\n"
        "assert botocore.__file__.startswith(sys.argv[1]), botocore.__file__\n"
        "session = botocore.session.get_session()\n"
        "for name in sys.argv[2:]:\n"
        "    session.create_client(name, region_name='eu-west-1',\n"
        "        aws_access_key_id='k', aws_secret_access_key='s')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(layer), *services],
        env={**os.environ, "PYTHONPATH": str(layer)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    kept = {p.name for p in (layer / "botocore" / "data").iterdir() if p.is_dir()}
    assert len(kept) < 10, sorted(kept)


def test_pyproj_of_the_tiles_layer_reads_the_raster_layers_proj_data(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """The API function carries one copy of PROJ's data: the raster layer's. pyproj without its
    own copy must find it through PROJ_DATA and transform correctly with it."""
    tiles = BUILD / built["Resources"]["TilesLayer"]["Properties"]["ContentUri"] / "python"
    raster = BUILD / built["Resources"]["RasterLayer"]["Properties"]["ContentUri"] / "python"
    assert not (tiles / "pyproj" / "proj_dir").exists()
    env = built["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    proj_data = raster / Path(env["PROJ_DATA"]).relative_to("/opt/python")
    assert (proj_data / "proj.db").is_file()
    # The layers hold Python 3.13 builds: run this interpreter's pyproj the same way, without
    # its own data, against the raster layer's proj.db.
    import pyproj

    shutil.copytree(Path(pyproj.__file__).parent, tmp_path / "pyproj")
    libs = Path(pyproj.__file__).parent.parent / "pyproj.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp_path / "pyproj.libs")
    shutil.rmtree(tmp_path / "pyproj" / "proj_dir")
    script = (
        "import pyproj\n"
        "t = pyproj.Transformer.from_crs('EPSG:32631', 'EPSG:4326', always_xy=True)\n"
        "print(pyproj.datadir.get_data_dir(), *t.transform(500000, 4900020))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PROJ_DATA": str(proj_data)},
        capture_output=True,
        text=True,
        check=True,
    )
    data_dir, lon, lat = done.stdout.split()
    assert Path(data_dir) == proj_data
    assert abs(float(lon) - 3.0) < 1e-9 and abs(float(lat) - 44.2534176) < 1e-6
