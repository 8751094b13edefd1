"""Forecast metrics on tiny hand-computed examples."""

import math

import numpy as np
import pytest

from registry import metrics


def test_point_metrics_match_hand_computation():
    y, yhat = [10.0, 20.0, 0.0, 40.0], [12.0, 18.0, 1.0, 44.0]
    assert metrics.mae(y, yhat) == pytest.approx((2 + 2 + 1 + 4) / 4)
    assert metrics.rmse(y, yhat) == pytest.approx(math.sqrt((4 + 4 + 1 + 16) / 4))
    assert metrics.mape(y, yhat) == pytest.approx((0.2 + 0.1 + 0.1) / 3 * 100)  # zero actual skipped
    assert metrics.smape([0.0, 10.0], [0.0, 30.0]) == pytest.approx((0 + 2 * 20 / 40) / 2 * 100)


def test_mase_scales_each_row_by_its_series():
    assert metrics.mase([10, 100], [12, 110], [2, 10]) == pytest.approx((1 + 1) / 2)
    assert math.isnan(metrics.mase([1.0], [2.0], [0.0]))


def test_pinball_and_coverage():
    assert metrics.pinball([10.0], [8.0], 0.9) == pytest.approx(0.9 * 2)
    assert metrics.pinball([10.0], [12.0], 0.9) == pytest.approx(0.1 * 2)
    assert metrics.coverage([1, 5, 9], [0, 6, 8], [2, 7, 10]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"q=1.5 is out of range \(0, 1\)"):
        metrics.pinball([1.0], [1.0], 1.5)


def test_nan_rows_are_skipped():
    assert metrics.mae([1.0, np.nan, 3.0], [2.0, 5.0, np.nan]) == pytest.approx(1.0)
