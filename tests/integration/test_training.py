"""Training on a real Tetouan slice: Feast point-in-time training sets, the LightGBM forecaster and
anomaly detectors logged to the real MLflow server (S3 artifacts), registration, lifecycle, loading
by alias, tenant isolation and bad input."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from core.names import DEFAULT_FORECAST_SERVICE
from registry import lifecycle, train_anomaly, train_forecast, training_data
from registry.training_data import InsufficientHistoryError, SplitConfig
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT, OTHER, SHORT = "train", "trainb", "trains"
ZONES = "zone1=zone1_power_consumption,zone2=zone2_power_consumption,zone3=zone3_power_consumption"
SPLIT = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
FAST = train_forecast.BoosterConfig(num_boost_round=60)


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("training")
    tet = tetouan_slice(tmp / "t.csv", "2017-01-01", "2017-01-29")
    ingest_readings(stack, tet, TENANT, wide=True, columns=ZONES, site="tet-train")
    ingest_weather(stack, tet, "tet-train", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    feb = tetouan_slice(tmp / "f.csv", "2017-02-01", "2017-03-01")
    ingest_readings(stack, feb, OTHER, wide=True, columns="zone1=zone1_power_consumption")
    ingest_readings(stack, tetouan_slice(tmp / "s.csv", "2017-01-01", "2017-01-11"), SHORT, wide=True,
                    columns="zone1=zone1_power_consumption")
    refresh(stack)
    return stack


@pytest.fixture(scope="module")
def mlc(stack):
    return lifecycle.client(stack.mlflow_tracking_uri)


@pytest.fixture(scope="module")
def forecaster(data, store):
    return train_forecast.train(data, store, TENANT, split=SPLIT, boosting=FAST)


def test_training_set_is_point_in_time_and_split_by_time(data, store):
    p = training_data.plan(data, store, TENANT, ["zone1"], "forecast_advanced", SPLIT)
    ts = training_data.build(store, p)
    w = ts.windows[0]
    assert (ts.train["target_time"] <= w.split).all() and (ts.holdout["issue_time"] >= w.split).all()
    hourly = p.series["zone1"]
    # label = hourly mean of the target hour; lag_1h at the issue time = the hour that ended then
    row = ts.train.iloc[123]
    assert row["y"] == pytest.approx(hourly[row["target_time"]])
    assert row["lag_1h"] == pytest.approx(hourly[row["issue_time"]])
    assert set(ts.train["horizon_h"]) <= set(range(1, 169)) and ts.holdout["horizon_h"].max() == 168
    assert ts.fingerprint() == training_data.build(store, p).fingerprint()  # same data, same fingerprint


def test_forecaster_is_logged_with_metrics_plots_tags_and_starts_in_staging(forecaster, mlc, store):
    info = lifecycle.show(mlc, forecaster.model_id)
    assert info.stage == "staging" and info.id == f"{TENANT}:load_forecaster:{info.version}"
    tags = info.tags
    assert tags["tenant_id"] == TENANT and tags["model_type"] == "forecast"
    assert tags["feast.feature_service"] == tags["feature_service"] == DEFAULT_FORECAST_SERVICE
    assert tags["feast_project"] == "ems" and len(tags["data_fingerprint"]) == 16
    assert tags["training_window_start"] < tags["training_window_end"]
    run = mlc.get_run(forecaster.run_id)
    assert run.data.tags["feast.feature_service"] == DEFAULT_FORECAST_SERVICE  # Feast's own auto-log
    assert run.data.params["label"] == "change_from_anchor"  # registry/forecaster.py: anchored
    assert "same_hour_median_7d" in run.data.params["features"].split(",")
    for key in ("mae", "rmse", "mape", "smape", "mase_24", "mase_168", "pinball_p10", "pinball_p90",
                "coverage_p10_p90", "dayahead_mase_168", "dayahead_naive_168_mase"):
        assert np.isfinite(run.data.metrics[key]), key
    assert 0.3 < run.data.metrics["coverage_p10_p90"] <= 1.0
    plots = {a.path for a in mlc.list_artifacts(forecaster.run_id, "plots")}
    assert {"plots/forecast_band.png", "plots/feature_importance.png", "plots/shap_summary.png",
            "plots/error_by_horizon.png"} <= plots
    # Feast's resolver reads the version tag and checks feast_features.json against the service
    assert store.mlflow.resolve_features(f"models:/{TENANT}.load_forecaster/{info.version}") == DEFAULT_FORECAST_SERVICE


def test_production_model_loads_by_alias_from_s3_and_never_crosses(forecaster, mlc, data, store):
    lifecycle.promote(mlc, forecaster.model_id, "production")
    mlflow.set_tracking_uri(data.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{TENANT}.load_forecaster@production")
    ts = training_data.build(store, training_data.plan(data, store, TENANT, None, DEFAULT_FORECAST_SERVICE, SPLIT))
    out = model.predict(ts.holdout[ts.features].astype(float))
    assert list(out.columns) == ["p10", "p50", "p90", "point"] and len(out) == len(ts.holdout)
    assert (out["p10"] <= out["p50"]).all() and (out["p50"] <= out["p90"]).all()
    assert lifecycle.resolve_production(mlc, TENANT, "load_forecaster").id == forecaster.model_id


def test_second_version_promotion_archives_the_first_and_delete_rules(forecaster, mlc, data, store):
    second = train_forecast.train(data, store, TENANT, ["zone1"], split=SPLIT, boosting=FAST)
    _ensure_production(mlc, forecaster.model_id)
    lifecycle.promote(mlc, second.model_id, "production")
    assert lifecycle.show(mlc, forecaster.model_id).stage == "archived"
    with pytest.raises(lifecycle.InvalidTransitionError, match="--force"):
        lifecycle.delete(mlc, second.model_id)
    proc = ems("models", "delete", second.model_id, check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert ems("models", "delete", second.model_id, "--force").returncode == 0


def _ensure_production(mlc, model_id: str) -> None:
    if lifecycle.show(mlc, model_id).stage != "production":
        lifecycle.promote(mlc, model_id, "production")


def test_tenant_isolation(forecaster, mlc, data, store):
    _ensure_production(mlc, forecaster.model_id)
    other = train_forecast.train(data, store, OTHER, split=SPLIT, boosting=FAST)
    lifecycle.promote(mlc, other.model_id, "production")
    assert all(m.tenant == TENANT for m in lifecycle.list_models(mlc, TENANT))
    assert other.model_id not in {m.id for m in lifecycle.list_models(mlc, TENANT)}
    assert lifecycle.resolve_production(mlc, OTHER, "load_forecaster").id == other.model_id
    assert lifecycle.resolve_production(mlc, TENANT, "load_forecaster").id == forecaster.model_id
    listed = json.loads(ems("models", "list", "--tenant", OTHER, "--json").stdout)
    assert {m["tenant"] for m in listed} == {OTHER}


def test_too_little_history_is_one_clear_error_and_leaves_no_run(data, store, mlc):
    with pytest.raises(InsufficientHistoryError, match=r"asset 'zone1' has 10 days of hourly readings .* at least 21"):
        train_forecast.train(data, store, SHORT, split=SplitConfig(holdout_days=7))
    assert mlc.get_experiment_by_name(f"tenant-{SHORT}") is None  # checked before any MLflow run exists


def test_cli_train_prints_the_new_id_and_rejects_unknown_assets(data):
    proc = ems("train", "forecast", "--tenant", TENANT, "--asset", "ghost", check=False)
    assert proc.returncode == 1 and "tenant 'train' has no asset(s) 'ghost'" in proc.stderr
    proc = ems("train", "anomaly", "--tenant", TENANT, "--method", "iqr", "--history-days", "28", "--holdout-days", "7")
    model_id = proc.stdout.strip().splitlines()[-1]
    assert model_id.startswith(f"{TENANT}:anomaly_iqr:")
    assert json.loads(ems("models", "show", model_id, "--json").stdout)["stage"] == "staging"


@pytest.mark.parametrize("method", ["z_score", "isolation_forest", "local_outlier_factor"])
def test_anomaly_models_score_in_sigma_units_with_severity(data, store, mlc, method):
    result = train_anomaly.train(data, store, TENANT, method, split=SPLIT)
    info = lifecycle.show(mlc, result.model_id)
    assert info.model_type == "anomaly" and info.tags["feature_service"] == "anomaly_detection"
    assert info.tags["method"] == method
    if method == "z_score":
        stats = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/statistics.json")
        assert {"global", "asset", "asset_hour"} <= set(stats) and "zone1" in stats["asset"]
    model = mlflow.pyfunc.load_model(f"models:/{TENANT}.anomaly_{method}/{info.version}")
    _, holdout = train_anomaly.dataset(store, training_data.plan(data, store, TENANT, None, "anomaly_detection",
                                                                 SPLIT))
    frame = holdout[["asset_id", *model.metadata.metadata["features"], "value"]].copy()
    frame = frame.astype({c: float for c in frame.columns if c != "asset_id"})
    frame.loc[frame.index[10], "value"] *= 3  # a meter reading three times its usual level
    out = model.predict(frame, params={"sensitivity": 3})
    assert out.loc[frame.index[10], "is_anomaly"] and out.loc[frame.index[10], "severity"] in ("high", "critical")
    assert out["is_anomaly"].mean() < 0.1
    assert set(out["severity"]) <= {"", "low", "medium", "high", "critical"}


def test_unknown_feature_service_and_bad_model_name(data, store):
    from core.errors import UnknownFeatureServiceError
    from core.names import InvalidModelIdError

    with pytest.raises(UnknownFeatureServiceError, match="'forecast_x' is not registered"):
        train_forecast.train(data, store, TENANT, service="forecast_x", split=SPLIT)
    with pytest.raises(InvalidModelIdError, match="model name 'Bad.Name' is invalid"):
        train_forecast.train(data, store, TENANT, name="Bad.Name", split=SPLIT)
