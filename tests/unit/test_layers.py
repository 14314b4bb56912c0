"""The dependency rule of docs/architecture.md: ``pipeline/`` and ``api/`` share names
through ``schemas/`` only; neither imports the other, and ``schemas/`` imports neither."""

import ast
from pathlib import Path

import pytest

from tests.support import PROJECT_ROOT

FORBIDDEN = {"api": {"pipeline"}, "pipeline": {"api"}, "schemas": {"api", "pipeline"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_the_dependency_rule_allows(package: str) -> None:
    crossings = {
        str(path.relative_to(PROJECT_ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (PROJECT_ROOT / package).rglob("*.py")
    }
    assert {path: found for path, found in crossings.items() if found} == {}
