"""The API with a dependency down (the session's real processes stopped, started again after each
test): Redis down -> forecasts from the offline store with a warning, /health degraded, /ready 503;
MLflow down -> the cached model serves with a warning, an uncached one is a 503 naming the registry."""

from __future__ import annotations

import os

import pytest

from registry import lifecycle, train_forecast
from tests.helpers.api import FAST, SPLIT, call, served_keys, serving, trained_tenant
from tests.helpers.stack import TEST_PORTS
from tests.integration.test_faults import outage  # noqa: F401 - the fixture that stops a service

pytestmark = pytest.mark.integration

T = "api-flt"
API_PORT = TEST_PORTS["mlflow"] + 13
JWKS_PORT = TEST_PORTS["mlflow"] + 14


keys = served_keys(JWKS_PORT)


@pytest.fixture(scope="module")
def api(stack, store, env, keys, tmp_path_factory):
    """A promoted forecaster and a spare staging version of tenant T; the API with one worker (so the
    model the first call loads is the cached one every later call finds)."""
    tmp = tmp_path_factory.mktemp("api-faults")
    trained = trained_tenant(stack, store, env, tmp, T, "tet-api-flt", "2017-08-01", "2017-08-29")
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)
    spare = train_forecast.train(stack, store, T, split=SPLIT, boosting=FAST).model_id
    with serving({**os.environ, **env}, API_PORT, tmp / "serve.log", workers=1, jwks_url=keys.url) as base:
        yield base, trained.model_id, spare


def test_redis_down_forecasts_come_from_the_offline_store_with_a_warning(api, keys, outage):  # noqa: F811
    base, production, _ = api
    token = keys.token(T, ["forecaster", "ai_user"])
    body = {"tenant_id": T, "asset_id": "zone1", "horizon_hours": 12}
    online = call("POST", f"{base}/ai/forecast", token, json=body).json()
    assert online["source"] == "online" and online["model_id"] == production

    outage("redis")
    r = call("POST", f"{base}/ai/forecast", token, json=body)
    assert r.status_code == 200, r.text
    offline = r.json()
    assert offline["source"] == "offline" and offline["fallback"]
    assert [w for w in offline["warnings"] if "online store unreachable" in w]
    assert [row["point"] for row in offline["forecast"]] == pytest.approx([row["point"] for row in online["forecast"]])
    health = call("GET", f"{base}/health").json()
    assert health["status"] == "degraded" and not health["dependencies"]["redis"]["healthy"]
    assert health["dependencies"]["redis"]["error"]
    ready = call("GET", f"{base}/ready")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "down": ["redis"]}
    features = call("POST", f"{base}/ai/features/get", token, json={"tenant_id": T, "asset_ids": ["zone1"]})
    assert features.status_code == 200, features.text
    doc = features.json()
    assert doc["source"] == "offline" and "online store unreachable" in doc["warnings"][0]
    assert doc["rows"][0]["lag_1h"] == pytest.approx(online["features"]["lag_1h"])


def test_mlflow_down_the_cached_model_serves_and_an_uncached_one_is_a_clear_503(api, keys, stack,
                                                                               outage):  # noqa: F811
    base, production, spare = api
    token = keys.token(T, ["forecaster"])
    body = {"tenant_id": T, "asset_id": "zone1", "horizon_hours": 12}
    assert call("POST", f"{base}/ai/forecast", token, json=body).status_code == 200  # cached now

    outage("mlflow")
    r = call("POST", f"{base}/ai/forecast", token, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model_id"] == production
    assert [w for w in r.json()["warnings"] if "unreachable; serving cached" in w]
    cold = call("POST", f"{base}/ai/forecast", token, json={**body, "model_name": spare})
    assert cold.status_code == 503 and cold.json()["code"] == "model_unavailable", cold.text
    assert f"unreachable; cannot load {spare}" in cold.json()["message"]
    assert "Traceback" not in cold.text
