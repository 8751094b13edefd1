"""Model search (registry/tune.py): validation windows carved before the held-out days, their rows, the
leaderboard's order and its baselines, and the search's input checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidRangeError
from registry.design import HORIZON
from registry.training_data import AssetWindow
from registry.tune import OBJECTIVE, Entry, SearchConfig, carve, fold_masks, leaderboard

T = pd.Timestamp


def _windows() -> list[AssetWindow]:
    return [AssetWindow("a", T("2024-01-01", tz="UTC"), T("2024-03-01", tz="UTC"), T("2024-03-15", tz="UTC")),
            # b: training labels end before its split (shared cutoff)
            AssetWindow("b", T("2024-01-10", tz="UTC"), T("2024-03-05", tz="UTC"), T("2024-03-19", tz="UTC"),
                        train_end=T("2024-02-20", tz="UTC"))]


def test_windows_are_consecutive_and_end_where_training_labels_end():
    folds = carve(_windows(), SearchConfig(windows=3, window_days=7))
    for w in _windows():
        mine = sorted((f for f in folds if f.asset_id == w.asset_id), key=lambda f: f.index)
        assert [f.index for f in mine] == [0, 1, 2]
        assert mine[-1].end == w.fit_end <= w.split  # never inside the held-out days
        assert mine[0].start == w.fit_end - pd.Timedelta(days=21)
        for prev, nxt in zip(mine, mine[1:], strict=False):
            assert prev.end == nxt.start  # no overlap, no hole
        assert all(f.end - f.start == pd.Timedelta(days=7) for f in mine)


def test_too_little_history_before_the_first_window_names_the_asset_and_the_need():
    with pytest.raises(InvalidRangeError, match=r"asset 'b' has 13.0 days .* need at least 14"):
        carve(_windows(), SearchConfig(windows=4, window_days=7, min_fit_days=14))


def _rows() -> pd.DataFrame:
    """Issue times every 12 h over the last 30 days of asset a's training part, horizons 1..48, plus a
    gap-injected copy of one issue time's rows (appended last, as training_data.build does)."""
    issues = pd.date_range("2024-01-31", "2024-03-01", freq="12h", tz="UTC", inclusive="left")
    rows = pd.DataFrame([(i, h) for i in issues for h in range(1, 49)], columns=["issue_time", HORIZON])
    rows["asset_id"] = "a"
    rows["target_time"] = rows["issue_time"] + pd.to_timedelta(rows[HORIZON], unit="h")
    rows = rows[rows["target_time"] <= T("2024-03-01", tz="UTC")]
    copy = rows[rows["issue_time"] == T("2024-02-25", tz="UTC")]
    return pd.concat([rows, copy], ignore_index=True)


def test_fold_rows_train_before_the_window_and_validate_clean_day_ahead_rows_inside_it():
    rows = _rows()
    folds = carve(_windows()[:1], SearchConfig(windows=2, window_days=7))
    seen = []
    for k in range(2):
        fit_rows, val = fold_masks(rows, folds, k)
        f = next(f for f in folds if f.index == k)
        assert (rows.loc[fit_rows, "target_time"] <= f.start).all()  # no label of the window in its training rows
        v = rows[val]
        assert ((v["issue_time"] >= f.start) & (v["issue_time"] < f.end)).all() and (v[HORIZON] <= 24).all()
        assert not v.duplicated(["issue_time", HORIZON]).any()  # the gap-injected copy is not validated on
        # 14 issue times x 24 day-ahead horizons; in the last window the labels end with the training part
        assert len(v) == (14 * 24 if k == 0 else 13 * 24 + 12)
        assert not set(v.index) & set(rows.index[fit_rows])
        seen.append(set(v.index))
    assert not seen[0] & seen[1]


def _entry(name, kind, value, state="complete"):
    return Entry(name, kind, "forecast_load" if kind != "seasonal_naive" else None, {},
                 {OBJECTIVE: value, "val_mae": value * 100}, state)


def test_leaderboard_ranks_complete_entries_and_scores_them_against_the_best_naive():
    board = leaderboard([_entry("naive-24", "seasonal_naive", 1.0), _entry("naive-168", "seasonal_naive", 0.8),
                         _entry("ridge (forecast_load)", "ridge", 0.7), _entry("trial 0", "lightgbm", 0.6),
                         _entry("trial 1", "lightgbm", 0.5), _entry("trial 2", "lightgbm", 0.9, "pruned")])
    assert [r["name"] for r in board] == ["trial 1", "trial 0", "ridge (forecast_load)", "naive-168", "naive-24",
                                          "trial 2"]
    assert [r["rank"] for r in board] == [1, 2, 3, 4, 5, None]
    assert board[0]["skill_vs_best_naive"] == pytest.approx(1 - 0.5 / 0.8)
    assert board[3]["skill_vs_best_naive"] == pytest.approx(0.0)
    assert board[-1]["skill_vs_best_naive"] is None and board[-1]["state"] == "pruned"


def test_leaderboard_puts_an_unscored_entry_last():
    board = leaderboard([_entry("trial 0", "lightgbm", math.nan), _entry("naive-168", "seasonal_naive", 0.8)])
    assert [r["name"] for r in board] == ["naive-168", "trial 0"] and board[1]["rank"] is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"trials": 0}, r"trials=0 is out of range 1\.\.10000"),
    ({"time_budget_s": 0}, r"time_budget=0 s is out of range \(0, 604800\]"),
    ({"time_budget_s": -5.0}, r"time_budget=-5.0 s"),
    ({"windows": 13}, r"windows=13 is out of range 1\.\.12"),
    ({"window_days": 0}, r"window_days=0 is out of range 1\.\.56"),
])
def test_bad_search_settings_name_the_value_and_the_range(kwargs, message):
    with pytest.raises(InvalidRangeError, match=message):
        SearchConfig(**kwargs).check()


def test_search_space_includes_todays_default_as_trial_zero():
    from registry.train_forecast import BoosterConfig
    from registry.tune import DEFAULT_TRIAL

    default = BoosterConfig()
    assert {k: getattr(default, k) for k in DEFAULT_TRIAL if k != "lambda_l2"} == {
        k: v for k, v in DEFAULT_TRIAL.items() if k != "lambda_l2"}
    assert np.isclose(DEFAULT_TRIAL["lambda_l2"], 1e-3)  # the space's lower end (log scale): ~ no L2 penalty
