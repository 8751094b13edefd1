"""The one number formatter for what people read (CLI tables, reports, explanation sentences)."""

from __future__ import annotations

import math
from numbers import Integral, Real

MISSING = "—"


def number(value, spec: str = ",.2f", missing: str = MISSING) -> str:
    """A number formatted with `spec` (a format spec, e.g. ",.2f", "+.3f", ",.4g"); `missing` for None,
    NaN and infinities; text and integers as they are."""
    if value is None:
        return missing
    if isinstance(value, str | Integral):
        return str(value)
    if isinstance(value, Real):
        return format(value, spec) if math.isfinite(value) else missing
    return str(value)


def reading(value) -> str:
    """A reading, forecast or expected value inside a sentence: thousands separated, one decimal."""
    return number(value, ",.1f")


def magnitude(value: float) -> str:
    """A load-like value by size: whole numbers from 100, two decimals from 1, three digits below."""
    return number(value, ",.0f" if abs(value) >= 100 else ".2f" if abs(value) >= 1 else ".3g")
