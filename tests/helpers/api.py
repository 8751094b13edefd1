"""What the API's tests share: a tenant with four weeks of real load and a trained forecaster, bearer
JWTs minted by a test RSA key with the JWKS served by the suite (the shape of an OIDC provider), and
`ems serve` run as a real uvicorn process."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from core.settings import ROOT
from registry import train_forecast
from registry.training_data import SplitConfig
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

AUDIENCE = "ems-ai-hub"
SPLIT = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
FAST = train_forecast.BoosterConfig(num_boost_round=40)


def loaded_tenant(stack, env, tmp: Path, tenant: str, site: str, start: str, end: str) -> None:
    """Tenant `tenant` with Tetouan's zone-1 load and its weather over [start, end) on site `site`,
    refreshed and materialized."""
    tet = tetouan_slice(tmp / f"{tenant}.csv", start, end)
    ingest_readings(stack, tet, tenant, wide=True, site=site, columns="zone1=zone1_power_consumption")
    ingest_weather(stack, tet, site, columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    ems("materialize", env=env)


def trained_tenant(stack, store, env, tmp: Path, tenant: str, site: str, start: str, end: str):
    """`loaded_tenant` and a forecaster trained on it (not promoted); returns the training."""
    loaded_tenant(stack, env, tmp, tenant, site, start, end)
    return train_forecast.train(stack, store, tenant, split=SPLIT, boosting=FAST)


class Keys:
    """A signing key the served JWKS holds, and one it does not."""

    def __init__(self):
        self.signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing.public_key()))
        self.jwks = json.dumps({"keys": [{**jwk, "kid": "test-key", "use": "sig", "alg": "RS256"}]}).encode()

    def token(self, tenant: str | None, roles: list[str], *, key=None, audience=AUDIENCE, expires_in=300,
              sub="svc-scheduler") -> str:
        claims = {"sub": sub, "realm_access": {"roles": roles}, "aud": audience,
                  "exp": datetime.now(UTC) + timedelta(seconds=expires_in), "iat": datetime.now(UTC)}
        if tenant is not None:
            claims["tenant_id"] = tenant
        return jwt.encode(claims, key or self.signing, algorithm="RS256", headers={"kid": "test-key"})


@contextlib.contextmanager
def jwks_server(keys: Keys, port: int) -> Iterator[str]:
    """Serve `keys`' JWKS on loopback `port`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(keys.jwks)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/certs"
    finally:
        server.shutdown()


@contextlib.contextmanager
def serving(env: dict[str, str], port: int, log_path: Path, workers: int = 2,
            jwks_url: str | None = None) -> Iterator[str]:
    """`ems serve` on loopback `port` with `env` (auth against `jwks_url`, or off), ready; yields its base
    URL and checks the shutdown is graceful (exit 0)."""
    api_env = {**env, "EMS_API_PORT": str(port), "EMS_API_AUDIENCE": AUDIENCE,
               "EMS_API_MODEL_TTL_SECONDS": "0"}  # a promotion serves at once (default: within 30 s)
    if jwks_url:
        api_env["EMS_API_JWKS_URL"] = jwks_url
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ems"), "serve", "--workers", str(workers)],
                                env=api_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180  # workers import the SDK (Feast, MLflow): slow on a busy machine
            while True:
                try:
                    if requests.get(f"{base}/ready", timeout=10).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the API did not get ready: {log_path.read_text()}")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            code = proc.wait(timeout=30)
        # graceful shutdown: uvicorn's supervisor (workers > 1) exits 0; a single worker finishes its
        # shutdown and then re-raises the SIGTERM it caught (exit -15), as uvicorn does since 0.29
        log = log_path.read_text()
        assert code == 0 or (workers == 1 and code == -signal.SIGTERM), f"`ems serve` exited {code}: {log}"
        assert "Application shutdown complete" in log, log


def served_keys(port: int):
    """A module fixture `keys`: a fresh Keys whose JWKS is served on loopback `port` (its URL in `.url`)."""
    import pytest

    @pytest.fixture(scope="module")
    def keys():
        found = Keys()
        with jwks_server(found, port) as url:
            found.url = url
            yield found

    return keys


def call(method: str, url: str, token: str | None = None, headers: dict | None = None,
         **kwargs) -> requests.Response:
    headers = {**(headers or {}), **({"authorization": f"Bearer {token}"} if token else {})}
    return requests.request(method, url, headers=headers, timeout=60, **kwargs)
