"""The SDK end to end on the real stack: Redis features through Feast, production models from MLflow,
fallbacks, promotions served without a restart, explanations and bad input."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.errors import (
    InvalidHorizonError,
    InvalidRangeError,
    InvalidSeriesError,
    ModelNotFoundError,
    ModelUnavailableError,
    UnknownAssetError,
)
from core.names import DEFAULT_FORECAST_SERVICE, InvalidMethodError
from core.settings import Settings
from inference.client import Client
from registry import lifecycle, train_anomaly, train_forecast
from registry.severity import InvalidSensitivityError
from registry.training_data import SplitConfig
from tests.helpers.data import TETOUAN, tetouan_slice
from tests.helpers.stack import TEST_PORTS, ems, write_feast_yaml
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "inf"
SPLIT = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
FAST = train_forecast.BoosterConfig(num_boost_round=60)


@pytest.fixture(scope="module")
def served(stack, store, env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    tet = tetouan_slice(tmp / "t.csv", "2017-04-01", "2017-04-29")
    ingest_readings(stack, tet, TENANT, wide=True, site="tet-inf",
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    ingest_weather(stack, tet, "tet-inf", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    ems("materialize", "--start", "2017-04-01T00:00:00", env=env)  # history older than the last run: a backfill
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    forecaster = train_forecast.train(stack, store, TENANT, split=SPLIT, boosting=FAST)
    lifecycle.promote(mlc, forecaster.model_id, "production", force=True)
    detector = train_anomaly.train(stack, store, TENANT, "z_score", split=SPLIT)
    lifecycle.promote(mlc, detector.model_id, "production")
    return forecaster.model_id


@pytest.fixture(scope="module")
def client(stack, store, served):
    return Client(stack, store, model_ttl_seconds=0)


def _zone1(start="2017-04-01", end="2017-04-29") -> pd.Series:
    """Tetouan zone 1 as a caller would pass it: 10-minute readings, naive UTC timestamps."""
    frame = pd.read_csv(TETOUAN, usecols=["timestamp", "zone1_power_consumption"])
    frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
    return pd.Series(frame["zone1_power_consumption"].to_numpy(), index=pd.to_datetime(frame["timestamp"]))


def test_forecast_from_redis_with_ordered_quantiles_and_metadata(client, served):
    f = client.forecast(TENANT, "zone1", horizon=24)
    assert f.source == "online" and not f.fallback and f.warnings == []
    assert f.model_id == served and f.stage == "production" and f.feature_service == DEFAULT_FORECAST_SERVICE
    assert len(f.frame) == 24 and f.frame["horizon_h"].tolist() == list(range(1, 25))
    assert f.frame["timestamp"].iloc[0] == f.feature_time  # the first target hour starts at the issue time
    assert (f.frame["p10"] <= f.frame["p50"]).all() and (f.frame["p50"] <= f.frame["p90"]).all()
    assert (f.frame["lower"] == f.frame["p10"]).all() and (f.frame["upper"] == f.frame["p90"]).all()
    assert f.features["lag_1h"] > 0 and set(f.training_metrics) >= {"mae", "rmse", "mape"}
    doc = json.loads(json.dumps(f.to_dict()))
    assert doc["model_id"] == served and len(doc["forecast"]) == 24 and doc["version"] == f.version
    assert f.plot() is not None


def test_online_and_offline_paths_give_the_same_forecast(client):
    online = client.forecast(TENANT, "zone1", horizon=48)
    offline = client.forecast(TENANT, "zone1", horizon=48, as_of=online.feature_time)
    assert offline.source == "offline"
    pd.testing.assert_frame_equal(online.frame, offline.frame)


def test_redis_down_falls_back_to_the_offline_store_with_a_warning(stack, served, tmp_path, monkeypatch):
    dead = write_feast_yaml(tmp_path / "fs.yaml", TEST_PORTS["postgres"], 1, TEST_PORTS["mlflow"])
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(dead))
    f = Client(Settings(), model_ttl_seconds=0).forecast(TENANT, "zone1", horizon=6)
    assert f.source == "offline" and f.fallback
    assert any("online store unreachable" in w for w in f.warnings)
    assert (f.frame["p10"] <= f.frame["p90"]).all()


def test_a_promotion_is_served_without_a_restart_including_one_made_in_the_ui(client, stack, store, served):
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    assert client.forecast(TENANT, "zone1", horizon=1).model_id == served
    newer = train_forecast.train(stack, store, TENANT, ["zone1"], split=SPLIT, boosting=FAST)
    lifecycle.promote(mlc, newer.model_id, "production", force=True)
    assert client.forecast(TENANT, "zone1", horizon=1).model_id == newer.model_id
    mlc.set_registered_model_alias(f"{TENANT}.load_forecaster", "production", served.rsplit(":", 1)[1])  # the UI
    assert client.forecast(TENANT, "zone1", horizon=1).model_id == served
    assert len(client.models.cached_ids()) >= 2


def test_mlflow_down_serves_the_cached_model_and_fails_clearly_when_nothing_is_cached(stack, store, served):
    warm = Client(stack, store, model_ttl_seconds=0)
    warm.forecast(TENANT, "zone1", horizon=1)
    warm.models.tracking_uri = "http://127.0.0.1:9"  # nothing listens there
    f = warm.forecast(TENANT, "zone1", horizon=1)
    assert f.model_id == served and any("unreachable; serving cached" in w for w in f.warnings)
    cold = Client(stack, store)
    cold.models.tracking_uri = "http://127.0.0.1:9"
    with pytest.raises(ModelUnavailableError, match="unreachable and no version of inf:load_forecaster is cached"):
        cold.forecast(TENANT, "zone1", horizon=1)


def test_detect_anomalies_on_stored_hours_and_on_a_caller_series(client):
    stored = client.detect_anomalies(TENANT, "zone1", start="2017-04-20", end="2017-04-27", method="z_score")
    assert len(stored.frame) == 7 * 24 and stored.summary["points"] == 7 * 24
    assert set(stored.frame.columns) >= {"value", "score", "is_anomaly", "severity", "expected_min", "expected_max",
                                         "expected_mean", "expected_std", "explanation"}
    series = _zone1()
    spike_at = pd.Timestamp("2017-04-25 14:00")
    series[(series.index >= spike_at) & (series.index < spike_at + pd.Timedelta("1h"))] *= 3
    a = client.detect_anomalies(TENANT, "meter-x", series=series, method="z_score", sensitivity=3,
                                start="2017-04-20", end="2017-04-27")
    hit = a.frame[a.frame["timestamp"] == spike_at.tz_localize("UTC")].iloc[0]
    assert hit["is_anomaly"] and hit["severity"] in ("high", "critical") and "above the expected" in hit["explanation"]
    assert a.summary["anomalies"] >= 1 and a.summary["rate"] < 0.1 and a.source == "history"
    assert json.loads(json.dumps(a.to_dict()))["summary"]["method"] == "z_score"
    assert a.plot() is not None


def test_forecast_residual_uses_the_production_forecaster(client, served):
    a = client.detect_anomalies(TENANT, "zone2", method="forecast_residual", lookback_hours=48)
    assert a.model_id == served and len(a.frame) == 48
    assert (a.frame["expected_min"] < a.frame["expected_max"]).all() and np.isfinite(a.frame["score"]).all()


def test_explain_contributions_add_up_to_the_forecast(client, served):
    e = client.explain(TENANT, "zone1", horizon=3)
    f = client.forecast(TENANT, "zone1", horizon=3)
    assert e.prediction == pytest.approx(f.frame["point"].iloc[2], rel=1e-6)
    assert e.base_value + e.contributions["contribution"].sum() == pytest.approx(e.prediction, rel=1e-6)
    assert e.summary.count(" by ") == 3 and len(e.waterfall()) == len(e.contributions)
    row = {r.feature: r.value for r in e.contributions.itertuples() if r.feature != "log_level"}
    again = client.explain(TENANT, model=served, features=row)
    assert again.prediction == pytest.approx(e.prediction, rel=1e-6)
    g = client.explain_global(served)
    assert g.importance["share"].sum() == pytest.approx(1.0) and len(g.importance) == len(e.contributions)
    assert e.plot() is not None and g.plot() is not None


def test_explain_equals_shap_tree_explainer(client, served):
    import shap

    from inference.features import AssetSource, forecast_inputs
    model = client.models.version(served)
    names = model.python_model.features
    inputs = forecast_inputs(AssetSource(client.settings, client.store, TENANT, "zone1"), model.feature_service, 5)
    X, level = model.python_model.matrix(inputs.matrix(names)[4:5], "zone1")
    expected = shap.TreeExplainer(model.python_model.point_booster).shap_values(X)[0] * level[0]
    got = client.explain(TENANT, "zone1", horizon=5).contributions.set_index("feature")
    assert "asset_code" in got.index and got.loc["asset_code", "value"] == "zone1"
    np.testing.assert_allclose(got.loc[model.python_model.inputs, "contribution"].to_numpy(), expected,
                               rtol=1e-9, atol=1e-9)
    # the trees start from the anchor (same hour, last observed day): it is in the base, not a contribution
    assert model.python_model.anchored
    anchor = model.python_model.anchor(inputs.matrix(names)[4:5], level)[0]
    e = client.explain(TENANT, "zone1", horizon=5)
    assert anchor == inputs.matrix(["same_hour_1d"])[4, 0]
    assert e.base_value == pytest.approx(anchor + shap.TreeExplainer(
        model.python_model.point_booster).expected_value * level[0], rel=1e-6)


def test_forecast_from_a_caller_history_for_an_unknown_asset(client):
    series = _zone1(end="2017-04-22")
    f = client.forecast(TENANT, "new-meter", horizon=12, history=series)
    assert f.source == "history" and len(f.frame) == 12
    assert f.feature_time == pd.Timestamp("2017-04-22", tz="UTC")
    # the same hours in the store give the same features (pandas vs SQL)
    stored = client.forecast(TENANT, "zone1", horizon=12, as_of=f.feature_time)
    for name in ("lag_1h", "lag_24h", "lag_168h", "historical_avg_24h", "historical_std_24h"):
        assert f.features[name] == pytest.approx(stored.features[name], rel=1e-9), name


def test_peer_inputs_are_served_as_they_were_trained(client, stack, store):
    """A forecaster trained on the regional service reads its site peer (zone1 <-> zone2, site tet-inf):
    the served inputs at an issue time equal the backtest's held-out row for it, and the SDK serves it."""
    from inference.features import AssetSource, forecast_inputs
    from registry import training_data
    from registry.design import PEER

    split = SplitConfig(history_days=28, holdout_days=3, min_history_days=10, issue_every_h=12,
                        horizons_per_issue=12)
    plan = training_data.plan(stack, store, TENANT, ["zone1"], "forecast_regional", split)
    assert plan.peers == {"zone1": ["zone2"]}  # zone2 is read as a peer without being trained on
    ts = training_data.build(store, plan)
    assert set(PEER) <= set(ts.features) and ts.train[list(PEER)].notna().all().all()
    t = ts.holdout["issue_time"].min()
    row = ts.holdout[(ts.holdout["issue_time"] == t) & (ts.holdout["horizon_h"] <= 24)].sort_values("horizon_h")
    served = forecast_inputs(AssetSource(stack, store, TENANT, "zone1"), "forecast_regional", 24, as_of=t,
                             peers=True)
    at = row["horizon_h"].to_numpy() - 1
    for name in PEER:
        np.testing.assert_allclose(served.columns[name][at], row[name].to_numpy(), rtol=1e-12, err_msg=name)
    model = train_forecast.train(stack, store, TENANT, ["zone1"], service="forecast_regional", split=split,
                                 boosting=FAST, name="regional")
    f = client.forecast(TENANT, "zone1", horizon=24, model=model.model_id)
    assert f.feature_service == "forecast_regional" and np.isfinite(f.frame["p50"]).all()
    e = client.explain(TENANT, "zone1", horizon=1, model=model.model_id)
    assert set(PEER) <= set(e.contributions["feature"]) and e.summary
    g = client.forecast(TENANT, "zone1", horizon=6, model=model.model_id, history=_zone1(end="2017-04-22"))
    assert any("no site peers" in w for w in g.warnings)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda c: c.forecast(TENANT, "ghost"), UnknownAssetError, "has no asset"),
    (lambda c: c.forecast(TENANT, "zone1", horizon=0), InvalidHorizonError, "horizon=0 is out of range 1..168"),
    (lambda c: c.forecast(TENANT, "zone1", horizon=169), InvalidHorizonError, "horizon=169 is out of range"),
    (lambda c: c.forecast("nobody", "zone1"), UnknownAssetError, "tenant 'nobody' has no asset"),
    (lambda c: c.forecast("nb2", "zone1", model="inf:load_forecaster:1"), ModelNotFoundError,
         "belongs to tenant 'inf', not 'nb2'"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", sensitivity=0), InvalidSensitivityError, "out of range 1..5"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", sensitivity=6), InvalidSensitivityError, "out of range 1..5"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", method="prophet"), InvalidMethodError, "'prophet' is not one of"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", start="2017-04-10", end="2017-04-09"), InvalidRangeError,
     "is not before end"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", series=pd.Series(dtype=float, index=pd.DatetimeIndex([]))),
     InvalidSeriesError, "history is empty"),
    (lambda c: c.detect_anomalies(TENANT, "zone1", method="iqr"), ModelNotFoundError, "inf:anomaly_iqr"),
])
def test_bad_input_gets_one_clear_error(client, call, error, message):
    with pytest.raises(error, match=message):
        call(client)


