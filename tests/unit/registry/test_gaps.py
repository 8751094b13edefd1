"""Forecast inputs over missing hours (registry/gaps.py): the service's load state as Feast returns it,
GAP inputs, thin windows masked, the profile level, and seeded gap injection."""

import numpy as np
import pandas as pd
import pytest

from inference.history import load_features
from registry.design import ALIGNED, HORIZON
from registry.forecaster import level_matrix, prepare_matrix
from registry.gaps import (
    GAP,
    LEVEL,
    gap_state,
    hide,
    inject,
    inject_shifts,
    load_state,
    mask,
    profile_level,
    random_blocks,
    random_shifts,
    recompute,
    rescale_after,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = pd.Timedelta(hours=1)


def _series(hours=600, start=T0):
    """Hourly means by hour end: value = 100 + hour of day of the hour's start + day index / 10."""
    ends = pd.date_range(start + H, periods=hours, freq="h")
    starts = ends - H
    return pd.Series(100.0 + starts.hour + (starts - start).days / 10, index=ends)


def test_load_state_equals_the_sql_rows_and_takes_the_last_row_within_the_ttl():
    s = _series()
    times = s.index[200:260]
    buckets = pd.Series(s.to_numpy(), index=s.index - H)
    expected = load_features(buckets, times)
    got = load_state(s, times)
    for c in ("lag_1h", "lag_24h", "lag_168h", "historical_avg_24h", "historical_std_168h", "min_24h", "hours_168h"):
        np.testing.assert_allclose(got[c].to_numpy(), expected[c].to_numpy())
    gapped = hide(s, [(s.index[300], s.index[310])])  # hours ending 301..310 (by position) missing
    at = load_state(gapped, [s.index[300] + k * H for k in (0, 3, 4)])
    assert at["lag_1h"].iloc[0] == s.iloc[300]
    assert at["lag_1h"].iloc[1] == s.iloc[300]  # 3 h after the last row: still within the TTL
    assert at.iloc[2].isna().all()  # 4 h: no row (Feast returns NULL)


def test_gap_inputs_count_observed_hours_and_hours_since_the_last_reading():
    s = _series()
    t = s.index[400]
    gapped = hide(s, [(t - 30 * H, t - 6 * H)])  # 24 hours missing, ending 6 h before t
    g = gap_state(gapped, [t, t - 6 * H, t - 7 * H])
    assert g["observed_24h"].tolist() == [6.0, 0.0, 1.0]
    assert g["observed_168h"].tolist() == [144.0, 144.0, 145.0]
    assert g["hours_since_reading"].tolist() == [0.0, 24.0, 23.0]
    full = gap_state(s, [t, t])  # duplicates are computed once, returned per row
    assert full["observed_24h"].tolist() == [24.0, 24.0] and full["hours_since_reading"].tolist() == [0.0, 0.0]


def test_profile_level_takes_the_last_observed_day_of_each_missing_hour():
    s = _series()
    t = s.index[400]
    level = profile_level(s, [t])[0]
    assert level == pytest.approx(s[(s.index > t - 24 * H) & (s.index <= t)].mean())  # no gap: the last 24 h
    gapped = hide(s, [(t - 18 * H, t)])  # the last 18 hours missing: they come from the day before
    expected = np.mean(np.r_[s[(s.index > t - 24 * H) & (s.index <= t - 18 * H)],
                             s[(s.index > t - 42 * H) & (s.index <= t - 24 * H)]])
    assert profile_level(gapped, [t])[0] == pytest.approx(expected)
    assert abs(profile_level(gapped, [t])[0] / level - 1) < 0.002  # a gap does not move the level
    assert np.isnan(profile_level(s, [s.index[0] - 2 * H])[0])  # nothing observed before


def test_thin_windows_are_missing_not_a_level():
    cols = {"observed_24h": np.array([24.0, 17.0, np.nan]), "observed_168h": np.array([168.0, 168.0, 100.0]),
            "historical_avg_24h": np.array([5.0, 1.0, 2.0]), "max_168h": np.array([9.0, 9.0, 9.0]),
            "lag_1h": np.array([4.0, 4.0, 4.0])}
    mask(cols)
    assert np.isnan(cols["historical_avg_24h"][1:]).all() and cols["historical_avg_24h"][0] == 5.0
    assert cols["max_168h"][:2].tolist() == [9.0, 9.0] and np.isnan(cols["max_168h"][2])
    assert cols["lag_1h"].tolist() == [4.0, 4.0, 4.0]


def test_a_model_with_gap_inputs_scales_by_the_profile_level_and_masks_thin_windows():
    features = ["lag_1h", "historical_avg_24h", "observed_24h", "observed_168h", "hours_since_reading", LEVEL,
                HORIZON]
    X = np.array([[50.0, 20.0, 6.0, 150.0, 0.0, 100.0, 1.0],   # 6 night hours in the last day
                  [50.0, 20.0, 24.0, 168.0, 0.0, np.nan, 1.0]])  # no profile level: the load inputs' mean
    assert level_matrix(X, features).tolist() == [100.0, 35.0]
    out, lvl = prepare_matrix(X, features)
    assert np.isnan(out[0, 1]) and out[1, 1] == pytest.approx(20 / 35)
    assert out[0, 0] == pytest.approx(0.5) and out[0, -1] == pytest.approx(np.log(100))
    old = [f for f in features if f not in GAP]  # a model without gap inputs keeps its inputs and level
    assert level_matrix(X[:, [0, 1, 6]], old).tolist() == [35.0, 35.0]


def test_serving_reads_of_the_last_week_give_the_training_inputs():
    """Serving computes GAP and target-aligned inputs from the 168 hours before t only; training from
    the whole history. Same values, with and without gaps."""
    from inference.features import aligned_from

    s = hide(_series(), [(T0 + 380 * H, T0 + 410 * H), (T0 + 440 * H, T0 + 446 * H)])
    for t in (T0 + 420 * H, T0 + 450 * H, T0 + 500 * H):
        week = s[(s.index > t - 168 * H) & (s.index <= t)]
        served = aligned_from(week, t)
        trained = gap_state(s, [t])
        for name in GAP:
            np.testing.assert_array_equal(served[name], np.repeat(trained[name], 168))


def test_gap_injection_is_seeded_and_recomputes_only_inputs_read_from_the_load():
    s = _series(900)
    issue = pd.Series(pd.date_range(T0 + 200 * H, T0 + 860 * H, freq="6h"))
    rows = pd.DataFrame({"asset_id": "a", "issue_time": issue.repeat(2).to_numpy(),
                         HORIZON: np.tile([1, 30], len(issue))})
    rows = recompute(rows.assign(hour_of_day=7.0, y=1.0), s, ["lag_1h", "historical_avg_24h", *ALIGNED, *GAP])
    columns = ["lag_1h", "historical_avg_24h", *ALIGNED, *GAP]
    a = inject(rows, {"a": s}, columns, np.random.default_rng(3), 0.25)
    b = inject(rows, {"a": s}, columns, np.random.default_rng(3), 0.25)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * round(len(issue) * 0.25)
    assert (a["y"] == 1.0).all() and (a["hour_of_day"] == 7.0).all()  # labels and calendar kept
    assert (a["observed_168h"] < 168).all()  # every copy lost at least one hour of its week
    assert a["observed_168h"].min() >= 168 - 72
    blocks = random_blocks(issue, np.random.default_rng(0), 0.5)
    lengths = [(b1 - b0) / H for _, b0, b1 in blocks]
    ends = [(t - b1) / H for t, _, b1 in blocks]
    assert min(lengths) >= 1 and max(lengths) <= 72 and min(ends) >= 0 and max(ends) <= 48


def test_shift_injection_moves_the_load_from_the_step_on_and_its_labels():
    s = _series(900)
    issue = pd.Series(pd.date_range(T0 + 200 * H, T0 + 860 * H, freq="6h"))
    rows = pd.DataFrame({"asset_id": "a", "issue_time": issue.repeat(2).to_numpy(),
                         HORIZON: np.tile([1, 30], len(issue))})
    columns = ["lag_1h", "lag_168h", *ALIGNED]
    rows = recompute(rows.assign(y=1.0), s, columns)
    a = inject_shifts(rows, {"a": s}, columns, np.random.default_rng(5), 0.3)
    pd.testing.assert_frame_equal(a, inject_shifts(rows, {"a": s}, columns, np.random.default_rng(5), 0.3))
    assert len(a) == 2 * round(len(issue) * 0.3)
    steps = {t: (step, f) for t, step, f in random_shifts(issue.drop_duplicates(), np.random.default_rng(5), 0.3)}
    for t, part in a.groupby("issue_time"):
        step, f = steps[t]
        assert 24 <= (t - step) / H <= 168 and (1 / 2.5 <= f <= 1 / 1.25 or 1.25 <= f <= 2.5)
        clean = rows[rows["issue_time"] == t]
        # the last hour is after the step: moved with the labels; a week back is before it (unless the step
        # is a week back): as it was
        np.testing.assert_allclose(part["lag_1h"], clean["lag_1h"] * f)
        np.testing.assert_allclose(part["y"], clean["y"] * f)
        np.testing.assert_allclose(part["lag_168h"], clean["lag_168h"] * (1.0 if t - 167 * H <= step else f))
    # hours up to the step and after the issue time are left as they were
    t, step = T0 + 500 * H, T0 + 480 * H
    moved = rescale_after(s, [(t, step, 2.0)])
    assert (moved[(moved.index <= step) | (moved.index > t)] == s[(s.index <= step) | (s.index > t)]).all()
    np.testing.assert_allclose(moved[(moved.index > step) & (moved.index <= t)],
                               s[(s.index > step) & (s.index <= t)] * 2)


def test_training_rows_without_any_load_input_are_left_out_of_fitting():
    from registry.forecaster import has_level

    frame = pd.DataFrame({"lag_1h": [1.0, np.nan, np.nan], "historical_std_24h": [np.nan, 2.0, np.nan],
                          "same_hour_1d": [np.nan, np.nan, 3.0], HORIZON: [1.0, 1.0, 1.0]})
    # a std is a spread, not a level: the second row has nothing to scale by
    assert has_level(frame, list(frame.columns)).tolist() == [True, False, True]
