"""One-way layers: every import of ours points down the declared order, never up or sideways.

LAYERS is the one place the order is declared (README, Layout). A module may import its own package
and any package in a lower layer; packages sharing a layer (evaluation and inference) may not
import each other. feature_repo/ is declarative and imports nothing of ours but itself. Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast

from core.settings import ROOT

# Lowest first; a tuple is one layer of packages that must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("warehouse",),
    ("stack",),
    ("registry",),
    ("evaluation", "inference"),
    ("bench", "deploy", "pipelines", "service"),
    ("cli",),
]
OURS = {p for layer in LAYERS for p in layer} | {"feature_repo", "tests"}
RANK = {p: i for i, layer in enumerate(LAYERS) for p in layer}


def _modules():
    yield ROOT / "cli.py"
    for package in OURS - {"cli", "tests"}:
        yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def violations() -> list[str]:
    found = []
    for path in _modules():
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for line, target in _imports(path):
            if target not in OURS or target == own:
                continue
            if own == "feature_repo" or target in ("feature_repo", "tests"):
                found.append(f"{rel}:{line} imports {target} (feature_repo is declarative; nothing imports it "
                             "or tests)")
            elif RANK[target] >= RANK[own]:
                way = "sideways" if RANK[target] == RANK[own] else "up"
                found.append(f"{rel}:{line} imports {target}, which is {way} from {own} in LAYERS")
    return found


def test_every_import_points_down_the_declared_layers():
    assert violations() == []


def test_every_package_of_ours_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert packages <= OURS, packages - OURS
