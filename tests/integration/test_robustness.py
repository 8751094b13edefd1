"""Robustness evaluation on a real Tetouan slice: the inputs of a gapped or shifted history are what
Feast's point-in-time join returns (registry/gaps.py reproduces the SQL views and the TTL), one
forecast per origin and gap length, the level-shift days, the bars computed from the rows, and the CLI.
The gap-injected training rows are the product's own (training_data.build)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evaluation import robustness
from registry import train_forecast, training_data
from registry.design import ALIGNED, HORIZON
from registry.gaps import LOAD_STATE_COLUMNS, recompute
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "rb"
FAST = train_forecast.BoosterConfig(num_boost_round=40, calibration_days=0)


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    tet = tetouan_slice(tmp_path_factory.mktemp("robust") / "t.csv", "2017-01-01", "2017-02-20")
    ingest_readings(stack, tet, TENANT, wide=True, columns="zone1=zone1_power_consumption")
    refresh(stack)
    return stack


def test_inputs_recomputed_from_the_stored_history_equal_feasts(data, store):
    split = training_data.SplitConfig(history_days=50, holdout_days=14, gap_share=0.3, shift_share=0)
    ts = training_data.build(store, training_data.plan(data, store, TENANT, None, "forecast_load", split))
    rows = ts.holdout[ts.holdout[HORIZON] <= 48]
    again = recompute(rows, ts.series["zone1"], ts.features)
    columns = [c for c in ts.features if c in LOAD_STATE_COLUMNS or c in ALIGNED]
    assert len(columns) >= 12
    pd.testing.assert_frame_equal(again[columns].astype(float), rows[columns].astype(float), rtol=1e-9)
    # gap injection: 30 % of the training issue times once more, labels kept, a gap in their inputs
    copied = ts.train.duplicated(["issue_time", HORIZON], keep="first")
    assert ts.train.loc[copied, "issue_time"].nunique() == round(0.3 * ts.train["issue_time"].nunique())
    assert ts.train.loc[copied, "lag_24h"].isna().mean() > ts.train.loc[~copied, "lag_24h"].isna().mean()
    # level-shift injection: 20 % more, each with its labels and the load since its step moved by one factor
    shifted = training_data.SplitConfig(history_days=50, holdout_days=14, gap_share=0, shift_share=0.2)
    ts2 = training_data.build(store, training_data.plan(data, store, TENANT, None, "forecast_load", shifted))
    first = ts2.train.drop_duplicates(["issue_time", HORIZON], keep="first").set_index(["issue_time", HORIZON])
    copies = ts2.train[ts2.train.duplicated(["issue_time", HORIZON], keep="first")]
    assert copies["issue_time"].nunique() == round(0.2 * ts2.train["issue_time"].nunique())
    ratio = (copies.set_index(["issue_time", HORIZON])["y"] / first["y"]).dropna()
    lag = (copies.set_index(["issue_time", HORIZON])["lag_1h"] / first["lag_1h"]).dropna()
    assert len(ratio) == len(copies) and ((ratio < 0.81) | (ratio > 1.24)).all()
    np.testing.assert_allclose(lag.to_numpy(), ratio.reindex(lag.index).to_numpy())  # the last hour moved too


def test_gaps_and_level_shifts_are_scored_per_origin(data, store):
    r = robustness.run(data, store, TENANT, None, (6, 72), (2.0,), origins=2, service="forecast_load",
                       history_days=50, boosting=FAST)
    assert len(r.gaps) == 2 * 2 and set(r.gaps["gap_h"]) == {6, 72}
    assert np.isfinite(r.gaps[["model_mae", "clean_mae", "naive_168_mae"]].to_numpy()).all()
    assert (r.gaps["passed"] == ((r.gaps["ratio"] <= 1.25) & (r.gaps["model_mae"] <= r.gaps["naive_168_mae"]))).all()
    assert r.gaps.groupby("gap_h")["clean_mae"].apply(lambda c: c.nunique() <= 2).all()  # same clean origins
    # past the 3 h TTL every gapped forecast is issued at the last reading; the in-place one is kept beside it
    assert (r.gaps["reissued_h"] == r.gaps["gap_h"]).all() and np.isfinite(r.gaps["in_place_mae"]).all()
    assert (r.gaps["model_mae"] != r.gaps["in_place_mae"]).any()
    assert np.isfinite(r.shifts[["unshifted_model_mae", "unshifted_naive_24_mae"]].to_numpy()).all()
    shift = r.shift_table()
    assert list(shift.index.get_level_values("day")) == list(range(1, robustness.SHIFT_DAYS + 1))
    late = shift[shift.index.get_level_values("day") >= robustness.SHIFT_BAR_DAY]
    assert r.passed["level_shift"] == bool((late["skill"] > 0).all())
    doc = r.to_dict()
    assert json.dumps(doc) and doc["passed"] == r.passed and len(doc["gap_table"]) == 2


def test_cli_robustness_json_and_bad_input(data):
    bad = ems("evaluate", "robustness", "--tenant", TENANT, "--gaps", "0,6", check=False)
    assert bad.returncode == 1 and "gap=0 h is out of range 1..168" in bad.stderr
    bad = ems("evaluate", "robustness", "--tenant", TENANT, "--level-shift", "1", check=False)
    assert bad.returncode == 1 and "factor=1" in bad.stderr
