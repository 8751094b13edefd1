"""Direct multi-horizon rows: issue-time features, target-hour calendar, labels and baselines."""

import numpy as np
import pandas as pd
import pytest

from registry.design import HORIZON, expand, naive_forecasts, sample_pairs
from registry.forecaster import QuantileForecaster, asset_codes, level, no_crossing, prepare
from registry.training_data import SplitConfig

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _hourly():
    grid = pd.date_range(T0, periods=400, freq="h")
    return pd.DataFrame({"asset_id": "a", "event_timestamp": grid, "lag_1h": np.arange(400.0),
                         "hour_of_day": grid.hour})


def test_expand_takes_features_at_issue_time_and_calendar_of_target_hour():
    pairs = pd.DataFrame({"asset_id": ["a", "a"], "issue_time": [T0 + pd.Timedelta("10h")] * 2, HORIZON: [1, 30]})
    rows = expand(_hourly(), ["lag_1h"], ["hour_of_day"], pairs)
    assert rows["lag_1h"].tolist() == [10.0, 10.0]  # known at the issue time, whatever the horizon
    # target hour of h=1 is [10:00, 11:00) -> hour 10; h=30 -> [Jan 2 15:00, 16:00) -> hour 15
    assert rows["hour_of_day"].tolist() == [10, 15]
    assert rows["target_time"].tolist() == [T0 + pd.Timedelta("11h"), T0 + pd.Timedelta("40h")]


def test_seasonal_naive_uses_only_hours_before_the_issue_time():
    series = pd.Series(np.arange(400.0), index=pd.date_range(T0 + pd.Timedelta("1h"), periods=400, freq="h"))
    issue = pd.Series([T0 + pd.Timedelta("200h")] * 3)
    day, week = naive_forecasts(series, issue, pd.Series([1, 24, 25]))
    # hour ending t+h-24*ceil(h/24), t+h-168 (series value = hour end - 1 h since T0)
    assert day.tolist() == [176.0, 199.0, 176.0]  # h=25 reaches back 48 h: h-24 would be in the future
    assert week.tolist() == [32.0, 55.0, 56.0]
    assert max(day.max(), week.max()) < 200  # every baseline value is an hour that ended by the issue time


def test_sample_pairs_all_or_seeded_subset():
    issues = pd.DataFrame({"asset_id": ["a", "b"], "issue_time": [T0, T0]})
    full = sample_pairs(issues, 168, np.random.default_rng(0))
    assert len(full) == 336 and sorted(full[HORIZON].unique()) == list(range(1, 169))
    part = sample_pairs(issues, 5, np.random.default_rng(0))
    assert len(part) == 10 and part.groupby("asset_id")[HORIZON].nunique().tolist() == [5, 5]
    again = sample_pairs(issues, 5, np.random.default_rng(0))
    assert part.equals(again)
    dense = sample_pairs(issues, 5, np.random.default_rng(0), dense=24)  # day-ahead horizons at every issue
    assert len(dense) == 2 * 29
    for _, rows in dense.groupby("asset_id"):
        h = sorted(rows[HORIZON])
        assert h[:24] == list(range(1, 25)) and len(set(h[24:])) == 5 and min(h[24:]) > 24
    assert len(sample_pairs(issues, 200, np.random.default_rng(0), dense=24)) == 336  # all of them


def test_prepare_scales_load_inputs_by_level_and_keeps_calendar():
    frame = pd.DataFrame({"lag_1h": [100.0, np.nan], "historical_avg_24h": [300.0, np.nan],
                          "historical_std_24h": [20.0, 1.0], "hour_of_day": [5, 6], HORIZON: [1, 2]})
    features = list(frame.columns)
    lvl = level(frame, features)
    assert lvl.tolist() == [200.0, 1.0]  # no load input known -> unscaled
    X, _ = prepare(frame, features)
    assert X.loc[0, "lag_1h"] == 0.5 and X.loc[0, "historical_std_24h"] == 0.1 and X.loc[0, "hour_of_day"] == 5
    assert X.loc[0, "log_level"] == pytest.approx(np.log(200.0))


def test_quantiles_never_cross():
    out = no_crossing(np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]]))
    assert (np.diff(out, axis=1) >= 0).all()


