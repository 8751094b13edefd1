"""The pure parts of the NAB evaluation: method checks and mapping stored readings back to file rows."""

import pandas as pd
import pytest

from evaluation import anomaly as evaluate_anomaly


def test_methods_default_to_all_and_unknown_ones_are_refused():
    assert evaluate_anomaly.check_methods(None) == ["z_score", "iqr", "isolation_forest", "local_outlier_factor",
                                                    "forecast_residual"]
    assert evaluate_anomaly.check_methods(["iqr", "iqr", "z_score"]) == ["iqr", "z_score"]
    with pytest.raises(evaluate_anomaly.InvalidMethodsError, match="'lstm' unknown; choose from z_score"):
        evaluate_anomaly.check_methods(["z_score", "lstm"])


def test_file_rows_take_the_stored_reading_at_their_timestamp():
    # file rows: 00, 05, 05 (repeat), 15 (rejected at ingest), 10 (out of order), 20
    file_times = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:05", "2024-01-01 00:15",
                                 "2024-01-01 00:10", "2024-01-01 00:20"])
    stored = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10", "2024-01-01 00:20"])
    rows, unscored = evaluate_anomaly.align(pd.Series(file_times), pd.Series(stored))
    assert rows.tolist() == [0, 1, -1, -1, 2, 3]
    assert unscored == 2


def test_every_file_row_is_fed_in_file_order_repeats_included():
    """NAB feeds every row; the repeats used to be skipped and scored 0."""
    frame = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:05",
                                        "2024-01-01 00:15", "2024-01-01 00:15", "2024-01-01 00:10"],
                          "value": ["1", "2", "2", "7", "8", "3"]})  # 00:15: conflicting copies, not stored
    stored = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10"]),
                           "value": [1.0, 2.0, 3.0]})
    fed = evaluate_anomaly.feed(frame, stored)
    assert fed["value"].tolist() == [1.0, 2.0, 2.0, 7.0, 8.0, 3.0] and fed.attrs["from_file"] == 2
    assert fed["ts"].tolist() == pd.to_datetime(frame["timestamp"]).tolist()