def test_cli_forecast_json_and_plot(served, tmp_path):
    doc = json.loads(ems("forecast", "--tenant", TENANT, "--asset", "zone1", "--horizon", "6", "--json").stdout)
    assert doc["model_id"].startswith(f"{TENANT}:load_forecaster:") and len(doc["forecast"]) == 6
    ems("anomaly", "--tenant", TENANT, "--asset", "zone1", "--plot", str(tmp_path / "a.png"))
    ems("explain", "--tenant", TENANT, "--asset", "zone1", "--plot", str(tmp_path / "e.png"))
    assert (tmp_path / "a.png").stat().st_size > 10_000 and (tmp_path / "e.png").stat().st_size > 10_000
    proc = ems("forecast", "--tenant", TENANT, "--asset", "zone1", "--horizon", "0", check=False)
    assert proc.returncode == 1 and "horizon=0 is out of range 1..168" in proc.stderr


def _ingest_with_gap(stack, tmp_path, asset: str) -> None:
    """Zone 1's readings of 1-22 April 2017 as `asset` (no site) without 2017-04-20 06:00-24:00 (18 h)."""
    frame = pd.read_csv(tetouan_slice(tmp_path / "t.csv", "2017-04-01", "2017-04-22"), dtype=str)
    frame = frame[(frame["timestamp"] < "2017-04-20T06:00:00") | (frame["timestamp"] > "2017-04-20T23:50:00")]
    frame.to_csv(tmp_path / "gap.csv", index=False)
    ingest_readings(stack, tmp_path / "gap.csv", TENANT, wide=True, columns=f"{asset}=zone1_power_consumption")
    refresh(stack)


