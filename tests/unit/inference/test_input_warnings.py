"""The warnings a forecast's inputs carry: hours without readings in the week before the issue time
(named as runs), and a weather service's inputs all missing for the asset (no services)."""

import numpy as np
import pandas as pd

from inference.features import gap_warning, weather_warning

T = pd.Timestamp("2024-03-02", tz="UTC")


def _week(drop: range = range(0)) -> pd.Series:
    ends = pd.date_range(T - pd.Timedelta("167h"), T, freq="h")
    s = pd.Series(np.arange(len(ends), dtype=float), index=ends)
    return s.drop(ends[list(drop)])


def test_a_gap_in_the_week_before_the_issue_time_is_named():
    assert gap_warning(_week(), T, "'m1'") is None
    hidden = range(168 - 24, 168 - 6)  # the hours ending 2024-03-01 01:00 .. 18:00
    w = gap_warning(_week(hidden), T, "'m1'")
    assert w.startswith("'m1' has no readings for 18 of the 168 hours before the issue time 2024-03-02 00:00 UTC")
    assert "(2024-03-01 00:00–18:00 (18 h))" in w
    nan = _week()
    nan.iloc[-1] = np.nan  # a stored NULL mean is missing too
    assert "(2024-03-01 23:00–24:00 (1 h))" in gap_warning(nan, T, "'m1'")


def test_a_supplied_history_shorter_than_a_week_is_checked_over_its_own_span():
    short = _week()[-48:]
    assert gap_warning(short, T, "the supplied history", 48) is None
    assert "2 of the 48 hours" in gap_warning(short.drop(short.index[[3, 4]]), T, "the supplied history", 48)


def test_weather_inputs_all_missing_get_a_warning():
    cols = ["lag_1h", "temperature", "humidity"]
    none = {"lag_1h": np.array([1.0]), "temperature": np.array([np.nan]), "humidity": np.array([np.nan])}
    w = weather_warning(none, cols, "m1")
    assert w.startswith("the model reads weather (temperature, humidity) but 'm1' has none at the issue time")
    some = none | {"humidity": np.array([70.0])}
    assert weather_warning(some, cols, "m1") is None  # one variable known: weather reaches the model
    assert weather_warning(none, ["lag_1h"], "m1") is None  # the service has no weather
    assert "a supplied history has none" in weather_warning(none, cols, None)
