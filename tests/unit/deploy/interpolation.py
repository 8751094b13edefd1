"""Compose-spec variable interpolation, enough to check mlflow-compose.yml without Docker.

Supports `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
`${VAR:+alt}` and `${VAR+alt}`, applied to string values after YAML parsing (as Compose does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """A `${VAR:?message}` (or `${VAR?message}`) whose variable is unset (or empty)."""


def references(value: str) -> list[tuple[str, str]]:
    """(name, operator) of every variable a string uses; `$$` escapes are not references."""
    out = []
    for m in REFERENCE.finditer(value):
        if m["braced"]:
            out.append((m["braced"], m["op"] or ""))
        elif m["named"]:
            out.append((m["named"], ""))
    return out


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    def replace(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["named"]
        op, arg = m["op"] or "", m["arg"] or ""
        current = env.get(name)
        present = current is not None and (current != "" or not op.startswith(":"))
        if op.endswith("-"):
            return current if present else arg
        if op.endswith("?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op.endswith("+"):
            return arg if present else ""
        return current or ""

    return REFERENCE.sub(replace, value)


def interpolate(doc, env: Mapping[str, str]):
    """The document with every string value interpolated (keys are left alone, as in Compose)."""
    if isinstance(doc, dict):
        return {k: interpolate(v, env) for k, v in doc.items()}
    if isinstance(doc, list):
        return [interpolate(v, env) for v in doc]
    if isinstance(doc, str):
        return interpolate_string(doc, env)
    return doc


def strings(doc):
    """Every string value in a parsed document."""
    if isinstance(doc, dict):
        for v in doc.values():
            yield from strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from strings(v)
    elif isinstance(doc, str):
        yield doc


def read_env_file(path: Path) -> dict[str, str]:
    """A Compose .env file: KEY=VALUE lines, # comments, blank lines."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            env[key.strip()] = value.strip()
    return env


def load(path: Path):
    return yaml.safe_load(path.read_text())