def test_a_forecast_after_a_gap_and_without_weather_says_so(client, stack, tmp_path):
    """An asset without a weather site, served by a weather-service model, whose last week has an 18-hour
    gap: both are named in the forecast's warnings (it used to answer `warnings: []`)."""
    _ingest_with_gap(stack, tmp_path, "lonely")
    f = client.forecast(TENANT, "lonely", horizon=24, as_of=pd.Timestamp("2017-04-22", tz="UTC"))
    assert f.feature_service == DEFAULT_FORECAST_SERVICE and np.isfinite(f.frame["p50"]).all()
    assert any(w.startswith("'lonely' has no readings for 18 of the 168 hours before the issue time 2017-04-22 "
                            "00:00 UTC (2017-04-20 06:00–24:00 (18 h))") for w in f.warnings), f.warnings
    assert any("the model reads weather (temperature, humidity, solar_irradiance, wind_speed) but 'lonely' has "
               "none" in w for w in f.warnings), f.warnings
    stored = client.forecast(TENANT, "zone1", horizon=24, as_of=pd.Timestamp("2017-04-22", tz="UTC"))
    assert not any("no readings" in w or "reads weather" in w for w in stored.warnings)  # its site has weather
    history = client.forecast(TENANT, "new-meter", horizon=6, history=_zone1(end="2017-04-22"))
    assert any("a supplied history has none" in w for w in history.warnings)


