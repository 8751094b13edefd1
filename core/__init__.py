"""The bottom layer: settings, names, errors, formats. Every other package imports it.

Importing it also makes a later `import feast` in this process about 4.5 s cheaper (7.0-7.8 s -> 2.5-2.9 s
on the 2-core reference machine). Feast wraps 23 of its classes and functions in typeguard's
`@typechecked`, and typeguard 4 instruments them on import by re-reading, re-parsing and recompiling the
whole defining module once per method. In our processes the decorator returns its target unchanged, as
typeguard itself does under `python -O`: Feast's runtime argument type checks are skipped, nothing else
changes. `EMS_FEAST_TYPECHECKS=1` keeps them, and so does a process that imported Feast (or typeguard)
first, such as the `feast` CLI.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

TYPECHECKS_ENV = "EMS_FEAST_TYPECHECKS"


def _unchecked(target=None, **_options):
    """typeguard's `typechecked` as it is under `python -O`: the target unchanged (bare or called)."""
    return (lambda inner: inner) if target is None else target


class _BeforeFeast(MetaPathFinder):
    """Swaps typeguard's decorator for `_unchecked` just before the `feast` package loads, then leaves
    `sys.meta_path`; it finds nothing itself, so the import goes on as before."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "feast":
            sys.meta_path.remove(self)
            import typeguard

            typeguard.typechecked = _unchecked
        return None


if (os.environ.get(TYPECHECKS_ENV) != "1" and "feast" not in sys.modules and "typeguard" not in sys.modules
        and not any(isinstance(finder, _BeforeFeast) for finder in sys.meta_path)):
    sys.meta_path.insert(0, _BeforeFeast())
