"""`ems tune forecast` on a real Tetouan slice (two zones at one site, with weather) against the real
MLflow server: a 3-trial search logged as nested runs, the leaderboard with its baselines, the best
registered in staging with the search's id, validation windows before the held-out days, the time budget
honoured, and bad input refused before any run."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest

from registry import lifecycle
from registry.tune import DESIGNS, TAG_SEARCH, TAG_TRIAL
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "tune"
# 28 days: 7 held out, 2 validation windows of 3 days, 15 training days before them
SMALL = ["--history-days", "28", "--holdout-days", "7", "--windows", "2", "--window-days", "3"]


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    tet = tetouan_slice(tmp / "t.csv", "2017-03-01", "2017-03-29")
    ingest_readings(stack, tet, TENANT, wide=True, site="tet-tune",
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    ingest_weather(stack, tet, "tet-tune",
                   columns="temperature,humidity,wind_speed,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    return stack


@pytest.fixture(scope="module")
def search(data):
    proc = ems("tune", "forecast", "-t", TENANT, "--trials", "3", "--time-budget", "900", *SMALL, "--json")
    return json.loads(proc.stdout)  # exactly one JSON document on stdout (the progress bar is on stderr)


@pytest.fixture(scope="module")
def mlc(stack):
    return lifecycle.client(stack.mlflow_tracking_uri)


def _children(mlc, search_id: str):
    parent = mlc.get_run(search_id)
    return mlc.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{search_id}'", max_results=100)


def _artifact(mlc, run_id: str, path: str) -> dict:
    with open(mlc.download_artifacts(run_id, path)) as f:
        return json.load(f)


def test_every_trial_is_a_nested_run_with_its_parameters_and_validation_metrics(search, mlc):
    assert search["trials_done"] + search["trials_pruned"] == 3
    trials = {r.info.run_name: r for r in _children(mlc, search["search_id"]) if r.info.run_name.startswith("trial")}
    assert sorted(trials) == ["trial 0", "trial 1", "trial 2"]
    for run in trials.values():
        p = run.data.params
        assert p["design"] in DESIGNS
        assert {"num_leaves", "min_data_in_leaf", "learning_rate", "num_boost_round", "lambda_l2",
                "feature_fraction"} <= set(p)
        assert run.data.metrics["val_mase_168"] > 0 and run.data.metrics["val_rows"] > 0
        assert run.data.tags[TAG_SEARCH] == search["search_id"]
    # trial 0 is today's default configuration
    assert trials["trial 0"].data.params["design"] == "forecast_weather"
    assert trials["trial 0"].data.params["num_leaves"] == "127"


def test_leaderboard_has_the_baselines_on_the_same_rows_and_is_logged(search, mlc):
    board = search["leaderboard"]
    names = {r["name"] for r in board}
    assert {"naive-24", "naive-168"} <= names and any(n.startswith("ridge (") for n in names)
    ranked = [r for r in board if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    assert all(a["val_mase_168"] <= b["val_mase_168"] for a, b in zip(ranked, ranked[1:], strict=False))
    rows = {r["val_rows"] for r in ranked}
    assert len(rows) == 1  # every model and baseline scored on the same validation rows
    logged = _artifact(mlc, search["search_id"], "leaderboard.json")
    assert [r["name"] for r in logged["leaderboard"]] == [r["name"] for r in board]
    plots = [a.path for a in mlc.list_artifacts(search["search_id"], "plots")]
    assert "plots/optimisation_history.png" in plots
    # the held-out days were scored once, for the best and the baselines
    assert {"tuned", "ridge", "naive_24", "naive_168"} <= set(search["holdout"])
    assert search["holdout"]["tuned"]["mae"] > 0


def test_best_is_registered_in_staging_with_the_search_id(search, mlc):
    info = lifecycle.show(mlc, search["model_id"])
    assert info.stage == "staging" and info.id.startswith(f"{TENANT}:load_forecaster:")
    assert info.tags[TAG_SEARCH] == search["search_id"]
    assert info.tags[TAG_TRIAL] == str(search["best"]["trial"])
    assert info.tags["feature_service"] == search["best"]["design"]
    refit = mlc.get_run(mlc.get_model_version(f"{TENANT}.load_forecaster", str(info.version)).run_id)
    assert refit.data.tags["mlflow.parentRunId"] == search["search_id"]  # shown under the search in the UI
    assert refit.data.params["lgb.num_leaves"] == str(search["best"]["num_leaves"])


def test_validation_windows_end_before_the_held_out_days(search, mlc):
    sid = search["search_id"]
    doc = _artifact(mlc, sid, "validation_windows.json")
    assert {f["asset_id"] for f in doc["folds"]} == {"zone1", "zone2"}
    for f in doc["folds"]:
        start, end, holdout = (datetime.fromisoformat(f[k]) for k in ("start", "end", "holdout_start"))
        assert start < end <= holdout
    params = mlc.get_run(sid).data.params
    assert params["validation_end"] <= params["holdout_start"]
    for run in _children(mlc, sid):
        if run.info.run_name.startswith("trial"):
            assert run.data.params["validation_end"] <= params["holdout_start"]
    # the held-out days are the last 7 of the readings
    last = max(pd.Timestamp(f["holdout_start"]) for f in doc["folds"])
    assert last == pd.Timestamp("2017-03-22T00:00:00+00:00")


def test_time_budget_stops_the_search(data):
    # 1 s is spent on the training sets: the first trial (today's default) runs, then the search stops
    proc = ems("tune", "forecast", "-t", TENANT, "--trials", "50", "--time-budget", "1", "--name", "tune_budget",
               *SMALL, "--json")
    doc = json.loads(proc.stdout)
    assert doc["trials_done"] == 1 and doc["trials_pruned"] == 0
    assert doc["model_id"].startswith(f"{TENANT}:tune_budget:")


@pytest.mark.parametrize(("args", "message"), [
    (["-t", "nobody_here", "--trials", "2"], "tenant 'nobody_here' has no assets"),
    (["-t", TENANT, "--trials", "0"], "trials=0 is out of range 1..10000"),
    (["-t", TENANT, "--time-budget", "0"], "time_budget=0.0 s is out of range (0, 604800]"),
    (["-t", TENANT, "-a", "zone9"], "no asset(s) 'zone9'"),
])
def test_bad_input_is_one_error_before_any_run(data, mlc, args, message):
    before = len(mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], max_results=1000))
    proc = ems("tune", "forecast", *args, *SMALL, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert message in proc.stderr and proc.stderr.count("error:") == 1
    assert len(mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], max_results=1000)) == before