def test_split_config_names_bad_values():
    with pytest.raises(ValueError, match=r"holdout_days=0 is out of range 1..365"):
        SplitConfig(holdout_days=0).check()
    with pytest.raises(ValueError, match="min_history_days=14 must exceed holdout_days=14"):
        SplitConfig(min_history_days=14).check()


def test_target_aligned_lags_follow_the_target_hour_and_never_read_past_the_issue_time():
    from registry.design import aligned

    ends = pd.date_range("2024-01-01 01:00", periods=400, freq="h", tz="UTC")  # hour ends
    series = pd.Series(np.arange(400, dtype=float), index=ends)  # value = position of the hour
    t = ends[300]  # issue time: the end of hour 300
    horizons = pd.Series(np.arange(1, 169))
    out = aligned(series[series.index <= t], pd.Series([t] * 168), horizons)
    h = horizons.to_numpy()
    back = np.ceil(h / 24).astype(int) * 24
    np.testing.assert_array_equal(out["same_hour_1d"], 300 + h - back)  # same hour, last observed day
    np.testing.assert_array_equal(out["same_hour_7d"], 300 + h - 168)  # same hour, a week before the target
    np.testing.assert_array_equal(out["same_hour_2d"], 300 + h - back - 24)  # the observed day before that
    # mean of the same hour over the last seven observed days: positions p, p-24, ..., p-144 average to p-72
    np.testing.assert_array_equal(out["same_hour_mean_7d"], 300 + h - back - 72)
    for name in ("same_hour_1d", "same_hour_2d", "same_hour_mean_7d", "same_hour_7d"):
        assert (out[name] <= 300).all(), name
    # every value reads only the week before the issue time: a series cut to it gives the same columns
    week = aligned(series[(series.index <= t) & (series.index > t - pd.Timedelta(hours=168))],
                   pd.Series([t] * 168), horizons)
    for name, values in out.items():
        np.testing.assert_array_equal(week[name], values, err_msg=name)
    # a missing day drops out of the mean instead of making it unknown
    missing = t + pd.Timedelta(hours=1) - pd.Timedelta(hours=48)
    gappy = aligned(series[(series.index <= t) & (series.index != missing)],
                    pd.Series([t]), pd.Series([1]))
    assert np.isnan(gappy["same_hour_2d"][0])
    assert gappy["same_hour_mean_7d"][0] == np.mean([277, 229, 205, 181, 157, 133])