def test_a_forecast_issued_after_the_last_reading_is_the_one_issued_at_it(client, stack, tmp_path):
    """An origin whose last 18 hours have no readings (the feed came back later): past the views' 3 h TTL
    the issue-time lags and rolling statistics are gone, so the forecast is the one issued at the last
    reading for the same target hours (horizons 19-42), named in its warnings; within the TTL it stays put."""
    _ingest_with_gap(stack, tmp_path, "late")
    after = client.forecast(TENANT, "late", horizon=24, as_of=pd.Timestamp("2017-04-21", tz="UTC"))
    at_last = client.forecast(TENANT, "late", horizon=42, as_of=pd.Timestamp("2017-04-20 06:00", tz="UTC"))
    assert list(after.frame["timestamp"]) == list(at_last.frame["timestamp"][18:])
    np.testing.assert_allclose(after.frame["p50"].to_numpy(), at_last.frame["p50"].to_numpy()[18:], rtol=1e-9)
    assert any("the last reading of 'late' is 18 h before the issue time 2017-04-21 00:00 UTC: forecast issued at "
               "the last reading (2017-04-20 06:00 UTC) for the same target hours, horizons 19-42" in w
               for w in after.warnings), after.warnings
    near = client.forecast(TENANT, "late", horizon=24, as_of=pd.Timestamp("2017-04-20 08:00", tz="UTC"))
    assert not any("forecast issued at the last reading" in w for w in near.warnings)  # 2 h: within the TTL
    week = client.forecast(TENANT, "late", horizon=168, as_of=pd.Timestamp("2017-04-21", tz="UTC"))
    assert len(week.frame) == 168 and not any("forecast issued at the last reading" in w for w in week.warnings)

