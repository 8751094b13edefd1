"""Importing `core` first makes Feast's typeguard decorator a no-op (core/__init__.py); the opt-out and a
process that imported Feast first keep Feast's argument type checks. Each case is a fresh interpreter."""

import os
import subprocess
import sys

import pytest

# FeatureView(name=3): with typeguard's instrumentation the call fails on the argument's type before the
# body runs; without it the body fails later on the str schema (not a list of fields).
PROBE = """
import sys
{first}
from feast import FeatureView
import typeguard
try:
    FeatureView(name=3, source=None, schema="x")
except typeguard.TypeCheckError:
    print("checked")
except Exception as e:
    print("unchecked", type(e).__name__)
print("finder left" if any(type(f).__name__ == "_BeforeFeast" for f in sys.meta_path) else "finder gone")
"""


def _probe(first: str, **env) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k != "EMS_FEAST_TYPECHECKS"} | env
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                         env=environment, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split("\n")[:2]


def test_core_first_skips_feasts_type_checks_and_removes_its_finder():
    result = _probe("import core")
    assert result[0].startswith("unchecked"), result
    assert result[1] == "finder gone"


@pytest.mark.parametrize("first,env", [("import core", {"EMS_FEAST_TYPECHECKS": "1"}),
                                       ("import feast\nimport core", {})], ids=["opt-out", "feast-first"])
def test_opt_out_and_feast_first_keep_them(first, env):
    assert _probe(first, **env)[0] == "checked"


def test_cli_imports_core_before_anything_can_import_feast():
    out = subprocess.run([sys.executable, "-c", "import sys, cli; print(any(type(f).__name__ == '_BeforeFeast' "
                          "for f in sys.meta_path), 'typeguard' in sys.modules)"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "False"]
