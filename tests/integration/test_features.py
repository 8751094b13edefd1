"""Feast on the real stack: apply, refresh, materialize, SQL feature values against a pandas
reference, point-in-time correctness (no leakage) and online = offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from inference import history
from tests.helpers.data import pjm_slice, tetouan_slice
from tests.helpers.stack import ems, feast
from warehouse.db import connect
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.migrate import flavour
from warehouse.refresh import refresh
from warehouse.store import online_features

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT = "feat"
ZONES = "zone1=zone1_power_consumption,zone2=zone2_power_consumption"
WEATHER = "temperature,humidity,wind_speed,solar_irradiance=general_diffuse_flows"


@pytest.fixture(scope="module")
def loaded(stack, env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    tet = tetouan_slice(tmp / "tetouan.csv")
    ingest_readings(stack, tet, TENANT, wide=True, columns=ZONES, site="tet-test")
    ingest_weather(stack, tet, "tet-test", columns=WEATHER)
    ingest_readings(stack, pjm_slice(tmp / "aep.csv"), TENANT, wide=True, columns="aep=load_mw",
                    tz="America/New_York", period_ending=timedelta(hours=1))
    refresh(stack)
    # --start: other modules may have materialized past these (older) event times already
    ems("materialize", "--start", "2016-10-01T00:00:00", env=env)
    return stack


def _hourly_reference(settings, tenant: str, asset: str) -> pd.DataFrame:
    """Lags and rolling stats from the raw readings by the production pandas path (inference/history.py,
    what the SDK computes for a caller-supplied series): the SQL feature tables must agree with it."""
    with connect(settings) as conn:
        raw = pd.DataFrame(conn.execute("SELECT ts, value FROM readings WHERE tenant_id = %s AND asset_id = %s",
                                        (tenant, asset)).fetchall(), columns=["ts", "value"])
    buckets = history.hourly(pd.Series(raw["value"].to_numpy(), index=pd.DatetimeIndex(raw["ts"])))
    ref = history.load_features(buckets, buckets.index + pd.Timedelta("1h"))  # event time = end of the hour
    return ref.drop(columns=["temperature", "humidity", "solar_irradiance", "wind_speed"])


def _view(settings, view: str, tenant: str, asset: str) -> pd.DataFrame:
    from psycopg import sql

    with connect(settings) as conn:
        query = sql.SQL("SELECT * FROM {} WHERE tenant_id = %s AND asset_id = %s ORDER BY event_timestamp")
        cur = conn.execute(query.format(sql.Identifier(view)), (tenant, asset))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    return frame.set_index(pd.to_datetime(frame["event_timestamp"], utc=True))


def test_feature_services_have_the_seed_names_and_sizes(loaded, store, env):
    listed = feast("feature-services", "list", env=env).stdout
    for name in ("forecast_basic", "forecast_advanced", "anomaly_detection"):
        assert name in listed
    sizes = {fs.name: sum(len(p.features) for p in fs.feature_view_projections) for fs in store.list_feature_services()}
    assert sizes == {"forecast_basic": 6, "forecast_advanced": 13, "anomaly_detection": 7,  # the seeds
                     "forecast_load": 16, "forecast_weather": 20, "forecast_regional": 20,
                     "forecast_weather_ahead": 20,  # 16 + the target hour's weather forecast (4)
                     "forecast_load_30min": 9, "forecast_load_15min": 9}  # the step features (interval_minutes)
    tags = {fs.name: fs.tags.get("peer_inputs") for fs in store.list_feature_services()}
    assert [name for name, tag in tags.items() if tag] == ["forecast_regional"] and tags["forecast_regional"] == "site"
    feast("plan", env=env)


@pytest.mark.parametrize("asset", ["zone1", "aep"])
def test_sql_features_match_a_pandas_reference(loaded, asset):
    ref = _hourly_reference(loaded, TENANT, asset)
    rolling = _view(loaded, "load_rolling_features", TENANT, asset)
    got = _view(loaded, "load_lag_features", TENANT, asset).join(
        rolling.drop(columns=["tenant_id", "asset_id", "event_timestamp", "created"]))
    assert len(got) == len(ref) > 24 * 20
    for col in ref.columns:
        np.testing.assert_allclose(got[col].astype(float).to_numpy(), ref[col].to_numpy(), rtol=1e-9, err_msg=col)


def test_point_in_time_features_ignore_readings_at_or_after_t(loaded, store, tmp_path):
    tenant, service = "feat-pit", store.get_feature_service("forecast_advanced")
    tet = tetouan_slice(tmp_path / "t.csv")
    ingest_readings(loaded, tet, tenant, wide=True, columns="zone3=zone3_power_consumption", site="tet-test")
    refresh(loaded)
    t = pd.Timestamp("2017-01-20 12:00", tz="UTC")
    entities = pd.DataFrame({"tenant_id": tenant, "asset_id": "zone3",
                             "event_timestamp": [t, t + pd.Timedelta("2h")],
                             "target_time": [t, t + pd.Timedelta("2h")]})

    def features():
        return store.get_historical_features(entity_df=entities, features=service).to_df() \
            .sort_values("event_timestamp").reset_index(drop=True)

    before = features()
    # Rewrite every reading at or after T (x10) and add readings far after it.
    frame = pd.read_csv(tet)
    ts = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC")
    changed = frame[ts >= t].assign(zone3_power_consumption=lambda f: f["zone3_power_consumption"].astype(float) * 10)
    changed.to_csv(tmp_path / "changed.csv", index=False)
    report = ingest_readings(loaded, tmp_path / "changed.csv", tenant, wide=True,
                             columns="zone3=zone3_power_consumption")
    assert report.updated == len(changed) > 0
    refresh(loaded)
    after = features()
    load_cols = ["lag_1h", "lag_24h", "lag_168h", "historical_avg_24h", "historical_std_24h"]
    pd.testing.assert_frame_equal(before.loc[[0], load_cols], after.loc[[0], load_cols])
    # The change is visible to a later entity time, so the comparison above can fail.
    assert after.loc[1, "lag_1h"] == pytest.approx(before.loc[1, "lag_1h"] * 10)


def test_online_features_equal_the_latest_offline_row(loaded, store):
    online = online_features(loaded, "forecast_advanced", TENANT, ["zone1", "zone2", "aep"], store=store)
    online = online.set_index("asset_id")
    for asset in ("zone1", "zone2", "aep"):
        lags = _view(loaded, "load_lag_features", TENANT, asset).iloc[-1]
        rolling = _view(loaded, "load_rolling_features", TENANT, asset).iloc[-1]
        for col in ("lag_1h", "lag_24h", "lag_168h"):
            assert online.loc[asset, col] == pytest.approx(lags[col], nan_ok=True), (asset, col)
        for col in ("historical_avg_24h", "historical_std_24h"):
            assert online.loc[asset, col] == pytest.approx(rolling[col]), (asset, col)
    weather = _view(loaded, "asset_weather_features", TENANT, "zone1").iloc[-1]
    assert online.loc["zone1", "temperature"] == pytest.approx(weather["temperature"])
    assert np.isnan(online.loc["aep", "temperature"])  # no site, no weather


def test_calendar_features_are_in_the_asset_time_zone(loaded, store):
    at = datetime(2016, 11, 10, 18, 0, tzinfo=UTC)  # a Thursday; 13:00 in New York
    cal = online_features(loaded, "forecast_advanced", TENANT, ["aep", "zone1"], target_time=at,
                          store=store).set_index("asset_id")
    columns = ["hour_of_day", "day_of_week", "is_weekend", "month", "is_business_hours"]
    assert cal.loc["aep", columns].tolist() == [13, 3, 0, 11, 1]
    assert cal.loc["zone1", ["hour_of_day", "is_business_hours"]].tolist() == [18, 0]


def test_feast_materialize_incremental_continues_after_ems_materialize(loaded, env):
    out = feast("materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), env=env)
    assert "load_lags" in out.stdout


def test_ems_features_cli_prints_json_and_refuses_unknown_asset(loaded, env):
    doc = json.loads(ems("features", "--tenant", TENANT, "--asset", "zone1", "--service", "anomaly_detection",
                         "--json", env=env).stdout)
    assert set(doc[0]) >= {"hour_of_day", "day_of_week", "historical_avg_24h", "historical_std_24h", "max_24h",
                           "min_24h", "range_24h"}
    proc = ems("features", "--tenant", TENANT, "--asset", "nope", env=env, check=False)
    assert proc.returncode == 1 and "tenant 'feat' has no asset(s) 'nope'" in proc.stderr


def test_refresh_recomputes_only_the_touched_hours(loaded, tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("asset_id,timestamp,value\nzone1,2017-01-10T10:05:00Z,1\nzone1,2017-01-10T10:15:00Z,2\n")
    ingest_readings(loaded, path, TENANT)
    report = refresh(loaded)
    # one hourly bucket; its own row, the rows it is lag_24h / lag_168h of, the windows covering it
    # (TimescaleDB: plus other assets' buckets of that hour whose rematerialized means moved by an ulp)
    exact = flavour(loaded) == "plain"
    assert report.rows["readings_hourly"] == 1 if exact else report.rows["readings_hourly"] >= 1
    assert report.rows["load_lag_features"] == 3 if exact else report.rows["load_lag_features"] >= 3
    assert report.rows["load_rolling_features"] == 168 if exact else report.rows["load_rolling_features"] >= 168
    assert refresh(loaded).rows == {}


def test_an_asset_added_after_materialization_gets_its_time_zone_online(loaded, store, env, tmp_path):
    path = tmp_path / "ny.csv"
    path.write_text("asset_id,timestamp,value\nny-late,2016-11-10T10:00:00,5\nny-late,2016-11-10T11:00:00,6\n")
    ingest_readings(loaded, path, TENANT, tz="America/New_York")
    refresh(loaded)
    ems("materialize", env=env)  # incremental for hourly views; the static asset profile is reloaded whole
    at = datetime(2016, 11, 10, 18, 0, tzinfo=UTC)
    cal = online_features(loaded, "forecast_basic", TENANT, ["ny-late"], target_time=at, store=store)
    assert cal["hour_of_day"].tolist() == [13]  # New York, not UTC