def test_weather_cells_missing_in_a_file_are_null_and_never_erase_a_stored_value(stack, tmp_path):
    from warehouse.db import connect

    path = tmp_path / "w.csv"
    path.write_text("timestamp,temperature,humidity,wind_speed\n"
                    "2017-04-01T01:00:00Z,10.5,70,\n"  # no wind speed: the row's other values load
                    "2017-04-01T02:00:00Z,,71,3.5\n"
                    "2017-04-01T03:00:00Z,,,\n")  # nothing at all: rejected
    report = ingest_weather(stack, path, "wx-nulls", period_ending=timedelta(hours=1))
    assert (report.inserted, report.rejected) == (2, 1) and report.missing == {"temperature": 1, "wind_speed": 1}
    path.write_text("timestamp,temperature,humidity,wind_speed\n"
                    "2017-04-01T01:00:00Z,,70,2.0\n")  # a later file without the temperature
    again = ingest_weather(stack, path, "wx-nulls", period_ending=timedelta(hours=1))
    assert again.updated == 1
    with connect(stack) as conn:
        rows = conn.execute("SELECT ts, temperature, humidity, wind_speed FROM weather WHERE site_id = 'wx-nulls' "
                            "ORDER BY ts").fetchall()
    assert [(r[0].isoformat(), *r[1:]) for r in rows] == [  # hour-ending labels stored as period starts
        ("2017-04-01T00:00:00+00:00", 10.5, 70.0, 2.0), ("2017-04-01T01:00:00+00:00", None, 71.0, 3.5)]
