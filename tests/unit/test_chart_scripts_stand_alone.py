"""`make bench` and `make capacity` draw their charts with .venv-bench's interpreter, which has
matplotlib and nothing of ours on its path but the repository's root: a chart script that reaches the
product or testkit through an import fails only at the end of a long run."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART_SCRIPTS = ("benchmarks.charts", "capacity.charts")
# What .venv-bench installs (requirements/bench.txt) besides the standard library.
BENCH_VENV_PACKAGES = {"matplotlib"}
# Packages of this repository importable from its root, as `python -m` puts it on sys.path.
ROOT_PACKAGES = {"benchmarks", "capacity"}


def _imports(module: str) -> set[str]:
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _reached(module: str) -> dict[str, str]:
    """Every module the script imports, its own and transitively its repository modules': name -> importer."""
    reached: dict[str, str] = {}
    pending = [module]
    while pending:
        current = pending.pop()
        for name in _imports(current):
            if name in reached:
                continue
            reached[name] = current
            if name.split(".")[0] in ROOT_PACKAGES and name != "__future__":
                pending.append(name)
    return reached


@pytest.mark.parametrize("script", CHART_SCRIPTS)
def test_a_chart_script_needs_only_the_standard_library_and_matplotlib(script: str) -> None:
    foreign = {
        name: importer
        for name, importer in _reached(script).items()
        if (top := name.split(".")[0]) not in sys.stdlib_module_names
        and top not in BENCH_VENV_PACKAGES
        and top not in ROOT_PACKAGES
    }
    assert foreign == {}, f"{script} reaches modules .venv-bench does not have (name: imported by)"


def test_the_walk_sees_a_module_that_reaches_testkit() -> None:
    # The check itself: benchmarks.common imports testkit, so a script importing it would be refused.
    assert "testkit.aws" in _reached("benchmarks.common")
