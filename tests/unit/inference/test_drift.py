"""PSI (inference/drift.py) on series built in code: a level shift crosses the threshold, a stable
series of the same process does not; bad thresholds are one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidArgumentError
from inference.drift import Thresholds, psi


def _load(hours: int, seed: int, level: float = 100.0) -> np.ndarray:
    """An hourly load: daily cycle plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    return level * (1 + 0.3 * np.sin(2 * np.pi * t / 24)) + rng.normal(0, 5, hours)


def test_a_stable_series_stays_below_the_threshold():
    value = psi(_load(24 * 60, 1), _load(24 * 7, 2))
    # a week is 168 values: sampling noise alone gives a PSI near (BINS - 1) / 168 ~ 0.05-0.1
    assert value < 0.15 and value < Thresholds().psi


def test_a_level_shift_crosses_the_threshold():
    value = psi(_load(24 * 60, 1), _load(24 * 7, 2, level=130.0))
    assert value > Thresholds().psi


def test_identical_samples_have_zero_psi_and_nans_are_ignored():
    x = _load(500, 3)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(np.append(x, np.nan), x) == pytest.approx(0.0, abs=1e-12)


def test_psi_needs_values_in_both_windows():
    with pytest.raises(InvalidArgumentError, match="reference 0, recent 3"):
        psi(np.array([np.nan]), np.array([1.0, 2.0, 3.0]))


def test_thresholds_must_be_positive():
    with pytest.raises(InvalidArgumentError, match="threshold psi=-1 must be a positive number"):
        Thresholds(psi=-1).check()
