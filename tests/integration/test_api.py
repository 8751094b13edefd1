"""The AI Hub API (`ems serve`, a real uvicorn process) on the suite's stack, with bearer JWTs minted by
the test's own RSA key and verified against a JWKS the suite serves (the shape of an OIDC provider)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jwt
import pytest
import requests

from registry import lifecycle, train_forecast
from tests.helpers.api import AUDIENCE, FAST, SPLIT, call, served_keys, serving, trained_tenant
from tests.helpers.stack import TEST_PORTS, ems

pytestmark = pytest.mark.integration

A, B = "api-a", "api-b"
API_PORT = TEST_PORTS["mlflow"] + 3
JWKS_PORT = TEST_PORTS["mlflow"] + 4


keys = served_keys(JWKS_PORT)


@pytest.fixture(scope="module")
def api(stack, store, env, keys, tmp_path_factory):
    """Tenant A with four weeks of Tetouan load and weather and a promoted forecaster; the API as
    `ems serve` runs it, two workers."""
    tmp = tmp_path_factory.mktemp("api")
    trained = trained_tenant(stack, store, env, tmp, A, "tet-api", "2017-06-01", "2017-06-29")
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)
    with serving({**os.environ, **env}, API_PORT, tmp / "serve.log", jwks_url=keys.url) as base:
        yield base, trained.model_id


def test_health_and_ready_need_no_token_and_report_every_dependency(api):
    base, _ = api
    health = requests.get(f"{base}/health", timeout=10).json()
    assert health["status"] == "ok" and health["service"] == "ems-ai-hub"
    assert set(health["dependencies"]) == {"postgres", "redis", "s3", "mlflow"}
    assert all(d["healthy"] and d["latency_ms"] >= 0 for d in health["dependencies"].values())
    assert requests.get(f"{base}/ready", timeout=10).json() == {"ready": True, "down": []}
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()
    assert {"/ai/forecast", "/ai/anomaly", "/ai/explain", "/ai/models", "/health"} <= set(spec["paths"])


def test_a_forecaster_token_forecasts_its_own_tenant(api, keys):
    base, model_id = api
    r = call("POST", f"{base}/ai/forecast", keys.token(A, ["forecaster"]),
             json={"tenant_id": A, "asset_id": "zone1", "horizon_hours": 24})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_id"] == model_id and doc["forecast_type"] == "load" and doc["forecast_id"]
    assert len(doc["forecast"]) == 24 and doc["source"] == "online"
    assert all(row["p10"] <= row["p50"] <= row["p90"] for row in doc["forecast"])
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("bad", ["none", "expired", "other-key", "audience", "no-tenant", "missing"])
def test_bad_tokens_are_refused_with_401(api, keys, bad):
    base, _ = api
    body = {"tenant_id": A, "asset_id": "zone1"}
    token = {
        "none": jwt.encode({"sub": "x", "tenant_id": A, "realm_access": {"roles": ["forecaster"]}, "aud": AUDIENCE,
                            "exp": int(time.time()) + 300}, None, algorithm="none", headers={"kid": "test-key"}),
        "expired": keys.token(A, ["forecaster"], expires_in=-60),
        "other-key": keys.token(A, ["forecaster"], key=keys.other),
        "audience": keys.token(A, ["forecaster"], audience="someone-else"),
        "no-tenant": keys.token(None, ["forecaster"]),
        "missing": None,
    }[bad]
    r = call("POST", f"{base}/ai/forecast", token, json=body)
    assert r.status_code == 401 and r.json()["code"] == "auth" and "Traceback" not in r.text, r.text


def test_a_token_reaches_its_own_tenant_and_roles_only(api, keys):
    base, model_id = api
    other = call("POST", f"{base}/ai/forecast", keys.token(B, ["forecaster"]),
                 json={"tenant_id": A, "asset_id": "zone1"})
    assert other.status_code == 403 and f"tenant '{B}' may not act for tenant '{A}'" in other.json()["message"]
    reader = call("POST", f"{base}/ai/forecast", keys.token(A, ["ai_user"]), json={"tenant_id": A, "asset_id": "zone1"})
    assert reader.status_code == 403 and "lacks role 'forecaster'" in reader.json()["message"]
    assert call("GET", f"{base}/ai/models/{model_id}", keys.token(B, ["ai_user", "model_admin"])).status_code == 403
    assert call("GET", f"{base}/ai/models?tenant_id={A}", keys.token(B, ["ai_user"])).status_code == 403
    promote = call("PUT", f"{base}/ai/models/{model_id}/promote", keys.token(B, ["model_admin"]),
                   json={"to": "archived"})
    assert promote.status_code == 403
    mine = call("GET", f"{base}/ai/models", keys.token(A, ["ai_user"])).json()  # the token's tenant by default
    assert [(m["id"], m["serving"]) for m in mine] == [(model_id, True)]


@pytest.mark.parametrize(("body", "status", "code", "message"), [
    ({"horizon_hours": 0}, 422, "invalid_horizon", "horizon=0 is out of range 1..168"),
    ({"horizon_hours": 169}, 422, "invalid_horizon", "horizon=169 is out of range 1..168"),
    ({"forecast_type": "wind"}, 422, "invalid_request", "forecast_type 'wind' is not a forecast type; use one of "
                                                         "load, generation, price"),
    ({"forecast_type": "generation"}, 422, "invalid_argument", "asset 'zone1' of tenant 'api-a' is a consumption "
                                                               "meter: it has load forecasts, not "
                                                               "forecast_type='generation'"),
    ({"interval_minutes": 45}, 422, "invalid_request", "interval_minutes=45 is not supported; allowed: 15, 30, 60, "
                                                        "1440"),
    ({"interval_minutes": 15}, 422, "invalid_interval", "interval_minutes=15 "),  # finer than zone1's readings
    ({"asset_id": "nope"}, 404, "unknown_asset", "has no asset(s) 'nope'"),
    ({"model_name": f"{A}:load_forecaster:99"}, 404, "model_not_found", "does not exist"),
    ({"horizon_hours": "soon"}, 422, "invalid_request", "horizon_hours"),
])
def test_bad_forecast_requests_get_one_clear_error(api, keys, body, status, code, message):
    base, _ = api
    r = call("POST", f"{base}/ai/forecast", keys.token(A, ["forecaster"]),
             json={"tenant_id": A, "asset_id": "zone1", **body})
    assert r.status_code == status and r.json()["code"] == code and message in r.json()["message"], r.text


def test_a_forecast_type_the_asset_or_model_does_not_have_is_one_clear_error(api, keys, stack, tmp_path):
    """A generation unit (set with `ems assets set`) has generation forecasts: load is refused naming what it is;
    generation with the tenant's load model named is refused naming the model; without a model, there is no
    production generation_forecaster (404). A bad kind or capacity is one line from the CLI."""
    from tests.helpers.data import tetouan_slice
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh

    base, model_id = api
    ingest_readings(stack, tetouan_slice(tmp_path / "g.csv", "2017-06-01", "2017-06-02"), A, wide=True,
                    columns="gen1=zone2_power_consumption")
    refresh(stack)  # its hours exist, so only the kind or the model can refuse a forecast
    made = json.loads(ems("assets", "set", "--tenant", A, "--asset", "gen1", "--kind", "generation", "--capacity",
                          "16", "--technology", "wind", "--json").stdout)
    assert made == {"tenant": A, "asset": "gen1", "kind": "generation", "capacity": 16.0, "technology": "wind",
                    "latitude": None, "longitude": None}
    listed = {r["asset_id"]: r["kind"] for r in json.loads(ems("assets", "list", "--tenant", A, "--json").stdout)}
    assert listed == {"gen1": "generation", "zone1": "consumption"}
    token = keys.token(A, ["forecaster"])
    load = call("POST", f"{base}/ai/forecast", token, json={"tenant_id": A, "asset_id": "gen1"})
    assert load.status_code == 422 and load.json()["message"] == (
        "asset 'gen1' of tenant 'api-a' is a generation unit (wind, capacity 16): it has generation forecasts, "
        "not forecast_type='load'"), load.text
    named = call("POST", f"{base}/ai/forecast", token,
                 json={"tenant_id": A, "asset_id": "gen1", "forecast_type": "generation", "model_name": model_id})
    assert named.status_code == 422 and f"model {model_id} forecasts load, not generation" in named.json()["message"], \
        named.text
    default = call("POST", f"{base}/ai/forecast", token,
                   json={"tenant_id": A, "asset_id": "gen1", "forecast_type": "generation"})
    assert default.status_code == 404 and "generation_forecaster" in default.json()["message"], default.text
    for bad, message in ((["--kind", "battery"], "kind='battery' is not an asset kind; use one of consumption, "
                                                 "generation, market"),
                         (["--kind", "generation", "--capacity", "0", "--technology", "wind"],
                          "capacity=0.0 is not a positive number"),
                         (["--kind", "generation", "--capacity", "5", "--technology", "hydro"],
                          "technology='hydro' is not known; use one of wind, pv"),
                         (["--kind", "market", "--capacity", "5"], "a market asset has no capacity or technology")):
        proc = ems("assets", "set", "--tenant", A, "--asset", "gen1", *bad, check=False)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr
    assert json.loads(ems("assets", "list", "--tenant", A, "--json").stdout)[0]["capacity"] == 16.0  # unchanged
    for kind, message in (("price", "asset 'zone1' of tenant 'api-a' is a consumption meter: it has load forecasts, "
                                    "not forecast_type='price'"),
                          ("wind", "forecast_type='wind' is not a forecast type; use one of load, generation, price")):
        proc = ems("forecast", "--tenant", A, "--asset", "zone1", "--type", kind, check=False)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr


def test_anomaly_explain_and_the_model_lifecycle(api, keys):
    base, model_id = api
    explained = call("POST", f"{base}/ai/explain", keys.token(A, ["forecaster"]),
                     json={"tenant_id": A, "asset_id": "zone1", "horizon_hours": 1})
    assert explained.status_code == 200 and explained.json()["model_id"] == model_id, explained.text
    no_detector = call("POST", f"{base}/ai/anomaly", keys.token(A, ["anomaly_analyst"]),
                       json={"tenant_id": A, "asset_id": "zone1", "method": "forecast_residual", "lookback_hours": 24})
    assert no_detector.status_code == 200 and no_detector.json()["model_id"] == model_id, no_detector.text
    assert len(no_detector.json()["points"]) == 24
    admin = keys.token(A, ["model_admin", "ai_user"])
    refused = call("DELETE", f"{base}/ai/models/{model_id}", admin)
    assert refused.status_code == 422 and "pass --force" in refused.json()["message"]
    archived = call("PUT", f"{base}/ai/models/{model_id}/promote", admin, json={"to": "archived", "reason": "test"})
    assert archived.status_code == 200 and archived.json()["serving"] is False
    gone = call("POST", f"{base}/ai/forecast", keys.token(A, ["forecaster"]),
                json={"tenant_id": A, "asset_id": "zone1"})
    assert gone.status_code == 404 and "has no production version" in gone.json()["message"]
    back = call("PUT", f"{base}/ai/models/{model_id}/promote", admin, json={"to": "production", "force": True})
    assert back.status_code == 200 and back.json()["serving"] is True
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert 'ems_api_requests_total{method="PUT",route="/ai/models/{model_id}/promote",status="200"}' in metrics


def test_batch_forecast_lists_each_failing_asset_and_forecasts_the_rest(api, keys):
    base, model_id = api
    r = call("POST", f"{base}/ai/forecast/batch", keys.token(A, ["forecaster"]),
             json={"tenant_id": A, "asset_ids": ["zone1", "nope"], "horizon_hours": 6})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [(f["asset"], f["model_id"], len(f["forecast"])) for f in doc["forecasts"]] == [("zone1", model_id, 6)]
    assert doc["errors"] == [{"asset_id": "nope", "code": "unknown_asset",
                              "message": f"tenant '{A}' has no asset(s) 'nope'"}]
    empty = call("POST", f"{base}/ai/forecast/batch", keys.token(A, ["forecaster"]),
                 json={"tenant_id": A, "asset_ids": []})
    assert empty.status_code == 422 and "asset_ids holds 0 assets; allowed 1..1000" in empty.json()["message"]
    other = call("POST", f"{base}/ai/forecast/batch", keys.token(B, ["forecaster"]),
                 json={"tenant_id": A, "asset_ids": ["zone1"]})
    assert other.status_code == 403


def test_feature_reads_and_sets(api, keys, stack, store):
    from warehouse.store import online_features

    base, _ = api
    r = call("POST", f"{base}/ai/features/get", keys.token(A, ["ai_user"]),
             json={"tenant_id": A, "asset_ids": ["zone1", "zone1"], "feature_service": "forecast_advanced"})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "online" and r.json()["warnings"] == []
    row, again = r.json()["rows"]
    assert row == again and row["asset_id"] == "zone1" and row["lag_1h"] is not None and "hour_of_day" in row
    # the same values stock Feast's get_online_features gives (calendar features of the latest hour)
    feast_row = online_features(stack, "forecast_advanced", A, ["zone1"], store=store).iloc[0].to_dict()
    assert list(row) == list(feast_row)
    for name, value in feast_row.items():
        if isinstance(value, float) and value == value:
            assert row[name] == pytest.approx(value), name
        else:
            assert row[name] == (None if value != value else value), name
    gone = call("POST", f"{base}/ai/features/get", keys.token(A, ["ai_user"]),
                json={"tenant_id": A, "asset_ids": ["zone9"]})
    assert gone.status_code == 404 and "'zone9'" in gone.json()["message"]
    unknown = call("POST", f"{base}/ai/features/get", keys.token(A, ["ai_user"]),
                   json={"tenant_id": A, "asset_ids": ["zone1"], "feature_service": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["message"], unknown.text
    sets = {s["name"]: s for s in call("GET", f"{base}/ai/features/sets", keys.token(A, ["ai_user"])).json()}
    assert {"forecast_advanced", "forecast_weather", "anomaly_detection"} <= set(sets)
    assert {"lag_1h", "temperature"} <= {f["feature"] for f in sets["forecast_weather"]["features"]}
    assert call("GET", f"{base}/ai/features/sets", keys.token(A, ["forecaster"])).status_code == 403


def test_an_oversized_request_is_refused_before_any_work(api, keys):
    base, _ = api
    r = call("POST", f"{base}/ai/forecast", keys.token(A, ["forecaster"]), data=b"x" * 10_000_001,
             headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "request_too_large"
    assert "exceeds the limit of 10000000 bytes" in r.json()["message"]


def test_ems_up_with_api_starts_it_after_the_stack_and_status_shows_it(api, env, keys):
    import signal

    port = TEST_PORTS["mlflow"] + 5
    up_env = {"EMS_API_JWKS_URL": f"http://127.0.0.1:{JWKS_PORT}/certs", "EMS_API_AUDIENCE": AUDIENCE,
              "EMS_API_PORT": str(port), "EMS_API_WORKERS": "1", **env}
    started = json.loads(ems("up", "--with-api", "--json", env=up_env).stdout)
    api_status = next(s for s in started["services"] if s["name"] == "api")
    try:
        assert api_status["healthy"] and api_status["managed"] and f":{port}" in api_status["url"]
        listed = {s["name"]: s for s in json.loads(ems("status", "--json", env=up_env).stdout)["services"]}
        assert listed["api"]["healthy"] and listed["api"]["pid"] == api_status["pid"]
        r = call("GET", f"http://127.0.0.1:{port}/ai/models", keys.token(A, ["ai_user"]))
        assert r.status_code == 200 and r.json()
    finally:
        os.killpg(api_status["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{api_status['pid']}").exists():
            time.sleep(0.2)  # gone before the next test lists the stack


def test_issue_time_inputs_can_be_overridden_and_calendar_ones_cannot(api, keys):
    base, _ = api
    token = keys.token(A, ["forecaster"])
    body = {"tenant_id": A, "asset_id": "zone1", "horizon_hours": 6}
    stored = call("POST", f"{base}/ai/forecast", token, json=body).json()
    r = call("POST", f"{base}/ai/forecast", token, json={**body, "features": {"lag_1h": 0.0, "temperature": 45.0}})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["features"]["lag_1h"] == 0.0 and doc["features"]["temperature"] == 45.0
    assert doc["features"]["lag_24h"] == stored["features"]["lag_24h"]  # the others as stored
    noted = [w for w in doc["warnings"] if "overridden by the caller" in w]
    assert len(noted) == 2 and any(w.startswith("input lag_1h overridden by the caller: 0 (stored: ") for w in noted)
    assert [row["point"] for row in doc["forecast"]] != [row["point"] for row in stored["forecast"]]
    for features, names in (({"hour_of_day": 3}, "'hour_of_day' is derived from each target hour"),
                            ({"load_tomorrow": 1.0}, "'load_tomorrow' is not one the model takes at issue time"),
                            ({"lag_1h": "a lot"}, "features.lag_1h")):
        bad = call("POST", f"{base}/ai/forecast", token, json={**body, "features": features})
        assert bad.status_code == 422 and names in bad.json()["message"], bad.text


def test_a_weather_forecast_for_the_target_hours_goes_in_the_call(api, stack, store, keys):
    """A model on forecast_weather_ahead takes the caller's forecast (named in the warnings); the default
    model reads none and says so; a timestamp without a UTC offset is refused."""
    base, _ = api
    weather = train_forecast.train(stack, store, A, ["zone1"], service="forecast_weather_ahead", name="api_weather",
                                   split=SPLIT, boosting=FAST)
    token = keys.token(A, ["forecaster"])
    body = {"tenant_id": A, "asset_id": "zone1", "horizon_hours": 3, "model_name": weather.model_id}
    hours = [{"timestamp": f"2017-06-29T0{h}:00:00Z", "temperature": 30.0 + h} for h in range(3)]
    r = call("POST", f"{base}/ai/forecast", token, json={**body, "weather_forecast": hours})
    assert r.status_code == 200, r.text
    assert any("supplied by the caller (temperature)" in w for w in r.json()["warnings"])
    plain = call("POST", f"{base}/ai/forecast", token, json={**body, "model_name": None, "weather_forecast": hours})
    assert plain.status_code == 422 and "reads no weather forecast" in plain.json()["message"], plain.text
    naive = [{"timestamp": "2017-06-29T00:00:00", "temperature": 20.0}]
    bad = call("POST", f"{base}/ai/forecast", token, json={**body, "weather_forecast": naive})
    assert bad.status_code == 422 and "needs a UTC offset" in bad.json()["message"], bad.text
    hot = [{"timestamp": "2017-06-29T00:00:00Z", "temperature": 99.0}]
    bad = call("POST", f"{base}/ai/forecast", token, json={**body, "weather_forecast": hot})
    assert bad.status_code == 422 and "value 99 at" in bad.json()["message"], bad.text


def test_a_forecast_served_over_http_can_be_logged_and_a_rerun_logs_it_once(api, stack, keys):
    from warehouse.db import connect

    base, model_id = api
    token = keys.token(A, ["forecaster"])
    body = {"tenant_id": A, "asset_id": "zone1", "horizon_hours": 6, "log": True}

    def logged() -> int:
        with connect(stack) as conn:
            return conn.execute("SELECT count(*) FROM forecast_log WHERE tenant_id = %s AND model_id = %s",
                                (A, model_id)).fetchone()[0]

    before = logged()
    for _ in range(2):
        r = call("POST", f"{base}/ai/forecast", token, json=body)
        assert r.status_code == 200, r.text
    assert logged() - before == 6  # one row per target hour, the rerun overwrites them
    batch = call("POST", f"{base}/ai/forecast/batch", token,
                 json={"tenant_id": A, "asset_ids": ["zone1"], "horizon_hours": 8, "log": True})
    assert batch.status_code == 200 and not batch.json()["errors"], batch.text
    assert logged() - before == 8
    history = [{"timestamp": f"2017-06-0{d}T{h:02d}:00:00Z", "value": 100.0 + h}
               for d in range(1, 9) for h in range(24)]
    bad = call("POST", f"{base}/ai/forecast", token, json={**body, "historical_data": history})
    assert bad.status_code == 422 and "log: a forecast from historical_data" in bad.json()["message"], bad.text
