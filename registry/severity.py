"""Anomaly scores on one scale, sensitivity levels and severity bands, defined once.

Every detector reports a score in standard-deviation units ("how many sigmas from normal"):
z-score directly, IQR through the normal-equivalent sigma IQR/1.349, isolation forest and LOF by
robust standardisation of their raw scores against the training data. Bands (seed 002):
low 2.0-2.5, medium 2.5-3.5, high 3.5-4.5, critical > 4.5. Sensitivity 1-5 picks the lowest score
above which a score is flagged: 1 flags only critical scores (> 4.5), 5 everything above 2.0.
"""

from __future__ import annotations

import numpy as np

from inference.errors import EmsError

BANDS = (("low", 2.0), ("medium", 2.5), ("high", 3.5), ("critical", 4.5))  # (name, lower bound)
SENSITIVITY_THRESHOLDS = {1: 4.5, 2: 3.5, 3: 3.0, 4: 2.5, 5: 2.0}
DEFAULT_SENSITIVITY = 3
IQR_TO_SIGMA = 1.349  # IQR of a standard normal
MAD_TO_SIGMA = 1.4826  # 1 / (MAD of a standard normal)


class InvalidSensitivityError(EmsError, ValueError):
    """Sensitivity outside 1..5."""


def check_sensitivity(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value not in SENSITIVITY_THRESHOLDS:
        raise InvalidSensitivityError(f"sensitivity={value!r} is out of range 1..5 (1 flags only critical, "
                                      "5 flags from the low band up)")
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


def robust_scale(raw: np.ndarray) -> tuple[float, float]:
    """(median, sigma) of raw scores: sigma = 1.4826 * MAD, never zero."""
    raw = np.asarray(raw, dtype=float)
    raw = raw[np.isfinite(raw)]
    median = float(np.median(raw))
    sigma = float(np.median(np.abs(raw - median)) * MAD_TO_SIGMA)
    return median, sigma if sigma > 0 else float(np.std(raw) or 1.0)
