"""Live accuracy scores (inference/accuracy.py) on a small frame built in code, exact values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.accuracy import ALL, bucket_of, by_day, score


def _joined() -> pd.DataFrame:
    t = pd.Timestamp("2017-02-20T00:00:00Z")
    return pd.DataFrame({
        "tenant_id": "t", "asset_id": ["a", "a", "a", "b"], "model_id": "t:f:1",
        "issue_time": t, "target_time": [t, t + pd.Timedelta(hours=1), t + pd.Timedelta(hours=30), t],
        "horizon_h": [1, 2, 31, 1], "point": [10.0, 12.0, 20.0, 5.0], "p10": [8.0, 11.0, 15.0, 6.0],
        "p50": [10.0, 12.0, 20.0, 5.0], "p90": [12.0, 13.0, 25.0, 7.0], "actual": [11.0, 10.0, 20.0, 4.0],
        "naive_168": [9.0, np.nan, 25.0, 4.0]})


def test_buckets_follow_the_forecasters_horizon_buckets():
    assert list(bucket_of(pd.Series([1, 6, 7, 24, 25, 72, 73, 168]))) == [
        "1-6h", "1-6h", "7-24h", "7-24h", "25-72h", "25-72h", "73-168h", "73-168h"]


def test_scores_per_asset_bucket_and_pooled():
    table = score(_joined()).set_index(["asset_id", "bucket"])
    a = table.loc[("a", "1-6h")]
    assert a["rows"] == 2 and a["mae"] == pytest.approx(1.5)  # |11-10|, |10-12|
    assert a["mape"] == pytest.approx((1 / 11 + 2 / 10) / 2 * 100)
    assert a["coverage"] == pytest.approx(0.5)  # 11 in [8, 12]; 10 not in [11, 13]
    # pinball: mean over p10/p50/p90 of the mean loss; row 1 (y 11): .1*3, .5*1, .1*1; row 2 (y 10): .9*1, .5*2, .1*3
    assert a["pinball"] == pytest.approx(np.mean([(0.3 + 0.9) / 2, (0.5 + 1.0) / 2, (0.1 + 0.3) / 2]))
    assert a["naive_168_rows"] == 1 and a["naive_168_mae"] == pytest.approx(2.0)
    assert a["model_mae_naive_rows"] == pytest.approx(1.0) and a["skill_naive_168"] == pytest.approx(0.5)
    pooled = table.loc[(ALL, "all")]
    assert pooled["rows"] == 4 and pooled["mae"] == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert pooled["coverage"] == pytest.approx(2 / 4)
    assert ("b", "25-72h") not in table.index


def test_by_day_gives_mae_and_coverage_per_target_day():
    days = by_day(_joined())
    assert list(days["rows"]) == [3, 1] and days["mae"].iloc[0] == pytest.approx(4 / 3)
    assert days["coverage"].iloc[1] == pytest.approx(1.0)
