"""registry/conformal.py, the split-conformal band calibration the sub-hourly and PV forecasters share: the
finite-sample quantile of the conformity scores per bucket, a thin bucket taking the all-bucket figure, and the
split that holds each series' last days out (none when the window is too short)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from registry import conformal


def test_the_widening_is_the_finite_sample_quantile_of_the_scores_per_bucket():
    y = np.arange(1, 11) / 10  # band [0, 0]: the scores are y
    found = conformal.widening(np.zeros(10), np.zeros(10), y, np.zeros(10, dtype=int), buckets=2, min_rows=5)
    assert conformal.level(10) == pytest.approx(0.9)  # ceil(11 x 0.8) / 10
    assert found["by_bucket"][0] == pytest.approx(0.91)  # numpy's linear quantile at 0.9 of 0.1 ... 1.0
    assert found["rows"] == [10, 0] and found["by_bucket"][1] == found["overall"]  # empty bucket: the overall
    # a band wider than needed narrows: scores are negative inside it
    inside = conformal.widening(np.full(10, -1.0), np.full(10, 2.0), y, np.zeros(10, dtype=int), 1, 5)
    assert inside["by_bucket"][0] < 0


def test_a_split_holds_each_series_last_days_out_or_is_none_when_too_short():
    issue = pd.date_range("2024-01-01", periods=40, freq="1D", tz="UTC")
    target = issue + pd.Timedelta(hours=12)
    fit, cal = conformal.split(issue, target, ["a"] * 40, days=14)
    # cut = last target - 14 days = 26 Jan 12:00: fitted on targets before it, scored on issues from it on; the
    # forecast issued on 26 Jan 00:00 for 12:00 straddles it and is in neither
    assert fit.sum() == 25 and cal.sum() == 14 and not (fit | cal)[25]
    assert conformal.split(issue[:20], target[:20], ["a"] * 20, days=14) is None  # 6 days before the last 14
