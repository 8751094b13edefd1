"""Direct multi-horizon rows: issue-time features, target-hour calendar, labels and baselines."""

import warnings

import numpy as np
import pandas as pd
import pytest

from registry.design import HORIZON, baselines, expand, last_value, naive_forecasts, sample_pairs
from registry.forecaster import QuantileForecaster, asset_codes, level, no_crossing, prepare
from registry.training_data import SplitConfig
from tests.helpers.boosters import Constant

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


def test_baselines_fall_back_to_the_other_seasonal_forecast_then_the_last_value():
    series = pd.Series(np.arange(400.0), index=pd.date_range(T0 + pd.Timedelta("1h"), periods=400, freq="h"))
    issue = pd.Series([T0 + pd.Timedelta("200h")] * 3)
    horizon = pd.Series([1, 24, 25])
    gap = series.drop(series.index[(series.index > T0 + pd.Timedelta("170h")) & (series.index <= T0 + pd.Timedelta(
        "200h"))])  # the last 30 h before the issue time: naive-24 of h=1 and h=24 unknown
    gap = gap.drop(T0 + pd.Timedelta("33h"))  # naive-168 of h=1 unknown too
    out = baselines(gap, issue, horizon)
    assert out["naive_24"].tolist() == [169.0, 55.0, 56.0] and out["naive_24_source"].tolist() == [2, 1, 1]
    assert out["naive_168"].tolist() == [169.0, 55.0, 56.0] and out["naive_168_source"].tolist() == [2, 0, 0]
    assert (out["naive_24"] < 200).all()  # the last value ended by the issue time
    full = baselines(series, issue, horizon)
    assert full["naive_24"].tolist() == [176.0, 199.0, 176.0] and (full["naive_24_source"] == 0).all()
    assert np.isnan(last_value(series, pd.Series([T0]))).all()  # nothing ended by then


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


def test_shared_cutoff_ends_every_assets_training_where_the_first_test_window_starts():
    from registry.training_data import AssetWindow, InsufficientHistoryError, asset_windows

    def hours(start, days):
        return pd.Series(1.0, index=pd.date_range(start, periods=24 * days, freq="h", tz="UTC"))

    series = {"early": hours("2017-01-01 01:00", 365), "late": hours("2017-06-01 01:00", 400)}
    own = asset_windows(series, ["early", "late"], SplitConfig(history_days=1000, holdout_days=14, min_history_days=35))
    assert [w.fit_end for w in own] == [w.split for w in own]  # each asset up to its own split
    shared = asset_windows(series, ["early", "late"], SplitConfig(history_days=1000, holdout_days=14,
                                                                  min_history_days=35, shared_cutoff=True))
    early, late = shared
    assert early.split < late.split and early.fit_end == late.fit_end == early.split
    assert (late.split, late.end) == (own[1].split, own[1].end)  # the test windows stay each asset's own
    assert AssetWindow("a", T0, T0, T0).fit_end == T0
    # an asset with too little history before the shared cutoff is named
    series["new"] = hours("2017-12-20 01:00", 60)
    with pytest.raises(InsufficientHistoryError, match="'new' has 0 days of readings before 2017-12-18 00:00 UTC"):
        asset_windows(series, ["early", "late", "new"], SplitConfig(history_days=1000, holdout_days=14,
                                                                    min_history_days=35, shared_cutoff=True))


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
    # median (and mean, for models trained on it) of the same hour over the last seven observed days:
    # positions p, p-24, ..., p-144 have both at p-72
    np.testing.assert_array_equal(out["same_hour_median_7d"], 300 + h - back - 72)
    np.testing.assert_array_equal(out["same_hour_mean_7d"], 300 + h - back - 72)
    for name in ("same_hour_1d", "same_hour_2d", "same_hour_median_7d", "same_hour_mean_7d", "same_hour_7d"):
        assert (out[name] <= 300).all(), name
    # every value reads only the week before the issue time: a series cut to it gives the same columns
    week = aligned(series[(series.index <= t) & (series.index > t - pd.Timedelta(hours=168))],
                   pd.Series([t] * 168), horizons)
    for name, values in out.items():
        np.testing.assert_array_equal(week[name], values, err_msg=name)
    # a missing day drops out of the profile instead of making it unknown
    missing = t + pd.Timedelta(hours=1) - pd.Timedelta(hours=48)
    gappy = aligned(series[(series.index <= t) & (series.index != missing)],
                    pd.Series([t]), pd.Series([1]))
    assert np.isnan(gappy["same_hour_2d"][0])
    assert gappy["same_hour_median_7d"][0] == (205 + 181) / 2  # of 277, 229, 205, 181, 157, 133
    assert gappy["same_hour_mean_7d"][0] == np.mean([277, 229, 205, 181, 157, 133])
    # nothing known in the week: NaN, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = aligned(series[series.index <= t - pd.Timedelta(hours=200)], pd.Series([t]), pd.Series([1]))
    assert np.isnan(empty["same_hour_median_7d"][0]) and np.isnan(empty["same_hour_mean_7d"][0])


