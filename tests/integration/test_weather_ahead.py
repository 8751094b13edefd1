"""Weather forecasts for the target hour as load-forecaster inputs (registry/target_weather.py, the service
forecast_weather_ahead), on a Tetouan slice with its observed weather and archived forecasts for its last days:
training rows take the archived forecast issued at or before their issue time, else the observed weather with
a forecast's error (or without it, as the oracle); serving takes the stored forecast issued by the issue time
or the caller's; a forecast issued later never reaches an earlier row; bad input is one clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidArgumentError
from inference import features as feats
from inference.client import Client
from registry import lifecycle, train_forecast, training_data
from registry.target_weather import training_columns
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.covariates import ingest_forecasts
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT, SITE, SERVICE = "wxa", "wxa-site", "forecast_weather_ahead"
SPLIT = training_data.SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
FAST = train_forecast.BoosterConfig(num_boost_round=40)
OFFSET = 0.5  # archived forecast = observed temperature + OFFSET: tells archived from observed rows
ARCHIVE_FROM = pd.Timestamp("2017-01-20T00:00Z")  # issues at 00:00 and 12:00 from here, 48 h ahead


@pytest.fixture(scope="module")
def loaded(stack, store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wxa")
    tet = tetouan_slice(tmp / "t.csv", "2017-01-01", "2017-01-29")
    ingest_readings(stack, tet, TENANT, wide=True, site=SITE, columns="zone1=zone1_power_consumption")
    ingest_weather(stack, tet, SITE, columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    observed = hourly_temperature(tet)
    rows = []
    for issue in pd.date_range(ARCHIVE_FROM, "2017-01-28T12:00Z", freq="12h"):
        for h in range(1, 49):
            target = issue + pd.Timedelta(hours=h)
            if target in observed.index:
                rows.append((issue, target, observed[target] + OFFSET))
    pd.DataFrame(rows, columns=["issue_time", "target_time", "temperature"]).to_csv(tmp / "fc.csv", index=False)
    report = ingest_forecasts(stack, tmp / "fc.csv", SITE)
    assert report.inserted == len(rows) and not report.rejected
    return observed


def hourly_temperature(path) -> pd.Series:
    df = pd.read_csv(path, parse_dates=["timestamp"])
    t = df.set_index(pd.DatetimeIndex(df["timestamp"]).tz_localize("UTC"))["temperature"]
    return t.resample("h").mean()  # by hour start, as weather_hourly


def rows_at(issue: str, hours: int = 24) -> pd.DataFrame:
    t = pd.Timestamp(issue)
    return pd.DataFrame({"asset_id": "zone1", "issue_time": [t] * hours,
                         "target_time": [t + pd.Timedelta(hours=h) for h in range(1, hours + 1)]})


def test_training_rows_take_the_archived_forecast_else_the_observed_weather_with_a_forecast_error(
        stack, store, loaded):
    early, late = rows_at("2017-01-10T06:00Z"), rows_at("2017-01-22T05:00Z")
    observed_early = loaded.reindex(early["target_time"] - pd.Timedelta(hours=1)).to_numpy()
    got, counts = training_columns(stack, store, TENANT, early, ["temperature"])
    error = got["target_temperature"] - observed_early
    assert counts == {"archived": 0, "observed": 24, "missing": 0}
    assert 0.2 < np.abs(error).mean() < 3.0  # a day-ahead forecast's error, not the observed value itself
    oracle, _ = training_columns(stack, store, TENANT, early, ["temperature"], mode="oracle")
    np.testing.assert_allclose(oracle["target_temperature"], observed_early)
    # the 00:00 issue of the 22nd is the latest at or before 05:00: its value is observed + OFFSET
    got, counts = training_columns(stack, store, TENANT, late, ["temperature"])
    assert counts["archived"] == 24
    np.testing.assert_allclose(got["target_temperature"],
                               loaded.reindex(late["target_time"] - pd.Timedelta(hours=1)).to_numpy() + OFFSET)


def test_a_forecast_issued_after_the_row_never_reaches_it(stack, store, loaded, tmp_path):
    rows = rows_at("2017-01-23T03:00Z", 12)
    before, _ = training_columns(stack, store, TENANT, rows, ["temperature"])
    later_rows = rows_at("2017-01-23T04:00Z", 12)
    late = pd.DataFrame({"issue_time": "2017-01-23T04:00:00Z", "temperature": 40.0,
                         "target_time": (later_rows["target_time"] - pd.Timedelta(hours=1)).dt.strftime(
                             "%Y-%m-%dT%H:%M:%SZ")})
    late.to_csv(tmp_path / "late.csv", index=False)
    assert ingest_forecasts(stack, tmp_path / "late.csv", SITE).inserted == 12
    after, _ = training_columns(stack, store, TENANT, rows, ["temperature"])
    np.testing.assert_array_equal(after["target_temperature"], before["target_temperature"])
    later, _ = training_columns(stack, store, TENANT, later_rows, ["temperature"])
    assert (later["target_temperature"] == 40.0).all()  # issued by 04:00: it is the forecast from then on


@pytest.fixture(scope="module")
def model(stack, store, loaded):
    result = train_forecast.train(stack, store, TENANT, service=SERVICE, name="wxa_forecaster", split=SPLIT,
                                  boosting=FAST)
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), result.model_id, "production")
    return result


def test_the_model_reads_the_target_hour_weather_and_serves_the_stored_or_the_callers_forecast(
        stack, store, model):
    assert {"target_temperature", "target_humidity"} <= set(_features(stack, model))
    client = Client(stack)
    t = pd.Timestamp("2017-01-25T06:00Z")
    stored = client.forecast(TENANT, "zone1", 24, model=model.model_id, as_of=t.to_pydatetime())
    assert not any("no weather forecast" in w for w in stored.warnings)
    src = feats.AssetSource(stack, store, TENANT, "zone1")
    inputs = feats.forecast_inputs(src, SERVICE, 24, t.to_pydatetime(), t)
    assert np.isfinite(inputs.columns["target_temperature"]).all()
    mine = {"temperature": list(np.linspace(30, 35, 24))}
    supplied = client.forecast(TENANT, "zone1", 24, model=model.model_id, as_of=t.to_pydatetime(),
                               weather_forecast=mine)
    assert any("supplied by the caller" in w for w in supplied.warnings)
    inputs = feats.forecast_inputs(src, SERVICE, 24, t.to_pydatetime(), t,
                                   weather=pd.DataFrame(mine, index=inputs.target_start))
    np.testing.assert_allclose(inputs.columns["target_temperature"], mine["temperature"])
    # before the archive starts nothing was issued: the inputs are missing and the warning says so
    early = client.forecast(TENANT, "zone1", 24, model=model.model_id, as_of=pd.Timestamp("2017-01-12T00:00Z"))
    assert any("no weather forecast for 24 of 24 target hours" in w for w in early.warnings)


def _features(stack, model) -> list[str]:
    import mlflow

    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    return mlflow.get_run(model.run_id).data.params["features"].split(",")


@pytest.mark.parametrize("bad, message", [
    ({"temperatur": [1.0] * 24}, "unknown variable(s) 'temperatur'"),
    ({"temperature": [1.0] * 23}, "has 23 values; give one per target hour (24)"),
    ({"humidity": [150.0] * 24}, "value 150 at"),
    ({"temperature": ["warm"] * 24}, "value 'warm' is not a number"),
])
def test_a_bad_weather_forecast_is_one_clear_error(stack, model, bad, message):
    with pytest.raises(InvalidArgumentError) as e:
        Client(stack).forecast(TENANT, "zone1", 24, model=model.model_id, weather_forecast=bad)
    assert message in str(e.value)


def test_a_model_without_target_weather_refuses_a_weather_forecast(stack, store, loaded):
    plain = train_forecast.train(stack, store, TENANT, service="forecast_load", name="wxa_plain", split=SPLIT,
                                 boosting=FAST)
    with pytest.raises(InvalidArgumentError, match="reads no weather forecast for the target hours"):
        Client(stack).forecast(TENANT, "zone1", 24, model=plain.model_id, weather_forecast={"temperature": [1] * 24})


def test_the_cli_takes_a_weather_forecast_file(stack, model, env, tmp_path):
    frame = pd.DataFrame({"target_time": pd.date_range("2017-01-29T00:00Z", periods=24, freq="h").strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "temperature": 20.0})
    frame.to_csv(tmp_path / "wx.csv", index=False)
    out = ems("forecast", "-t", TENANT, "--asset", "zone1", "--model", model.model_id, "--weather-forecast",
              str(tmp_path / "wx.csv"), "--json", env=env)
    import json

    doc = json.loads(out.stdout)
    assert any("supplied by the caller" in w for w in doc["warnings"])
    bad = ems("forecast", "-t", TENANT, "--asset", "zone1", "--weather-forecast", str(tmp_path / "none.csv"), env=env,
              check=False)
    assert bad.returncode != 0 and "cannot read it as CSV" in bad.stderr


def test_online_and_point_in_time_reads_of_the_service_leave_the_target_hour_view_out(stack, store, loaded):
    """Its target-hour weather is per (issue, target) hour; a read at one time returns the other 16 features."""
    from warehouse.point_in_time import features_at
    from warehouse.store import online_features

    online = online_features(stack, SERVICE, TENANT, ["zone1"], store=store)
    assert "lag_1h" in online.columns and "temperature" not in online.columns and len(online.columns) == 2 + 16
    at = features_at(stack, store, SERVICE, TENANT, ["zone1"], pd.Timestamp("2017-01-20T00:00Z").to_pydatetime())
    assert at["lag_1h"].notna().all() and "temperature" not in at.columns
