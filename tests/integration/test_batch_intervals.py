"""Batch scoring at 15/30/1440-minute intervals (issue 26, item 5) and the assets endpoints of the HTTP API, on the
suite's stack: `forecast_all`, `ems forecast --all-assets` and `POST /ai/forecast/batch` forecast each asset as
`Client.forecast(..., interval_minutes=N)` does (a 30-minute model, 2 steps an hour; the hourly model rolled up to
local days), name the asset whose readings are coarser than the interval with the single call's error and still
forecast the others, and refuse to put non-hourly rows in the hourly forecast log. `GET/PUT /ai/assets` read and
write what `ems assets set/list` do, with the CLI's messages, and keep to the token's tenant."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.errors import InvalidArgumentError
from core.names import InvalidIntervalError
from tests.helpers.api import Keys, call, jwks_server, serving
from tests.helpers.data import TETOUAN, promoted_30min_model, tetouan_slice
from tests.helpers.stack import TEST_PORTS, ems
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT, OTHER = "batch-steps", "batch-other"
API_PORT = TEST_PORTS["mlflow"] + 21  # test_api.py +3..+5, contract +6/+7, telemetry +8..+10, curl +11, jobs +15/+16
JWKS_PORT = TEST_PORTS["mlflow"] + 22
COARSE = "h1"  # hourly readings: coarser than 30 minutes


def _logged(settings) -> int:
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        return conn.execute("SELECT count(*) FROM forecast_log WHERE tenant_id = %s", (TENANT,)).fetchone()[0]


@pytest.fixture(scope="module")
def trained(stack, store, tmp_path_factory):
    """zone2: five and a half weeks of 10-minute Tetouan readings with a 30-minute model (few rounds) in production;
    h1 and pv1: two days of hourly readings (zone1's hourly means)."""
    tmp = tmp_path_factory.mktemp("batch-steps")
    ingest_readings(stack, tetouan_slice(tmp / "t.csv", "2017-05-01", "2017-06-08"), TENANT, wide=True,
                    columns="zone2=zone2_power_consumption")
    raw = pd.read_csv(TETOUAN, usecols=["timestamp", "zone1_power_consumption"], parse_dates=["timestamp"])
    raw = raw[(raw["timestamp"] >= "2017-06-06") & (raw["timestamp"] < "2017-06-08")]
    hourly = raw.set_index("timestamp")["zone1_power_consumption"].resample("1h").mean()
    rows = pd.concat([pd.DataFrame({"asset_id": a, "timestamp": hourly.index.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "value": hourly.to_numpy()}) for a in (COARSE, "pv1")])
    rows.to_csv(tmp / "hourly.csv", index=False)
    ingest_readings(stack, tmp / "hourly.csv", TENANT)
    refresh(stack)
    return promoted_30min_model(stack, store, TENANT)


def _coarse_error(settings) -> str:
    """What the single-asset call says for the hourly asset at 30 minutes."""
    from inference import Client

    with pytest.raises(InvalidIntervalError) as e:
        Client(settings).forecast(TENANT, COARSE, horizon=2, interval_minutes=30)
    return str(e.value)


def test_a_30_minute_batch_scores_2_steps_an_hour_with_the_step_model_and_names_the_coarse_asset(trained, stack,
                                                                                                  store):
    from inference import Client
    from inference.batch import forecast_all

    run = forecast_all(stack, TENANT, horizon=3, engine="local", log=False, store=store, interval_minutes=30)
    assert run.model_id == trained.model_id and run.model_id.startswith(f"{TENANT}:load_forecaster_30min:")
    assert run.interval_minutes == 30 and not run.logged
    message = _coarse_error(stack)
    assert message == (f"interval_minutes=30 is finer than asset '{COARSE}''s data: its readings come every 60 "
                       "minutes; use 60 or coarser")
    assert run.skipped == {COARSE: message, "pv1": message.replace(f"'{COARSE}'", "'pv1'")}
    rows = run.rows[run.rows["asset_id"] == "zone2"]
    t = pd.Timestamp("2017-06-08", tz=UTC)
    assert list(rows["timestamp"]) == list(pd.date_range(t, periods=6, freq="30min"))
    assert list(rows["horizon_steps"]) == [1, 2, 3, 4, 5, 6] and list(rows["horizon_h"]) == [1, 1, 2, 2, 3, 3]
    assert (rows["feature_time"] == t).all() and (rows["source"] == "online").all()
    single = Client(stack).forecast(TENANT, "zone2", horizon=3, interval_minutes=30).frame
    for c in ("point", "p10", "p50", "p90"):
        np.testing.assert_allclose(rows[c].to_numpy(), single[c].to_numpy(), rtol=1e-12, err_msg=c)
    with pytest.raises(InvalidArgumentError, match="interval_minutes=30 cannot go to the forecast log: it holds "
                                                   "hourly rows only"):
        forecast_all(stack, TENANT, horizon=3, log=True, store=store, interval_minutes=30)
    with pytest.raises(InvalidArgumentError, match="engine='spark' with interval_minutes=30 is not supported"):
        forecast_all(stack, TENANT, horizon=3, engine="spark", log=False, store=store, interval_minutes=30)
    assert _logged(stack) == 0  # nothing went to the log


def test_the_cli_batch_at_30_minutes_is_not_logged_and_refuses_log(trained, stack, env, tmp_path):
    out = ems("forecast", "--tenant", TENANT, "--all-assets", "--horizon", "2", "--interval-minutes", "30",
              "--out", str(tmp_path), "--json", env=env).stdout
    doc = json.loads(out)
    assert doc["interval_minutes"] == 30 and doc["model_id"] == trained.model_id and doc["assets"] == 1
    assert doc["rows"] == 4 and doc["logged"] is False and set(doc["skipped"]) == {COARSE, "pv1"}
    assert doc["skipped"][COARSE] == _coarse_error(stack)
    parquet = pd.read_parquet(tmp_path / f"tenant={TENANT}" / f"{trained.model_id.replace(':', '_')}_30min.parquet")
    assert list(parquet.loc[parquet["error"].isna(), "horizon_steps"]) == [1, 2, 3, 4]
    refused = ems("forecast", "--tenant", TENANT, "--all-assets", "--horizon", "2", "--interval-minutes", "30", "--log",
                  env=env, check=False)
    assert refused.returncode == 1 and "interval_minutes=30 cannot go to the forecast log" in " ".join(
        refused.stderr.split())
    single = ems("forecast", "--tenant", TENANT, "--asset", "zone2", "--horizon", "2", "--interval-minutes", "30",
                 "--log", env=env, check=False)
    assert single.returncode == 1 and "cannot go to the forecast log" in " ".join(single.stderr.split())
    assert _logged(stack) == 0


def test_a_daily_batch_rolls_the_hourly_model_up_to_local_days(trained, stack, store):
    """An hourly model on zone2 (few rounds) in production: the 1440 batch gives each whole day of the horizon as the
    single call does, and is not logged."""
    from inference import Client
    from inference.batch import forecast_all
    from registry import lifecycle
    from registry import train_forecast as tf
    from registry.training_data import SplitConfig

    hourly = tf.train(stack, store, TENANT, ["zone2"], service="forecast_load",
                      split=SplitConfig(history_days=30, holdout_days=7, gap_share=0.0),
                      boosting=tf.BoosterConfig(num_boost_round=20, calibration_days=0))
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), hourly.model_id, "production", force=True,
                      reason="test model (few rounds)")
    run = forecast_all(stack, TENANT, horizon=60, log=False, store=store, assets=["zone2"], interval_minutes=1440)
    assert run.model_id == hourly.model_id and run.skipped == {}
    single = Client(stack).forecast(TENANT, "zone2", horizon=60, interval_minutes=1440).frame
    assert list(run.rows["timestamp"]) == [pd.Timestamp("2017-06-08", tz=UTC), pd.Timestamp("2017-06-09", tz=UTC)]
    assert list(run.rows["horizon_h"]) == [24, 48] and list(run.rows["horizon_steps"]) == [1, 2]
    np.testing.assert_allclose(run.rows["p50"].to_numpy(), single["p50"].to_numpy(), rtol=1e-12)
    with pytest.raises(InvalidIntervalError, match=f"model {hourly.model_id} forecasts at interval_minutes=60, "
                                                    "not 30"):
        forecast_all(stack, TENANT, horizon=2, log=False, store=store, model=hourly.model_id, interval_minutes=30)
    assert _logged(stack) == 0


