"""The package's map holds: each folder imports only what its row in the README allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "sansnuages"
PURE = ("formats", "stac", "processing")
AWS_BOUND = ("boto3", "botocore", "aws_lambda_powertools", "sansnuages.stores")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", PURE)
def test_pure_folders_touch_no_aws(folder: str) -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in modules(folder)
        for name in imports_of(path)
        if name.startswith(AWS_BOUND)
    }
    assert offenders == set()


def test_nothing_shipped_to_lambda_imports_the_tools() -> None:
    shipped = [p for p in PACKAGE.rglob("*.py") if "tools" not in p.relative_to(PACKAGE).parts]
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in shipped
        if path.name != "__main__.py"
        for name in imports_of(path)
        if name.startswith("sansnuages.tools")
    }
    assert offenders == set()


def test_stages_use_no_private_name_of_another_stage() -> None:
    offenders = set()
    for path in modules("stages"):
        for name in imports_of(path):
            if name.startswith("sansnuages.stages.") and name.rsplit(".", 1)[-1].startswith("_"):
                offenders.add(f"{path.name}: {name}")
    assert offenders == set()


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """No circles between modules, counting the imports inside functions too."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("sansnuages", *path.relative_to(PACKAGE).with_suffix("").parts))
        name = name.removesuffix(".__init__")
        graph[name] = {m for m in imports_of(path) if m.startswith("sansnuages")}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = {f"{a} <-> {b}" for a, deps in graph.items() for b in deps if reaches(b, a, {b})}
    assert circles == set()
