"""Anomaly detectors on a seeded synthetic daily load with injected spikes (no services)."""

import numpy as np
import pandas as pd
import pytest

from registry import anomaly_model, severity

FEATURES = ["hour_of_day", "day_of_week", "historical_avg_24h", "historical_std_24h", "max_24h", "min_24h",
            "range_24h"]


def _frame(spikes=()):
    rng = np.random.default_rng(0)
    hours = pd.date_range("2024-01-01", periods=24 * 60, freq="h", tz="UTC")
    load = 100 + 20 * np.sin(2 * np.pi * hours.hour.to_numpy() / 24) + rng.normal(0, 2, len(hours))
    for i in spikes:
        load[i] *= 1.8
    s = pd.Series(load, index=hours)
    roll = s.rolling(24, min_periods=24)
    frame = pd.DataFrame({"asset_id": "m1", "hour_of_day": hours.hour, "day_of_week": hours.dayofweek,
                          "historical_avg_24h": roll.mean().shift(1), "historical_std_24h": roll.std().shift(1),
                          "max_24h": roll.max().shift(1), "min_24h": roll.min().shift(1), "value": load})
    frame["range_24h"] = frame["max_24h"] - frame["min_24h"]
    return frame.dropna().reset_index(drop=True)


@pytest.mark.parametrize("method", ["z_score", "iqr", "isolation_forest", "local_outlier_factor"])
def test_injected_spikes_score_far_above_normal_hours(method):
    model = anomaly_model.fit(method, _frame(), FEATURES)
    test = _frame(spikes=(1000, 1200))
    out = model.predict(None, test, params={"sensitivity": 3})
    spikes = out.loc[test.index.isin([1000 - 24, 1200 - 24])]  # dropna shifted the index by 24
    assert (spikes["score"] > severity.threshold(3)).all() and spikes["is_anomaly"].all()
    assert out["is_anomaly"].mean() < 0.05
    assert set(out["severity"]) <= {"", "low", "medium", "high", "critical"}


def test_z_score_keeps_fitted_statistics_per_asset_and_hour():
    model = anomaly_model.fit("z_score", _frame(), FEATURES)
    assert set(model.statistics) == {"global", "asset", "asset_hour"}
    assert len(model.statistics["asset_hour"]) == 24 and model.statistics["asset"]["m1"]["n"] > 1000


def test_sensitivity_is_checked():
    model = anomaly_model.fit("iqr", _frame(), FEATURES)
    with pytest.raises(severity.InvalidSensitivityError, match="out of range 1..5"):
        model.predict(None, _frame().head(3), params={"sensitivity": 9})
