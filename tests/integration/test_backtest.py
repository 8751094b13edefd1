"""A small rolling-origin backtest end to end on a real Tetouan slice (with weather, and an 18-hour gap
the day before the first origin): Feast point-in-time features, one fit before the test window, scores
against the seasonal-naive baselines on the same rows (with their fallbacks over the gap), the worst
days, the report folder, its MLflow run, MLflow down, bad input and the CLI's tables and --json."""

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
# 06:00-23:50 of the day before the first origin (2017-03-24 00:00 UTC) have no reading: naive-24 is
# unknown for hours 7-24 of that origin's day-ahead forecast (and the same hours of its later days).
GAP = ("2017-03-23T06:00:00", "2017-03-23T23:50:00")
GAP_TEXT = "2017-03-23 06:00–24:00 (18 h)"


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    tet = tetouan_slice(tmp_path_factory.mktemp("backtest") / "t.csv", "2017-03-01", "2017-03-29")
    frame = pd.read_csv(tet, dtype=str)
    frame[(frame["timestamp"] < GAP[0]) | (frame["timestamp"] > GAP[1])].to_csv(tet, index=False)
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


def test_model_and_baselines_are_scored_on_the_same_rows_with_fallbacks_counted(result):
    """The old scorer dropped rows without a naive-24 value from the baseline's MAE and the skill but kept
    them in the model's MAE; over the gap that made skill disagree with the two MAEs it sits beside."""
    f = result.forecasts
    first = f[(f["asset_id"] == "zone1") & (f["issue_time"] == f["issue_time"].min())]
    fell = first[first["naive_24_source"] > 0]
    assert sorted(fell.loc[fell["horizon_h"] <= 24, "horizon_h"]) == list(range(7, 25))
    assert (fell["naive_24"] == fell["naive_168"]).all()  # the weekly value stands in
    assert f[["naive_24", "naive_168"]].notna().all().all()
    for h in result.horizons:
        for asset, s in result.table(h).drop(ALL).iterrows():
            assert s["skill_naive_24"] == pytest.approx(1 - s["mae"] / s["naive_24_mae"]), (h, asset)
            assert s["skill_naive_168"] == pytest.approx(1 - s["mae"] / s["naive_168_mae"]), (h, asset)
    day = result.table(24)
    assert (day.loc[["zone1", "zone2", ALL], "naive_24_fallback_rows"] == [18, 18, 36]).all()
    assert (day["naive_24_last_value_rows"] == 0).all() and (day["naive_168_fallback_rows"] == 0).all()
    assert result.table(168).loc["zone1", "naive_24_fallback_rows"] == 18 * ORIGINS  # the same hours each day


def test_days_name_the_gap_and_the_worst_five_are_listed(result):
    days = result.days
    assert len(days) == 2 * ORIGINS
    gap = days[days["issue_time"] == days["issue_time"].min()]
    assert (gap["missing_hours"] == 18).all() and (gap["gaps"] == GAP_TEXT).all()
    assert (gap["naive_24_fallback_rows"] == 18).all()
    assert all("same_hour_1d" in names.split(", ") for names in gap["missing_inputs"])
    later = days[days["issue_time"] > days["issue_time"].min() + pd.Timedelta(days=7)]
    assert later.empty or (later["missing_hours"] == 0).all()
    worst = result.worst
    assert len(worst) == backtest.WORST and worst["ratio"].is_monotonic_decreasing
    assert worst["ratio"].iloc[0] == days["ratio"].max()
    one = days.iloc[0]
    assert one["model_mae"] / min(one["naive_24_mae"], one["naive_168_mae"]) == pytest.approx(one["ratio"])


def test_cli_tables_print_fallback_counts_and_worst_days(result, monkeypatch):
    import cli

    monkeypatch.setattr(cli.console, "width", 220)  # a wide terminal: no cell wraps
    with cli.console.capture() as captured:
        cli._backtest_tables(result)
    text = captured.get()
    assert "fallback rows" in text and "worst days" in text and "18 h" in text
    assert text.count("zone1") >= 2 and text.count("zone2") >= 2  # one row per horizon set, and worst days


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
    # the setup table, three tables per horizon set, the worst days
    assert md.count("| zone1 |") == 1 + 2 * 3 + (result.worst["asset_id"] == "zone1").sum()
    assert "## Worst days (5 origins)" in md
    assert (GAP_TEXT in md) == (result.worst["missing_hours"] > 0).any()  # named where a worst day had the gap
    assert all(p.stat().st_size > 10_000 for p in report.plots.values())
    doc = json.loads(report.json.read_text())
    assert doc["mlflow"]["run_id"] == report.run_id and set(doc["metrics"]) == {"h24", "h168"}
    assert len(doc["worst_days"]) == backtest.WORST and doc["metrics"]["h24"]["zone1"]["naive_24_fallback_rows"] == 18
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
    assert len(doc["worst_days"]) == 3 and s["naive_24_fallback_rows"] == 0  # the gap is before these 3 origins
    assert doc["mlflow"]["run_id"]
