"""Anomaly scores on one scale, sensitivity levels and severity bands, defined once.

Every detector reports a score in standard-deviation units ("how many sigmas from normal"):
z-score directly, IQR through the normal-equivalent sigma IQR/1.349, isolation forest and LOF by
mapping their raw scores' training median and 99th percentile to 0 and 2.326 sigma. Bands (seed 002):
low 2.0-2.5, medium 2.5-3.5, high 3.5-4.5, critical > 4.5. Sensitivity 1-5 picks the lowest score
above which a score is flagged: 1 flags only critical scores (> 4.5), 5 everything above 2.0.
"""

from __future__ import annotations

import numpy as np

from core.errors import EmsError

BANDS = (("low", 2.0), ("medium", 2.5), ("high", 3.5), ("critical", 4.5))  # (name, lower bound)
SENSITIVITY_THRESHOLDS = {1: 4.5, 2: 3.5, 3: 3.0, 4: 2.5, 5: 2.0}
DEFAULT_SENSITIVITY = 3
IQR_TO_SIGMA = 1.349  # IQR of a standard normal
NORMAL_Q99 = 2.326  # 99th percentile of a standard normal


class InvalidSensitivityError(EmsError, ValueError):
    """Sensitivity outside 1..5."""


def check_sensitivity(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value not in SENSITIVITY_THRESHOLDS:
        raise InvalidSensitivityError(f"sensitivity={value!r} is out of range 1..5 (1 flags scores above 4.5 σ, "
                                      "5 above 2.0 σ)")
    return int(value)


def threshold(sensitivity: int) -> float:
    return SENSITIVITY_THRESHOLDS[check_sensitivity(sensitivity)]


def severity(score: float) -> str | None:
    """Band of a score; None below the low band (or for NaN)."""
    if not np.isfinite(score):
        return None
    name = None
    for band, lower in BANDS:
        if score > lower or (score == lower and band != "critical"):
            name = band
    return name


def severities(scores: np.ndarray) -> list[str | None]:
    return [severity(float(s)) for s in np.asarray(scores, dtype=float)]


def tail_scale(raw: np.ndarray) -> tuple[float, float]:
    """(center, sigma) that put raw detector scores on the sigma scale by their upper tail: the
    training median maps to 0 and the training 99th percentile to 2.326 (a normal's 99th), so about
    1 % of normal hours exceed the low band whatever the shape of the detector's score distribution."""
    raw = np.asarray(raw, dtype=float)
    raw = raw[np.isfinite(raw)]
    median, q99 = (float(v) for v in np.percentile(raw, [50, 99]))
    sigma = (q99 - median) / NORMAL_Q99
    return median, sigma if sigma > 0 else float(np.std(raw) or 1.0)
