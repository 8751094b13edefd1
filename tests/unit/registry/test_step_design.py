"""The sub-hourly design (registry/step_design.py): target-aligned lags read only steps ending by the issue time,
calendar of the target step in the asset's zone, level fallbacks; and the interval rules (core.names)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.names import InvalidIntervalError, check_interval, check_interval_for_step
from registry.step_design import aligned, calendar, expand, level, steps_for

T = pd.Timestamp("2024-03-11 00:00", tz="UTC")  # a Monday


def _series(days: int = 16, step: int = 30) -> pd.Series:
    ends = pd.date_range(T - pd.Timedelta(days=days) + pd.Timedelta(minutes=step), T, freq=f"{step}min")
    return pd.Series(np.arange(len(ends), dtype=float), index=ends)


def test_steps_cover_the_horizon_hours():
    assert (steps_for(1, 30), steps_for(24, 15), steps_for(168, 30)) == (2, 96, 336)


def test_aligned_lags_take_the_same_step_of_the_last_observed_days():
    s = _series()
    issue = pd.Series([T, T])
    out = aligned(s, issue, pd.Series([1, 49]), 30)  # targets ending 00:30 (day 1) and 00:30 of day 2
    # horizon 1: the step ending 00:30 one day before; horizon 49 (24.5 h): two days before
    assert out["same_step_1d"][0] == s[T + pd.Timedelta(minutes=30) - pd.Timedelta(days=1)]
    assert out["same_step_1d"][1] == s[T + pd.Timedelta(hours=24.5) - pd.Timedelta(days=2)]
    assert out["same_step_2d"][0] == s[T + pd.Timedelta(minutes=30) - pd.Timedelta(days=2)]
    assert out["same_step_7d"][1] == s[T + pd.Timedelta(hours=24.5) - pd.Timedelta(days=7)]
    days = [s[T + pd.Timedelta(minutes=30) - pd.Timedelta(days=k)] for k in range(1, 8)]
    assert out["same_step_median_7d"][0] == np.median(days)
    ahead = aligned(s, pd.Series([T]), pd.Series([steps_for(168, 30)]), 30)  # 7 days ahead: nothing after T read
    assert ahead["same_step_7d"][0] == s[T]


def test_the_target_calendar_is_local_and_the_label_is_the_target_step():
    issue = pd.DataFrame({"issue_time": [T - pd.Timedelta(days=1)], "avg_7d": [1.0]})
    rows = expand(issue, _series(), np.array([1, 2]), 30, "Europe/Berlin")
    assert list(rows["minute_of_day"]) == [60, 90]  # 00:00 / 00:30 UTC = 01:00 / 01:30 CET
    assert list(rows["day_of_week"]) == [6, 6] and list(rows["is_weekend"]) == [1, 1]
    s = _series()
    assert list(rows["y"]) == [s[T - pd.Timedelta(hours=23.5)], s[T - pd.Timedelta(hours=23)]]
    assert list(calendar(pd.DatetimeIndex([T]), "UTC")["minute_of_day"]) == [0]


def test_level_falls_back_to_the_day_then_the_last_step():
    frame = pd.DataFrame({"avg_7d": [4.0, np.nan, 0.0, np.nan], "avg_1d": [1, 2.0, np.nan, np.nan],
                          "last_value": [1, 1, 3.0, np.nan]})
    np.testing.assert_array_equal(level(frame), [4.0, 2.0, 3.0, np.nan])


@pytest.mark.parametrize(("value", "message"), [
    (45, "interval_minutes=45 is not supported; allowed: 15, 30, 60, 1440"),
    (True, "interval_minutes=True is not supported"), ("30", "interval_minutes='30' is not supported")])
def test_an_interval_outside_the_allowed_values_is_named(value, message):
    with pytest.raises(InvalidIntervalError, match=message):
        check_interval(value)


def test_an_interval_must_roll_up_from_the_assets_step():
    assert check_interval_for_step(30, 10, "a") == 30 and check_interval_for_step(15, 5, "a") == 15
    assert check_interval_for_step(1440, None, "a") == 1440 and check_interval_for_step(60, 60, "a") == 60
    with pytest.raises(InvalidIntervalError, match="interval_minutes=15 is finer than asset 'h''s data: its readings "
                                                   "come every 60 minutes"):
        check_interval_for_step(15, 60, "h")
    with pytest.raises(InvalidIntervalError, match="not a multiple of 10"):
        check_interval_for_step(15, 10, "t")
    with pytest.raises(InvalidIntervalError, match="no reading step recorded"):
        check_interval_for_step(30, None, "n")


def test_a_model_of_another_interval_is_refused():
    from inference.intervals import check_model_interval

    served = SimpleNamespace(info=SimpleNamespace(id="t:load_forecaster:3", tags={}))
    with pytest.raises(InvalidIntervalError, match="t:load_forecaster:3 forecasts at interval_minutes=60, not 30"):
        check_model_interval(served, 30)
    check_model_interval(SimpleNamespace(info=SimpleNamespace(id="t:x:1", tags={"interval_minutes": "30"})), 30)


def test_native_steps_are_the_most_common_spacing():
    from warehouse.steps import native_steps

    ts = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=m) for m in (0, 10, 20, 30, 90)])
    rows = pd.DataFrame({"asset_id": ["a"] * 5 + ["b"], "ts": [*ts, ts[0]]})
    assert native_steps(rows) == {"a": 10}  # b has one reading: no step
