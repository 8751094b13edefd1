"""Features from a caller-supplied series (pandas), on a small exact series."""

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidSeriesError
from inference.history import hourly, load_features
from inference.results import _jsonable

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def test_hourly_means_by_hour_start_naive_times_are_utc():
    idx = pd.date_range("2024-03-01 00:00", periods=6 * 30, freq="10min")  # naive, 30 hours
    series = pd.Series(np.arange(len(idx), dtype=float), index=idx)
    out = hourly(series)
    assert out.index[0] == T0 and len(out) == 30
    assert out.iloc[0] == pytest.approx(np.mean([0, 1, 2, 3, 4, 5]))


def test_load_features_use_only_hours_before_the_row_time():
    buckets = pd.Series(np.arange(200.0), index=pd.date_range(T0, periods=200, freq="h"))
    t = T0 + pd.Timedelta(hours=190)  # row time = end of bucket 189
    row = load_features(buckets, pd.DatetimeIndex([t])).iloc[0]
    assert row["lag_1h"] == 189 and row["lag_24h"] == 189 - 23 and row["lag_168h"] == 189 - 167
    assert row["historical_avg_24h"] == pytest.approx(np.mean(np.arange(166, 190)))
    assert row["min_24h"] == 166 and row["max_24h"] == 189 and row["range_24h"] == 23 and row["hours_24h"] == 24
    assert np.isnan(row["temperature"])


def test_bad_series_are_one_clear_error():
    with pytest.raises(InvalidSeriesError, match="indexed by timestamps"):
        hourly(pd.Series([1.0, 2.0]))
    with pytest.raises(InvalidSeriesError, match="history is empty"):
        hourly(pd.Series([np.nan], index=pd.DatetimeIndex([T0])))
    with pytest.raises(InvalidSeriesError, match="at least 24 are needed"):
        hourly(pd.Series([1.0] * 3, index=pd.date_range(T0, periods=3, freq="h")))


def test_results_serialise_to_plain_json_values():
    doc = _jsonable({"t": T0, "x": np.float64(1.5), "n": np.int64(2), "nan": float("nan"), "l": [np.bool_(True)]})
    assert doc == {"t": "2024-03-01T00:00:00+00:00", "x": 1.5, "n": 2, "nan": None, "l": [True]}
