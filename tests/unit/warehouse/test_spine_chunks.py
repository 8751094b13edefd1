"""The Spark offline store joins long spines in time chunks (warehouse/spark_offline.spine_chunks): every
entity row lands in exactly one chunk, chunks are consecutive ranges of the configured length from the first
row, empty ranges are left out, and a spine inside one range (or hours=0) is passed through untouched. The
Spark DataFrame path and the equality with the Postgres store are in tests/integration/test_history_export.py."""

from __future__ import annotations

import pandas as pd
import pytest

from warehouse.spark_offline import spine_chunks


def spine(times: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"asset_id": [f"a{i}" for i in range(len(times))],
                         "event_timestamp": pd.to_datetime(times, utc=True, format="ISO8601")})


def test_rows_are_cut_into_consecutive_ranges_each_row_once():
    frame = spine(["2017-01-01 00:00", "2017-01-01 23:59:59", "2017-01-02 00:00", "2017-01-05 12:00",
                   "2017-01-03 00:00:00.000001", "2017-01-05 12:00"])
    chunks = spine_chunks(frame, None, 24)
    assert [sorted(c["asset_id"]) for c in chunks] == [["a0", "a1"], ["a2"], ["a4"], ["a3", "a5"]]  # 01-04 empty
    assert sum(map(len, chunks)) == len(frame)
    for chunk in chunks:
        assert chunk["event_timestamp"].max() - chunk["event_timestamp"].min() < pd.Timedelta(hours=24)


@pytest.mark.parametrize("hours", [0, 200])
def test_a_spine_inside_one_range_or_no_chunking_is_passed_through(hours):
    frame = spine(["2017-01-01", "2017-01-08"])
    assert spine_chunks(frame, None, hours)[0] is frame


def test_naive_times_are_read_as_utc_and_the_last_row_is_kept():
    frame = pd.DataFrame({"asset_id": ["a", "b", "c"],
                          "event_timestamp": pd.to_datetime(["2017-01-01", "2017-01-02", "2017-01-03"])})
    chunks = spine_chunks(frame, None, 24)
    assert [list(c["asset_id"]) for c in chunks] == [["a"], ["b"], ["c"]]