def test_daily_profile_is_the_median_so_a_few_atypical_days_do_not_move_it():
    from registry.design import aligned

    # a flat 100 load with an extra 60 from 10:00 to 16:00 on three of the last seven days (a load that
    # ran for three days and stopped): the median profile stays at 100, the mean carries 3/7 of the excess
    ends = pd.date_range("2024-03-01 01:00", periods=24 * 10, freq="h", tz="UTC")
    values = np.full(len(ends), 100.0)
    start = ends[0] - pd.Timedelta(hours=1)
    hour = (ends - pd.Timedelta(hours=1)).hour
    day = (ends - pd.Timedelta(hours=1) - start).days
    values[(day >= 5) & (day <= 7) & (hour >= 10) & (hour < 16)] += 60
    series = pd.Series(values, index=ends)
    t = ends[-1]  # midnight after day 9: days 3..9 are the last seven observed
    horizons = pd.Series(np.arange(1, 25))
    out = aligned(series, pd.Series([t] * 24), horizons)
    daytime = (horizons >= 11) & (horizons <= 16)  # target hours 10:00-15:00
    np.testing.assert_array_equal(out["same_hour_median_7d"], 100.0)
    np.testing.assert_allclose(out["same_hour_mean_7d"][daytime], 100 + 60 * 3 / 7)
    np.testing.assert_array_equal(out["same_hour_1d"], 100.0)  # the atypical days ended before yesterday


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
    X = np.array([[2.0, 1.0]])
    median = QuantileForecaster(["lag_1h", HORIZON], {"p10": Constant(0.5), "p50": Constant(1.0), "p90": Constant(2.0)})
    out = median.predict_matrix(X)
    assert out["point"] == pytest.approx([2.0]) and out["p50"] == pytest.approx([2.0])  # x level 2
    assert median.point_booster is median.boosters["p50"]
    older = QuantileForecaster(["lag_1h", HORIZON], {**median.boosters, "point": Constant(1.1)})
    assert older.predict_matrix(X)["point"] == pytest.approx([2.2]) and older.point_booster is older.boosters["point"]


def test_an_anchored_forecast_is_the_last_observed_same_hour_plus_the_predicted_change():
    from registry.forecaster import anchor_matrix

    features = ["lag_1h", "same_hour_1d", "same_hour_median_7d", HORIZON]
    # rows: yesterday's same hour known; only the profile known; neither (the level: mean of the others)
    X = np.array([[100.0, 80.0, 90.0, 1.0], [100.0, np.nan, 90.0, 2.0], [100.0, np.nan, np.nan, 3.0]])
    lvl = np.array([90.0, 95.0, 100.0])  # mean |load input| per row
    np.testing.assert_array_equal(anchor_matrix(X, features, lvl), [80.0, 90.0, 100.0])
    boosters = {"p10": Constant(-0.1), "p50": Constant(0.05), "p90": Constant(0.2)}
    anchored = QuantileForecaster(features, boosters, anchored=True)
    out = anchored.predict_matrix(X)
    np.testing.assert_allclose(out["point"], [80 + 0.05 * 90, 90 + 0.05 * 95, 100 + 0.05 * 100])
    np.testing.assert_allclose(out["p10"], [80 - 9.0, 90 - 9.5, 100 - 10.0])
    # the interval scores are the same in level units whatever the anchor: max(p10 - y, y - p90) / level
    np.testing.assert_allclose(anchored.nonconformity(X, np.array([80.0, 90.0, 100.0])), [-0.1, -0.1, -0.1])
    # a model pickled before the anchor existed keeps the plain label (load over level)
    old = QuantileForecaster.__new__(QuantileForecaster)
    old.__setstate__({"features": features, "boosters": boosters})
    assert old.anchored is False
    np.testing.assert_allclose(old.predict_matrix(X)["point"], 0.05 * lvl)
    restored = QuantileForecaster.__new__(QuantileForecaster)
    restored.__setstate__(anchored.__getstate__())
    assert restored.anchored is True


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
