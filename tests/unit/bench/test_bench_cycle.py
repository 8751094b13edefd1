"""Hourly-cycle bench bookkeeping: sizes, the late-hour plan, change detection, the generated tenants and the
floor's INSERT (no services)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.cycle_floor import flat, insert
from bench.data import CYCLE_END, SOURCES, History, _real_series, cycle_asset_id, cycle_values
from bench.rows_cycle import LATE_AGE, changed_rows, close, extra_sizes, late_assets, late_plan
from feature_repo.views import load_lags

T = pd.Timestamp("2024-01-03 05:00", tz="UTC")


def test_extra_sizes_are_read_from_a_comma_separated_list():
    assert extra_sizes(None) == [] and extra_sizes("") == []
    assert extra_sizes("5000") == [5000] and extra_sizes("2000, 5000") == [2000, 5000]
    with pytest.raises(ValueError, match="EMS_BENCH_CYCLE_ASSETS='5k': give asset counts such as 5000"):
        extra_sizes("5k")
    with pytest.raises(ValueError, match="asset counts"):
        extra_sizes("0")


def test_the_late_hour_follows_the_latest_and_arrives_30_hours_before_the_new_one():
    late, new = late_plan(T)
    assert late == T + pd.Timedelta(hours=1) and new - late == pd.Timedelta(hours=LATE_AGE) == pd.Timedelta(hours=30)
    assert late_assets(200) == list(range(0, 200, 10)) and len(late_assets(1000)) == 100 and late_assets(5) == [0]


def test_values_are_equal_up_to_summation_order_and_nulls_only_equal_nulls():
    assert close(None, None) and not close(None, 0.0) and not close(0.0, None)
    assert close(float("nan"), float("nan")) and not close(float("nan"), 1.0)
    assert close(1.0, 1.0 + 1e-12) and not close(1.0, 1.001) and close(24, 24) and not close(24, 23)


def test_changed_rows_are_the_new_ones_and_those_whose_features_moved():
    before = {("t", "a", 1): (1.0, None, 3), ("t", "a", 2): (2.0, 5.0, 3)}
    after = {("t", "a", 1): (1.0 + 1e-13, None, 3), ("t", "a", 2): (2.0, 5.5, 4), ("t", "a", 3): (7.0, 1.0, 1)}
    assert changed_rows(before, after) == [("t", "a", 2), ("t", "a", 3)]
    assert changed_rows(after, after) == []


def test_a_cycle_tenant_is_named_for_its_size_and_ends_at_the_cycle_epoch():
    h = History(1000, 730)
    assert h.tenant == "cycle_1000a_730d" and h.assets[:2] == ["c00000", "c00001"] and len(h.assets) == 1000
    assert h.start == pd.Timestamp("2022-01-01", tz="UTC") and h.hours == 17_520
    assert h.hour_index(h.start) == 0 and h.hour_index(CYCLE_END) == h.hours


def test_an_hour_has_the_same_value_in_the_history_and_in_a_later_cycle_and_the_series_wraps():
    real = _real_series()
    h = History(3, 2)
    whole = h.frame([0, 1, 2], h.start, h.hours + 2, real)
    history = h.frame([0, 1, 2], h.start, h.hours, real)
    cycle = h.frame([0, 1, 2], CYCLE_END, 2, real)
    assert len(whole) == 3 * 50 and list(history.columns) == ["asset_id", "timestamp", "value"]
    merged = pd.concat([history, cycle]).sort_values(["asset_id", "timestamp"], ignore_index=True)
    assert merged.equals(whole.sort_values(["asset_id", "timestamp"], ignore_index=True))
    assert cycle["timestamp"].tolist() == [CYCLE_END, CYCLE_END + pd.Timedelta(hours=1)] * 3
    period = len(real[SOURCES[4]])  # asset 4: Tetouan zone 3, one year long: two years wrap round it
    two_years = cycle_values(4, 0, 17_520, real)
    assert period < 17_520 and np.isfinite(two_years).all() and (two_years > 0).all()
    assert np.array_equal(two_years[period:], two_years[:17_520 - period])
    assert np.array_equal(cycle_values(4, 17_519, 3, real), cycle_values(4, 17_519 - period, 3, real))
    assert cycle_asset_id(4999) == "c04999"


def test_the_floor_inserts_one_array_per_column_of_the_relation():
    rows = {("t", "a", T): (1.0, None, 3.0), ("t", "b", T): (2.0, 4.0, None)}
    assert flat(rows) == [("t", "a", 1.0, None, 3.0, T), ("t", "b", 2.0, 4.0, None, T)]
    statement, params = insert(load_lags, flat(rows))
    assert statement.as_string(None) == (
        'INSERT INTO "bench_scratch_load_lags" ("tenant_id", "asset_id", "lag_1h", "lag_24h", "lag_168h", '
        '"event_timestamp", created) SELECT *, now() FROM unnest(%s::text[], %s::text[], %s::float8[], '
        "%s::float8[], %s::float8[], %s::timestamptz[])")
    assert params == [["t", "t"], ["a", "b"], [1.0, 2.0], [None, 4.0], [3.0, None], [T, T]]
