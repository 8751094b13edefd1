"""The sub-hourly forecaster's band calibration (registry/train_step.calibrate, split-conformal): on a series
whose noise the few-round boosters do not size, the calibrated p10-p90 band covers about 80 % of later steps
while the boosters' own band does not; a model logged before calibration existed still loads and predicts."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from registry.step_design import ISSUE, expand
from registry.step_forecaster import StepForecaster, bucket
from registry.train_step import StepConfig, fit

STEP = 30
START = pd.Timestamp("2024-01-01", tz="UTC")


def _series(days: int = 64, seed: int = 3) -> pd.Series:
    """A daily shape times a level, plus heavy-tailed noise (Student t, 3 degrees of freedom)."""
    ends = pd.date_range(START + pd.Timedelta(minutes=STEP), periods=days * 48, freq=f"{STEP}min")
    phase = 2 * np.pi * (ends.hour * 60 + ends.minute) / 1440
    rng = np.random.default_rng(seed)
    return pd.Series(100 * (1 + 0.3 * np.sin(phase)) + 8 * rng.standard_t(3, len(ends)), index=ends)


def _rows(s: pd.Series, issues: pd.DatetimeIndex, horizons) -> pd.DataFrame:
    day, week = s.rolling("1D"), s.rolling("7D")
    stats = pd.DataFrame({"last_value": s, "lag_1d": s.shift(48), "lag_7d": s.shift(336), "avg_1d": day.mean(),
                          "std_1d": day.std(), "min_1d": day.min(), "max_1d": day.max(), "avg_7d": week.mean(),
                          "std_7d": week.std()})
    issue_rows = stats.loc[issues, ISSUE].reset_index(names="issue_time")
    rows = expand(issue_rows, s, horizons, STEP, "UTC").assign(asset_id="a1")
    return rows[rows["y"].notna()].reset_index(drop=True)


def _coverage(model: StepForecaster, rows: pd.DataFrame) -> float:
    p = model.predict(None, rows)
    return float(((rows["y"] >= p["p10"]) & (rows["y"] <= p["p90"])).mean())


def test_the_calibrated_band_covers_about_80_percent_of_later_steps_and_the_raw_one_does_not():
    s = _series()
    train = _rows(s, pd.date_range(START + pd.Timedelta(days=8), START + pd.Timedelta(days=52), freq="6h"),
                  np.arange(1, 49))
    train = train[train["target_time"] <= START + pd.Timedelta(days=52)]
    later = _rows(s, pd.date_range(START + pd.Timedelta(days=52), START + pd.Timedelta(days=62), freq="1D"),
                  np.arange(1, 49))
    # overfitted on purpose (many leaves, 5 rows a leaf): the boosters' own band is too narrow out of sample
    cfg = StepConfig(num_boost_round=200, learning_rate=0.1, num_leaves=63, min_data_in_leaf=5, calibration_days=14)
    model = fit(train, STEP, cfg)
    assert model.calibration is not None and model.calibration["days"] == 14
    assert sum(model.calibration["rows"]) > 1000
    raw = StepForecaster(STEP, model.boosters)
    calibrated, uncalibrated = _coverage(model, later), _coverage(raw, later)
    assert 0.72 <= calibrated <= 0.88, (calibrated, uncalibrated, model.calibration)
    assert not 0.72 <= uncalibrated <= 0.88, (calibrated, uncalibrated, model.calibration)


def test_too_short_a_window_is_not_calibrated_and_calibration_days_0_turns_it_off():
    s = _series(days=30)
    train = _rows(s, pd.date_range(START + pd.Timedelta(days=8), START + pd.Timedelta(days=30), freq="6h"),
                  np.arange(1, 49))
    assert fit(train, STEP, StepConfig(num_boost_round=5, calibration_days=14)).calibration is None  # 22 days < 28
    assert fit(train, STEP, StepConfig(num_boost_round=5, calibration_days=0)).calibration is None


def test_buckets_follow_the_horizon_in_hours_at_either_step():
    assert list(bucket([1, 12, 13, 48, 49, 144, 145, 336], 30)) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert list(bucket([24, 25, 96, 97], 15)) == [0, 1, 1, 2]


def test_a_model_pickled_before_calibration_existed_loads_and_predicts_its_raw_band():
    s = _series(days=30)
    train = _rows(s, pd.date_range(START + pd.Timedelta(days=8), START + pd.Timedelta(days=28), freq="12h"),
                  np.arange(1, 9))
    model = fit(train, STEP, StepConfig(num_boost_round=5, calibration_days=0))
    state = pickle.loads(pickle.dumps(model.__getstate__()))
    del state["calibration"]  # what a version logged before calibration exists holds
    restored = StepForecaster.__new__(StepForecaster)
    restored.__setstate__(state)
    assert restored.calibration is None and restored.boosters == {}
    restored.boosters = model.boosters  # load_context's part
    pd.testing.assert_frame_equal(restored.predict(None, train), model.predict(None, train))
