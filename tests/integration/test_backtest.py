"""A small rolling-origin backtest end to end on a real Tetouan slice (with weather): Feast
point-in-time features, one fit before the test window, scores against the seasonal-naive
baselines, the report folder, its MLflow run, MLflow down, bad input and the CLI's --json."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from core.errors import UnknownAssetError, UnknownFeatureServiceError
from core.names import DEFAULT_FORECAST_SERVICE, experiment_name
from core.settings import Settings
from evaluation import backtest, backtest_report
from evaluation.backtest import ALL
from registry import evaluation, train_forecast
from registry.training_data import InsufficientHistoryError
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "bt"
ORIGINS = 5
FAST = train_forecast.BoosterConfig(num_boost_round=60)


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    tet = tetouan_slice(tmp_path_factory.mktemp("backtest") / "t.csv", "2017-03-01", "2017-03-29")
    ingest_readings(stack, tet, TENANT, wide=True, site="tet-bt",
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    ingest_weather(stack, tet, "tet-bt", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)  # the backtest reads the offline store only: nothing to materialize
    return stack


@pytest.fixture(scope="module")
def result(data, store):
    steps = []
    r = backtest.run(data, store, TENANT, horizons=(168, 24), origins=ORIGINS, history_days=28, boosting=FAST,
                     progress=lambda step, done, total: steps.append((step, done, total)))
    assert steps[0] == ("training set", 0, len(backtest.STEPS)) and steps[-1][1] == steps[-1][2]
    return r


def test_one_forecast_per_daily_origin_for_every_scored_horizon(result):
    assert result.assets == ["zone1", "zone2"] and result.horizons == (24, 168)
    f = result.forecasts
    for w in result.windows:
        part = f[f["asset_id"] == w.asset_id]
        origins = np.sort(part["issue_time"].unique())
        assert len(origins) == ORIGINS and origins[0] == w.split
        assert (np.diff(origins) == pd.Timedelta("24h")).all() and origins[-1] == w.end - pd.Timedelta("24h")
        assert part["target_time"].max() == w.end  # nothing scored past the last reading
        # origin k scores horizons 1..(ORIGINS - k) * 24: every horizon of its day-ahead forecast
        assert len(part[part["horizon_h"] <= 24]) == ORIGINS * 24
        assert len(part) == 24 * sum(range(1, ORIGINS + 1))
    day = result.table(24)
    assert (day.loc[["zone1", "zone2"], "rows"] == ORIGINS * 24).all() and day.loc[ALL, "origins"] == ORIGINS


def test_no_training_label_falls_in_the_test_window(result):
    train = result.training.train
    for w in result.windows:
        rows = train[train["asset_id"] == w.asset_id]
        test = result.forecasts[result.forecasts["asset_id"] == w.asset_id]
        assert len(rows) > 1000
        assert rows["target_time"].max() <= test["issue_time"].min() < test["target_time"].min()
        assert rows["issue_time"].max() < w.split


def test_metrics_are_in_range_for_every_asset_and_horizon_set(result):
    assert list(result.metrics.columns) == list(backtest.METRICS)
    for (h, asset), s in result.metrics.iterrows():
        assert 0 < s["mae"] <= s["rmse"], (h, asset)
        assert 0 < s["mape"] < 30 and 0 < s["smape"] < 30 and 0 < s["mase"] < 5
        assert 0 < s["naive_24_mape"] < 50 and 0 < s["naive_168_mape"] < 50
        assert -3 < s["skill_naive_24"] < 1 and -3 < s["skill_naive_168"] < 1
        assert 0 <= s["coverage_p10_p90"] <= 1 and 0 < s["pinball_mean"] < s["mae"]
    # the same numbers as the training report's scorer (registry/evaluation.py) on the same rows
    f = result.forecasts[(result.forecasts["asset_id"] == "zone1") & (result.forecasts["horizon_h"] <= 24)]
    ref = evaluation.score(f, f[["p10", "p50", "p90", "point"]], result.training.scales)
    ours = result.table(24).loc["zone1"]
    for k in ("mae", "rmse", "mape", "smape", "coverage_p10_p90", "naive_24_mae", "naive_168_mae"):
        assert ours[k] == pytest.approx(ref[k]), k
    assert ours["mase"] == pytest.approx(ref["mase_168"])
    assert ours["skill_naive_24"] == pytest.approx(1 - ref["relmae_24"])
    assert ours["skill_naive_168"] == pytest.approx(1 - ref["relmae_168"])


def test_report_files_and_mlflow_run(data, store, result, tmp_path):
    report = backtest_report.publish(data, store, result, tmp_path / "report")
    assert report.warnings == [] and report.run_id
    md = report.markdown.read_text()
    assert "## Day-ahead (horizons 1–24 h)" in md and "## Week-ahead (horizons 1–168 h)" in md
    assert md.count("| zone1 |") == 1 + 2 * 2  # the setup table, then two tables per horizon set
    assert all(p.stat().st_size > 10_000 for p in report.plots.values())
    doc = json.loads(report.json.read_text())
    assert doc["mlflow"]["run_id"] == report.run_id and set(doc["metrics"]) == {"h24", "h168"}
    assert doc["metrics"]["h24"]["zone2"]["rows"] == ORIGINS * 24
    run = mlflow.MlflowClient(data.mlflow_tracking_uri).get_run(report.run_id)
    assert run.info.run_name == f"backtest {DEFAULT_FORECAST_SERVICE}" and run.data.params["origins"] == str(ORIGINS)
    experiment = mlflow.MlflowClient(data.mlflow_tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == experiment_name(TENANT)
    assert run.data.metrics["h24.zone1.mae"] == pytest.approx(result.table(24).loc["zone1", "mae"])
    artifacts = {a.path for a in mlflow.MlflowClient(data.mlflow_tracking_uri).list_artifacts(report.run_id)}
    assert {"report.md", "metrics.json", "plots"} <= artifacts


def test_mlflow_down_keeps_the_report_with_a_warning(store, result, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    report = backtest_report.publish(Settings(), store, result, tmp_path / "down")
    assert report.run_id is None and "unreachable" in report.warnings[0]
    assert report.markdown.exists() and json.loads(report.json.read_text())["mlflow"] is None


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"assets": ["ghost"]}, UnknownAssetError, "has no asset"),
    ({"service": "nope"}, UnknownFeatureServiceError, "feature service 'nope' is not registered"),
    ({"origins": 10, "history_days": 60}, InsufficientHistoryError, "training needs at least 31 days"),
])
def test_bad_input_gets_one_clear_error(data, store, kwargs, error, message):
    with pytest.raises(error, match=message):
        backtest.run(data, store, TENANT, **{"history_days": 28, "origins": ORIGINS, **kwargs})


def test_cli_json(data, env, tmp_path):
    out = tmp_path / "cli"
    proc = ems("evaluate", "forecast", "--tenant", TENANT, "--asset", "zone2", "--horizons", "24", "--origins", "3",
               "--history-days", "28", "--out", str(out), "--json", env=env)
    doc = json.loads(proc.stdout)
    assert doc["tenant"] == TENANT and doc["horizons"] == [24] and doc["origins"] == 3
    s = doc["metrics"]["h24"]["zone2"]
    assert s["rows"] == 3 * 24 and 0 < s["mape"] < 30 and 0 <= s["coverage_p10_p90"] <= 1
    assert (out / "report.md").exists() and doc["report"]["markdown"] == str(out / "report.md")
    assert doc["mlflow"]["run_id"]
