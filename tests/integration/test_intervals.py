"""Intervals (issue 26, item 5) on the session's schema path: the asset keeps its native step, readings roll up
to 30-minute feature rows equal to a pandas reference, a late 10-minute reading moves its 30-minute row and the
online row after refresh + materialize, and an interval the asset's data cannot give is one clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.names import InvalidIntervalError
from tests.helpers.data import TETOUAN, promoted_30min_model, tetouan_slice
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh
from warehouse.steps import step_rows
from warehouse.store import materialize

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT = "intervals"


def _rows(settings, table: str, asset: str) -> int:
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s AND asset_id = %s",  # noqa: S608
                            (TENANT, asset)).fetchone()[0]


@pytest.fixture(scope="module")
def loaded(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intervals")
    ingest_readings(stack, tetouan_slice(tmp / "t.csv", "2017-06-01", "2017-06-11"), TENANT, wide=True,
                    columns="zone1=zone1_power_consumption")
    refresh(stack)
    return stack


def _reference(start: str, end: str) -> pd.DataFrame:
    """The 30-minute features computed in pandas from the 10-minute series."""
    raw = pd.read_csv(TETOUAN, parse_dates=["timestamp"])
    raw = raw[(raw["timestamp"] >= start) & (raw["timestamp"] < end)]
    s = raw.set_index(pd.DatetimeIndex(raw["timestamp"]).tz_localize(UTC))["zone1_power_consumption"]
    means = s.resample("30min").mean().dropna()
    means.index = means.index + pd.Timedelta(minutes=30)  # bucket end
    day = means.rolling("1D")  # buckets ending in (T - 1 d, T]
    start_1d = means.index - pd.Timedelta(days=1) + pd.Timedelta(minutes=30)  # the step starting 1 day before T
    return pd.DataFrame({"last_value": means, "lag_1d": means.reindex(start_1d).to_numpy(),
                         "avg_1d": day.mean(), "std_1d": day.std(), "max_1d": day.max(),
                         "avg_7d": means.rolling("7D").mean()})


def test_the_native_step_is_kept_and_readings_roll_up_to_30_minutes(loaded):
    with psycopg.connect(loaded.postgres.conninfo()) as conn:
        assert conn.execute("SELECT step_minutes FROM assets WHERE tenant_id = %s AND asset_id = 'zone1'",
                            (TENANT,)).fetchone()[0] == 10
        assert conn.execute("SELECT count(*) FROM readings WHERE tenant_id = %s", (TENANT,)).fetchone()[0] == 10 * 144
        got = step_rows(conn, TENANT, ["zone1"], 30).set_index("event_timestamp")
    ref = _reference("2017-06-01", "2017-06-11")
    assert len(got) == 10 * 48 and got.index.equals(ref.index)
    for column in ref.columns:
        np.testing.assert_allclose(got[column].to_numpy(), ref[column].to_numpy(), rtol=1e-9, err_msg=column)
    assert (got["n_readings"] == 3).all()
    assert _rows(loaded, "load_features_15min", "zone1") == 0  # 10-minute readings do not roll up to 15 minutes
    assert _rows(loaded, "load_lag_features", "zone1") == 10 * 24  # the hourly tables are as they were


def test_a_late_reading_moves_its_30_minute_row_and_redis(loaded, store, tmp_path):
    materialize(loaded, end=datetime(2017, 6, 11, tzinfo=UTC), store=store)
    entity = [{"tenant_id": TENANT, "asset_id": "zone1"}]
    before = store.get_online_features(features=["load_30min:last_value"], entity_rows=entity).to_dict()
    with psycopg.connect(loaded.postgres.conninfo()) as conn:
        all_before = step_rows(conn, TENANT, ["zone1"], 30)
    last = all_before.iloc[-1]
    assert before["last_value"] == [pytest.approx(last["last_value"])]
    late = tmp_path / "late.csv"  # a correction of the last 10-minute reading (23:50) of 10 June
    pd.DataFrame({"asset_id": ["zone1"], "timestamp": ["2017-06-10T23:50:00"], "value": [90_000.0]}).to_csv(
        late, index=False)
    ingest_readings(loaded, late, TENANT)
    refresh(loaded)
    with psycopg.connect(loaded.postgres.conninfo()) as conn:
        all_after = step_rows(conn, TENANT, ["zone1"], 30)
        after = all_after.iloc[-1]
        step = conn.execute("SELECT step_minutes FROM assets WHERE tenant_id = %s AND asset_id = 'zone1'",
                            (TENANT,)).fetchone()[0]
    assert step == 10  # a single late reading keeps the recorded step
    # no leak: every row ending at or before the reading's time (23:50) is as it was, bit for bit
    pd.testing.assert_frame_equal(all_after.iloc[:-1], all_before.iloc[:-1])
    assert (all_after.iloc[-1]["event_timestamp"], all_after.iloc[-1]["n_readings"]) == (
        all_before.iloc[-1]["event_timestamp"], 3)
    assert after["event_timestamp"] == pd.Timestamp("2017-06-11", tz=UTC)
    assert after["last_value"] == pytest.approx((3 * last["last_value"] - _reading("2017-06-10 23:50") + 90_000) / 3)
    report = materialize(loaded, end=datetime(2017, 6, 11, tzinfo=UTC), store=store)
    assert report.written["load_30min"] == 1 and report.written["load_lags"] == 1
    online = store.get_online_features(features=["load_30min:last_value"], entity_rows=entity).to_dict()
    assert online["last_value"] == [pytest.approx(after["last_value"])]


def _reading(ts: str) -> float:
    raw = pd.read_csv(TETOUAN, parse_dates=["timestamp"])
    return float(raw.loc[raw["timestamp"] == pd.Timestamp(ts), "zone1_power_consumption"].iloc[0])


@pytest.mark.parametrize(("interval", "message"), [
    (15, "interval_minutes=15 does not roll up from asset 'zone1''s 10-minute readings (not a multiple of 10); "
         "use 30, 60, 1440"),
    (45, "interval_minutes=45 is not supported; allowed: 15, 30, 60, 1440"),
    ("30", "interval_minutes='30' is not supported; allowed: 15, 30, 60, 1440"),
])
def test_an_interval_the_data_cannot_give_is_one_clear_error(loaded, interval, message):
    from inference import Client

    with pytest.raises(InvalidIntervalError) as e:
        Client(loaded).forecast(TENANT, "zone1", horizon=2, interval_minutes=interval)
    assert str(e.value) == message


@pytest.fixture(scope="module")
def trained(loaded, store, tmp_path_factory):
    """zone2: five and a half weeks of 10-minute readings, a 30-minute model trained on them (few rounds) and
    promoted, the step rows materialized."""
    tmp = tmp_path_factory.mktemp("intervals-train")
    ingest_readings(loaded, tetouan_slice(tmp / "t.csv", "2017-05-01", "2017-06-08"), TENANT, wide=True,
                    columns="zone2=zone2_power_consumption")
    refresh(loaded)
    return promoted_30min_model(loaded, store, TENANT)


def test_a_30_minute_model_carries_its_interval_and_is_scored_against_seasonal_naive(trained, loaded):
    from registry import lifecycle

    info = lifecycle.client(loaded.mlflow_tracking_uri).get_model_version(f"{TENANT}.load_forecaster_30min", 1)
    assert info.tags["interval_minutes"] == "30" and info.tags["feast.feature_service"] == "forecast_load_30min"
    m = trained.metrics
    assert m["dayahead_rows"] >= 6 * 48  # a forecast a day of the held-out week, horizons 1..48 steps
    for key in ("dayahead_mae", "dayahead_naive_1d_mae", "dayahead_naive_7d_mae", "dayahead_coverage_p10_p90"):
        assert np.isfinite(m[key])
    assert len(trained.worst_days) == 3
    from inference.models import ModelCache  # the band's calibration travels with the version

    model = ModelCache(loaded.mlflow_tracking_uri, settings=loaded).version(trained.model_id).python_model
    assert model.calibration["days"] == 7 and len(model.calibration["by_bucket"]) == 4
    assert sum(model.calibration["rows"]) > 0 and all(np.isfinite(model.calibration["by_bucket"]))


def test_the_sdk_serves_30_minute_steps_from_redis_as_trained(trained, loaded):
    from inference import Client
    from registry.step_design import ISSUE, expand

    result = Client(loaded).forecast(TENANT, "zone2", horizon=3, interval_minutes=30)
    f = result.frame
    t = pd.Timestamp("2017-06-08", tz=UTC)
    assert result.source == "online" and result.feature_time == t and result.model_id.endswith(":1")
    assert list(f["timestamp"]) == list(pd.date_range(t, periods=6, freq="30min"))
    assert list(f["horizon_steps"]) == [1, 2, 3, 4, 5, 6] and list(f["horizon_h"]) == [1, 1, 2, 2, 3, 3]
    assert (f["p10"] <= f["p50"]).all() and (f["p50"] <= f["p90"]).all()
    with psycopg.connect(loaded.postgres.conninfo()) as conn:  # the same rows built from the warehouse
        rows = step_rows(conn, TENANT, ["zone2"], 30)
    issue = rows[rows["event_timestamp"] == t][["event_timestamp", *ISSUE]].rename(
        columns={"event_timestamp": "issue_time"})
    frame = expand(issue, rows.set_index("event_timestamp")["last_value"], np.arange(1, 7), 30, "UTC")
    from inference.models import ModelCache

    model = ModelCache(loaded.mlflow_tracking_uri, settings=loaded).version(result.model_id).python_model
    np.testing.assert_allclose(f["p50"].to_numpy(), model.predict(None, frame)["p50"].to_numpy(), rtol=1e-9)
    past = Client(loaded).forecast(TENANT, "zone2", horizon=1, interval_minutes=30, as_of="2017-06-05T10:40:00")
    assert past.source == "offline" and past.feature_time == pd.Timestamp("2017-06-05 10:30", tz=UTC)
    with pytest.raises(InvalidIntervalError, match="load_forecaster_30min:1 forecasts at interval_minutes=30, not 60"):
        Client(loaded).forecast(TENANT, "zone2", horizon=1, model="load_forecaster_30min")  # hourly with it


def test_the_cli_takes_interval_minutes(trained, loaded, env):
    from tests.helpers.stack import ems

    out = ems("forecast", "--tenant", TENANT, "--asset", "zone2", "--horizon", "1", "--interval-minutes", "30",
              "--json", env=env).stdout
    import json

    doc = json.loads(out)
    assert [r["timestamp"][:16] for r in doc["forecast"]] == ["2017-06-08T00:00", "2017-06-08T00:30"]


def test_daily_forecasts_average_the_hourly_model_over_whole_local_days(trained, loaded, store):
    """An hourly model on zone2 (few rounds): interval_minutes=1440 gives the complete UTC days of the horizon, each
    the mean of the hourly forecast's hours (a power series), with a band between independence and the sum of
    quantiles; a horizon without a whole day is one clear error."""
    from core.errors import InvalidRangeError
    from inference import Client
    from registry import lifecycle
    from registry import train_forecast as tf
    from registry.training_data import SplitConfig

    result = tf.train(loaded, store, TENANT, ["zone2"], service="forecast_load",
                      split=SplitConfig(history_days=60, holdout_days=7, gap_share=0.0),
                      boosting=tf.BoosterConfig(num_boost_round=20, calibration_days=0))
    lifecycle.promote(lifecycle.client(loaded.mlflow_tracking_uri), result.model_id, "production", force=True,
                      reason="test model (few rounds)")
    client = Client(loaded)
    hourly = client.forecast(TENANT, "zone2", horizon=60).frame
    days = client.forecast(TENANT, "zone2", horizon=60, interval_minutes=1440)
    f = days.frame
    assert list(f["timestamp"]) == [pd.Timestamp("2017-06-08", tz=UTC), pd.Timestamp("2017-06-09", tz=UTC)]
    assert list(f["hours"]) == [24, 24] and list(f["horizon_h"]) == [24, 48]
    np.testing.assert_allclose(f["p50"], [hourly["p50"][:24].mean(), hourly["p50"][24:48].mean()], rtol=1e-9)
    half = (f["p90"] - f["p50"]).to_numpy()
    hours = (hourly["p90"] - hourly["p50"]).to_numpy()
    assert half[0] <= hours[:24].mean() + 1e-6  # no wider than the sum of the hours' quantiles
    assert half[0] >= np.sqrt((hours[:24] ** 2).sum()) / 24 - 1e-6  # wider than independent hours
    assert any("daily mean of the hourly forecast over 2 complete local day(s)" in w for w in days.warnings)
    with pytest.raises(InvalidRangeError, match="interval_minutes=1440 with horizon=12 covers no whole local day"):
        client.forecast(TENANT, "zone2", horizon=12, interval_minutes=1440)


NAB_5MIN = TETOUAN.parent / "nab" / "realKnownCause" / "machine_temperature_system_failure.csv.gz"


def test_a_5_minute_nab_series_rolls_up_to_15_minutes_and_is_forecast_there(loaded, store, tmp_path):
    """25 days of NAB's machine temperature (5-minute readings): step 5 recorded, 15-minute rows equal a pandas
    resample (3 readings each), 30-minute rows too (5 divides 30); a 15-minute model (few rounds) serves 4 steps an
    hour from Redis."""
    from inference import Client
    from registry import lifecycle
    from registry.train_step import StepConfig, train

    raw = pd.read_csv(NAB_5MIN)
    raw = raw[(raw["timestamp"] >= "2013-12-03") & (raw["timestamp"] < "2013-12-28")]
    raw.to_csv(tmp_path / "nab.csv", index=False)
    ingest_readings(loaded, tmp_path / "nab.csv", TENANT, wide=True, columns="nab5=value")
    refresh(loaded)
    with psycopg.connect(loaded.postgres.conninfo()) as conn:
        rows = step_rows(conn, TENANT, ["nab5"], 15).set_index("event_timestamp")
        assert conn.execute("SELECT step_minutes FROM assets WHERE tenant_id = %s AND asset_id = 'nab5'",
                            (TENANT,)).fetchone()[0] == 5
    s = raw.set_index(pd.DatetimeIndex(raw["timestamp"]).tz_localize(UTC))["value"]
    ref = s.resample("15min").agg(["mean", "count"])
    ref = ref[ref["count"] > 0]
    ref.index = ref.index + pd.Timedelta(minutes=15)
    assert rows.index.equals(ref.index)
    np.testing.assert_allclose(rows["last_value"], ref["mean"], rtol=1e-9)
    assert (rows["n_readings"] == ref["count"]).all() and (ref["count"] == 3).mean() > 0.99
    assert _rows(loaded, "load_features_30min", "nab5") == len(s.resample("30min").count().loc[lambda c: c > 0])
    result = train(loaded, store, TENANT, 15, ["nab5"],
                   cfg=StepConfig(holdout_days=3, issue_every_h=12, num_boost_round=30, sampled_horizons=8))
    assert result.model_id == f"{TENANT}:load_forecaster_15min:1"
    lifecycle.promote(lifecycle.client(loaded.mlflow_tracking_uri), result.model_id, "production", force=True,
                      reason="test model (few rounds)")
    materialize(loaded, end=datetime(2013, 12, 28, tzinfo=UTC), store=store)
    f = Client(loaded).forecast(TENANT, "nab5", horizon=1, interval_minutes=15)
    t = pd.Timestamp("2013-12-28", tz=UTC)
    assert f.source == "online" and f.feature_time == t
    assert list(f.frame["timestamp"]) == list(pd.date_range(t, periods=4, freq="15min"))
