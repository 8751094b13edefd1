"""Streaming detectors: causal (a score never depends on later rows), scores in [0, 1], a spike is
reported once, a calm series is not."""

import numpy as np
import pytest

from evaluation import streaming

FAST = streaming.Settings(window=500, refit=100, fit_rows=300)
N = 1500


def daily_series(seed=0, n=N):
    """5-min readings: a daily sine plus noise."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2024-01-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    x = 10 + 3 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 0.3, n)
    return x, ts


@pytest.mark.parametrize("method", streaming.METHODS)
def test_a_score_never_depends_on_later_rows(method):
    x, ts = daily_series()
    cut = 1000
    changed = x.copy()
    changed[cut:] += np.random.default_rng(1).normal(0, 5, N - cut)
    before = streaming.detect(method, x, ts, FAST)
    after = streaming.detect(method, changed, ts, FAST)
    assert np.array_equal(before[:cut], after[:cut])
    assert not np.array_equal(before[cut:], after[cut:])
    assert before.min() >= 0.0 and before.max() <= 1.0


@pytest.mark.parametrize("method", streaming.METHODS)
def test_a_spike_is_reported_once_and_calm_rows_are_not(method):
    x, ts = daily_series()
    x[1200] += 15
    score = streaming.detect(method, x, ts, FAST)
    level = streaming.DETECTION_LEVEL
    assert score[1200] >= level
    # No false alarm once two days are known (before that the range and the daily envelope still grow).
    assert (score[2 * 288:1200] < level).all()
    assert (score[1201:1200 + FAST.rest + 1] < level).all()  # the rest period after the detection


def test_nothing_is_scored_while_learning():
    x, ts = daily_series()
    assert (streaming.detect("z_score", x, ts)[: streaming.DEFAULT.learning] == 0).all()


def test_rest_period_caps_repeats_below_the_detection_level():
    s = np.array([0.1, 0.9, 0.8, 0.95, 0.2, 0.7, 0.6])
    out = streaming.rest_period(s, rest=3)
    assert out[1] == 0.9 and (out[2:5] < 0.5).all() and out[5] == 0.7 and out[6] < 0.5
    assert out[0] == 0.1 and out[4] == 0.2


def test_new_extremes_score_1_beyond_the_seen_range():
    settings = streaming.Settings(learning=2, tolerance=0.1)
    x = np.array([0.0, 10.0, 5.0, 10.5, 11.1, -1.2, 3.0])
    # seen range before row 3: 0..10 (margin 1): 10.5 no; before row 4: 0..10.5 (1.05): 11.1 no; row 5: -1.2 < -1.11
    assert streaming.new_extremes(x, settings).tolist() == [0, 0, 0, 0, 0, 1, 0]


def test_seasonal_excess_is_the_distance_outside_the_same_time_envelope():
    ts = np.datetime64("2024-01-01T00:00") + np.arange(6) * np.timedelta64(12, "h")  # step 12 h: no daily cycle
    assert np.isnan(streaming.seasonal_excess(np.arange(6.0), ts, days=1, spread=0)).all()
    ts = np.datetime64("2024-01-01T00:00") + np.arange(8) * np.timedelta64(1, "h")
    x = np.zeros(8)
    excess = streaming.seasonal_excess(x, ts, days=1, spread=0)  # no row has a day of history: 0 once the step
    assert np.isnan(excess[:2]).all() and (excess[2:] == 0).all()  # is known (two steps seen)
    ts = np.datetime64("2024-01-01T00:00") + np.arange(30) * np.timedelta64(2, "h")  # 12 rows a day
    x = np.arange(30.0) % 12
    x[25] = 4.0  # same time a day earlier (row 13) was 1.0, two days earlier (row 1) 1.0
    excess = streaming.seasonal_excess(x, ts, days=2, spread=0)
    assert np.isnan(excess[:2]).all() and excess[2:12].tolist() == [0.0] * 10
    assert excess[25] == 3.0 and excess[24] == 0.0


def test_the_usual_step_is_online_and_ignores_repeated_timestamps():
    ts = np.array(["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T01:00", "2024-01-01T02:00",
                   "2024-01-01T05:00", "2024-01-01T08:00", "2024-01-01T11:00"], dtype="datetime64[ns]")
    hours = streaming.period_steps(ts) / 3.6e12
    assert np.isnan(hours[:3]).all()  # two positive steps are needed; the repeat is no step
    assert hours[3:].tolist() == [1.0, 1.0, 2.0, 3.0]  # medians of (1, 1), (1, 1, 3), (1, 1, 3, 3), (1, 1, 3, 3, 3)


@pytest.mark.parametrize("method", streaming.METHODS)
def test_a_prefix_of_a_file_gets_the_same_scores_as_the_whole_file(method):
    """The usual step was the median over the whole file: hourly rows followed by more 3-hourly ones made
    the whole file 'no daily cycle' while its hourly prefix had one, so later rows changed earlier scores."""
    rng = np.random.default_rng(3)
    hourly = np.datetime64("2024-01-01T00:00") + np.arange(600) * np.timedelta64(1, "h")
    sparse = hourly[-1] + np.arange(1, 901) * np.timedelta64(3, "h")
    ts = np.r_[hourly, sparse]
    hours = (ts - ts[0]) / np.timedelta64(1, "h")
    x = 10 + 3 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.3, len(ts))
    x[450] += 8  # a spike while the file is still hourly
    whole = streaming.detect(method, x, ts, FAST)
    for cut in (300, 600, 1000):
        np.testing.assert_array_equal(streaming.detect(method, x[:cut], ts[:cut], FAST), whole[:cut], err_msg=str(cut))
    assert whole[440:470].max() >= streaming.DETECTION_LEVEL or method != "z_score"


def test_unknown_method_is_refused():
    x, ts = daily_series(n=10)
    with pytest.raises(streaming.UnknownMethodError, match="not one of z_score"):
        streaming.surprise("prophet", x, ts)
