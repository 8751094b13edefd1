"""Severity bands and sensitivity levels, defined once."""

import numpy as np
import pytest

from registry import severity


@pytest.mark.parametrize(("score", "band"), [
    (1.99, None), (2.0, "low"), (2.49, "low"), (2.5, "medium"), (3.49, "medium"), (3.5, "high"),
    (4.5, "high"), (4.51, "critical"), (float("nan"), None),
])
def test_seed_bands(score, band):
    assert severity.severity(score) == band


def test_sensitivity_orders_thresholds_and_rejects_out_of_range():
    thresholds = [severity.threshold(s) for s in range(1, 6)]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[0] == 4.5 and thresholds[-1] == 2.0
    for bad in (0, 6, 2.5, "3", True):
        with pytest.raises(severity.InvalidSensitivityError, match="out of range 1..5"):
            severity.check_sensitivity(bad)


def test_tail_scale_maps_median_to_zero_and_q99_to_2_326_sigma():
    raw = np.arange(101.0)  # median 50, 99th percentile 99
    center, sigma = severity.tail_scale(raw)
    assert center == 50.0 and (99.0 - center) / sigma == pytest.approx(2.326)
