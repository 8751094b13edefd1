"""The README's tenant-boundary matrix (path x resource) names real tests: every `file.py::test` is defined in
that file, every other test name in some integration test file, and each row has a cell per resource."""

from __future__ import annotations

import ast
import re

from core.settings import ROOT

INTEGRATION = ROOT / "tests" / "integration"
RESOURCES = ["models", "artifacts", "readings", "features", "training sets", "exports"]
PATHS = ["SDK", "CLI", "HTTP", "S3 direct", "SQL"]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("**Where the boundary is tested.**")
    return text[start:text.index("The untouched Feast CLI", start)]


def _tests(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_the_matrix_has_a_cell_for_every_path_and_resource():
    rows = [line for line in _section().splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[1:] == RESOURCES
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]
    assert [r[0].split(" (")[0] for r in body] == PATHS
    assert all(len(r) == 1 + len(RESOURCES) and all(r) for r in body)


def test_every_test_the_matrix_names_exists():
    section = _section()
    by_file = {p.name: _tests(p) for p in INTEGRATION.glob("test_*.py")}
    everywhere = set().union(*by_file.values())
    qualified = re.findall(r"(test_\w+\.py)::(test_\w+)", section)
    assert qualified, "the matrix names no test"
    missing = [f"{f}::{t}" for f, t in qualified if t not in by_file.get(f, set())]
    bare = set(re.findall(r"`(test_\w+)`", section))
    missing += sorted(bare - everywhere)
    assert missing == []