def test_conformal_widths_per_horizon_bucket_and_asset():
    from registry.forecaster import HORIZON_BUCKETS, QuantileForecaster, widening

    e = np.linspace(-1, 1, 101)
    assert widening(e, 0.8) == pytest.approx(np.quantile(e, 0.8 * (1 + 1 / 101)))
    assert widening(np.array([np.nan])) == 0.0
    model = QuantileForecaster(["horizon_h"], {}, {"global": [0.1, 0.2, 0.3, 0.4],
                                                   "assets": {"a": [1.0, 2.0, 3.0, 4.0]}})
    horizons = np.array([1, 6, 7, 24, 25, 72, 73, 168], dtype=float)
    np.testing.assert_allclose(model.widths(horizons), [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4])
    np.testing.assert_allclose(model.widths(horizons, "a"), [1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_allclose(model.widths(horizons[:2], np.array(["a", "unknown"])), [1.0, 0.1])
    assert len(HORIZON_BUCKETS) == 4
    restored = QuantileForecaster.__new__(QuantileForecaster)
    restored.__setstate__({"features": ["horizon_h"], "boosters": {}})  # pickled before calibration existed
    assert restored.calibration == {} and restored.widths(horizons[:1]) == pytest.approx([0.0])


def test_asset_code_is_the_training_index_and_missing_for_other_assets():
    assert asset_codes([], "a", 2) is None  # a model without the input
    np.testing.assert_array_equal(asset_codes(["a", "b"], "b", 2), [1.0, 1.0])
    np.testing.assert_array_equal(asset_codes(["a", "b"], np.array(["b", "a", "zzz"]), 3), [1.0, 0.0, np.nan])
    assert np.isnan(asset_codes(["a", "b"], None, 1)).all()  # a caller's series: shared branches
    frame = pd.DataFrame({"asset_id": ["b", "a"], "lag_1h": [100.0, 10.0], HORIZON: [1, 2]})
    X, _ = prepare(frame, ["lag_1h", HORIZON], ["a", "b"])
    assert list(X.columns) == ["lag_1h", HORIZON, "log_level", "asset_code"] and X["asset_code"].tolist() == [1, 0]
    model = QuantileForecaster(["lag_1h", HORIZON], {}, assets=["a", "b"])
    Xm, lvl = model.matrix(frame[["lag_1h", HORIZON]].to_numpy(dtype=float), frame["asset_id"].to_numpy())
    np.testing.assert_array_equal(Xm, X.to_numpy())
    np.testing.assert_array_equal(lvl, [100.0, 10.0])
    assert model.inputs == [*X.columns]
    restored = QuantileForecaster.__new__(QuantileForecaster)
    restored.__setstate__(model.__getstate__())
    assert restored.assets == ["a", "b"]
    old = QuantileForecaster.__new__(QuantileForecaster)
    old.__setstate__({"features": ["lag_1h"], "boosters": {}})  # pickled before the asset input existed
    assert old.assets == [] and old.inputs == ["lag_1h", "log_level"]


def test_the_point_forecast_is_the_median_and_older_point_boosters_still_serve():
    class Constant:
        def __init__(self, v):
            self.v = v

        def predict(self, X, num_threads=1):
            return np.full(len(X), self.v)

    X = np.array([[2.0, 1.0]])
    median = QuantileForecaster(["lag_1h", HORIZON], {"p10": Constant(0.5), "p50": Constant(1.0), "p90": Constant(2.0)})
    out = median.predict_matrix(X)
    assert out["point"] == pytest.approx([2.0]) and out["p50"] == pytest.approx([2.0])  # x level 2
    assert median.point_booster is median.boosters["p50"]
    older = QuantileForecaster(["lag_1h", HORIZON], {**median.boosters, "point": Constant(1.1)})
    assert older.predict_matrix(X)["point"] == pytest.approx([2.2]) and older.point_booster is older.boosters["point"]


def test_peer_inputs_are_the_peers_mean_deviation_from_their_last_week_before_the_issue_time():
    from registry.design import PEER, peer_inputs

    ends = pd.date_range("2024-01-01 01:00", periods=400, freq="h", tz="UTC")
    t = ends[300]
    flat = pd.Series(100.0, index=ends)
    hot = flat.copy()
    hot[t] = 200.0  # the last hour before the issue time doubles
    hot[ends[301:]] = 1e6  # hours after the issue time must not matter
    issue, horizon = pd.Series([t, t]), pd.Series([1, 24])
    week = (167 * 100 + 200) / 168
    out = peer_inputs([hot], issue, horizon)
    np.testing.assert_allclose(out["peer_lag_1h_ratio"], [200 / week] * 2)
    np.testing.assert_allclose(out["peer_avg_24h_ratio"], [(23 * 100 + 200) / 24 / week] * 2)
    np.testing.assert_allclose(out["peer_max_24h_ratio"], [200 / week] * 2)
    # target-hour ratio: same hour yesterday over that hour's 7-day mean; the target hour t+24h's last
    # observed same hour is t itself (200 against six days of 100)
    np.testing.assert_allclose(out["peer_same_hour_1d_ratio"], [1.0, 200 / ((200 + 6 * 100) / 7)])
    # the mean over peers; a peer without data drops out; no peer at all: unknown
    both = peer_inputs([hot, flat, pd.Series(dtype=float)], issue, horizon)
    np.testing.assert_allclose(both["peer_lag_1h_ratio"], [(200 / week + 1) / 2] * 2)
    none = peer_inputs([], issue, horizon)
    assert set(none) == set(PEER) and all(np.isnan(v).all() for v in none.values())
    # the week before t is all that is read: a series cut to it gives the same values
    cut = peer_inputs([hot[(hot.index <= t) & (hot.index > t - pd.Timedelta(hours=168))]], issue, horizon)
    for name in PEER:
        np.testing.assert_allclose(cut[name], out[name], err_msg=name)