@pytest.fixture(scope="module")
def api(trained, stack, env, tmp_path_factory):
    keys = Keys()
    tmp = tmp_path_factory.mktemp("batch-steps-api")
    with jwks_server(keys, JWKS_PORT) as jwks_url, \
            serving({**os.environ, **env}, API_PORT, tmp / "serve.log", jwks_url=jwks_url) as base:
        yield base, keys


def test_the_http_batch_at_30_minutes_lists_the_coarse_asset_in_errors(api, trained, stack):
    base, keys = api
    token = keys.token(TENANT, ["forecaster"])
    body = {"tenant_id": TENANT, "asset_ids": ["zone2", COARSE], "horizon_hours": 2, "interval_minutes": 30}
    r = call("POST", f"{base}/ai/forecast/batch", token, json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["interval_minutes"] == 30 and [f["asset"] for f in doc["forecasts"]] == ["zone2"]
    points = doc["forecasts"][0]["forecast"]
    assert [p["timestamp"][:16] for p in points] == ["2017-06-08T00:00", "2017-06-08T00:30", "2017-06-08T01:00",
                                                     "2017-06-08T01:30"]
    assert [p["horizon_steps"] for p in points] == [1, 2, 3, 4] and doc["forecasts"][0]["model_id"] == trained.model_id
    assert doc["errors"] == [{"asset_id": COARSE, "code": "invalid_interval", "message": _coarse_error(stack)}]
    logged = call("POST", f"{base}/ai/forecast/batch", token, json={**body, "log": True})
    assert logged.status_code == 422 and "interval_minutes=30 cannot go to the forecast log" in logged.json()["message"]
    single = call("POST", f"{base}/ai/forecast", token, json={"tenant_id": TENANT, "asset_id": "zone2",
                                                              "interval_minutes": 30, "log": True})
    assert single.status_code == 422 and single.json()["code"] == "invalid_argument"
    assert _logged(stack) == 0
    other = call("POST", f"{base}/ai/forecast/batch", keys.token(OTHER, ["forecaster"]), json=body)
    assert other.status_code == 403 and f"may not act for tenant '{TENANT}'" in other.json()["message"]


def test_put_then_get_an_asset_and_read_it_back_through_the_cli(api, env):
    base, keys = api
    admin, reader = keys.token(TENANT, ["model_admin", "ai_user"]), keys.token(TENANT, ["ai_user"])
    put = call("PUT", f"{base}/ai/assets/pv1", admin, json={
        "tenant_id": TENANT, "kind": "generation", "capacity": 2.5, "technology": "pv", "latitude": 35.57,
        "longitude": -5.37})
    assert put.status_code == 200, put.text
    want = {"tenant_id": TENANT, "asset_id": "pv1", "kind": "generation", "capacity": 2.5, "technology": "pv",
            "latitude": 35.57, "longitude": -5.37, "step_minutes": 60}
    assert {k: put.json()[k] for k in want} == want
    got = call("GET", f"{base}/ai/assets/pv1", reader)
    assert got.status_code == 200 and got.json() == put.json()
    listed = {a["asset_id"]: a for a in call("GET", f"{base}/ai/assets", reader).json()}  # the token's tenant
    assert set(listed) == {"zone2", COARSE, "pv1"} and listed["pv1"] == put.json()
    assert listed["zone2"]["step_minutes"] == 10 and listed["zone2"]["kind"] == "consumption"
    cli = {a["asset_id"]: a for a in json.loads(ems("assets", "list", "--tenant", TENANT, "--json", env=env).stdout)}
    assert (cli["pv1"]["latitude"], cli["pv1"]["longitude"], cli["pv1"]["capacity"], cli["pv1"]["step_minutes"]) == (
        35.57, -5.37, 2.5, 60)
    # the CLI's write, read back through the API
    ems("assets", "set", "--tenant", TENANT, "--asset", "pv1", "--kind", "generation", "--capacity", "3",
        "--technology", "pv", "--latitude", "35.6", "--longitude", "-5.4", env=env)
    assert call("GET", f"{base}/ai/assets/pv1", reader).json()["latitude"] == 35.6


@pytest.mark.parametrize(("body", "cli"), [
    ({"kind": "generation", "capacity": 2.5, "technology": "pv", "latitude": 95, "longitude": 0},
     ["--kind", "generation", "--capacity", "2.5", "--technology", "pv", "--latitude", "95", "--longitude", "0"]),
    ({"kind": "generation", "capacity": 0, "technology": "pv"},
     ["--kind", "generation", "--capacity", "0", "--technology", "pv"]),
    ({"kind": "generation", "capacity": 2, "technology": "hydro"},
     ["--kind", "generation", "--capacity", "2", "--technology", "hydro"]),
    ({"kind": "battery"}, ["--kind", "battery"]),
    ({"kind": "market", "capacity": 5}, ["--kind", "market", "--capacity", "5"]),
    ({"kind": "generation", "capacity": 2, "technology": "wind", "latitude": 10},
     ["--kind", "generation", "--capacity", "2", "--technology", "wind", "--latitude", "10"]),
])
def test_a_bad_put_is_one_422_with_the_clis_message_and_writes_nothing(api, env, body, cli):
    base, keys = api
    admin = keys.token(TENANT, ["model_admin", "ai_user"])
    before = call("GET", f"{base}/ai/assets/{COARSE}", admin).json()
    r = call("PUT", f"{base}/ai/assets/{COARSE}", admin, json={"tenant_id": TENANT, **body})
    assert r.status_code == 422 and r.json()["code"] == "invalid_argument", r.text
    said = ems("assets", "set", "--tenant", TENANT, "--asset", COARSE, *cli, env=env, check=False)
    assert said.returncode == 1, said.stderr
    # the same message, but for how the value was given: JSON 95 is 95.0, the CLI's --latitude 95 the text '95'
    value = re.compile(r"\b(latitude|longitude)=('[^']*'|[-\d.]+)")
    assert value.sub(r"\1=V", " ".join(said.stderr.split())).endswith(value.sub(r"\1=V", r.json()["message"]))
    assert call("GET", f"{base}/ai/assets/{COARSE}", admin).json() == before


def test_assets_keep_to_the_tokens_tenant_and_role(api):
    base, keys = api
    other = keys.token(OTHER, ["model_admin", "ai_user"])
    for method, path, body in (("GET", f"/ai/assets?tenant_id={TENANT}", None),
                               ("GET", f"/ai/assets/{COARSE}?tenant_id={TENANT}", None),
                               ("PUT", f"/ai/assets/{COARSE}", {"tenant_id": TENANT, "kind": "market"})):
        r = call(method, f"{base}{path}", other, json=body)
        assert r.status_code == 403 and f"tenant '{OTHER}' may not act for tenant '{TENANT}'" in r.json()["message"]
    assert call("GET", f"{base}/ai/assets", other).json() == []  # its own tenant: no assets
    assert call("GET", f"{base}/ai/assets/{COARSE}", other).status_code == 404  # not in its tenant
    reader = call("PUT", f"{base}/ai/assets/{COARSE}", keys.token(TENANT, ["ai_user"]),
                  json={"tenant_id": TENANT, "kind": "market"})
    assert reader.status_code == 403 and "lacks role 'model_admin'" in reader.json()["message"]
    unknown = call("PUT", f"{base}/ai/assets/nope", keys.token(TENANT, ["model_admin"]),
                   json={"tenant_id": TENANT, "kind": "market"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_asset"
    assert call("GET", f"{base}/ai/assets/{COARSE}", keys.token(TENANT, ["ai_user"])).json()["kind"] == "consumption"
