"""Bad-input catalogue, part 2: inputs that are only wrong given the data and models in real services
(issue 8, parts 3 and 5). Unknown tenants, assets, model versions and stages; injection attempts at
the CLI, SDK and ingest, after which every table is intact; and a few runs of the real `ems` process
that show no traceback unless `--debug` asks for one. Rows that need no service are in
tests/unit/test_bad_inputs.py."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
from psycopg import sql
from typer.testing import CliRunner

import cli
import inference
from core.errors import (
    InvalidRangeError,
    InvalidTransitionError,
    ModelNotFoundError,
    UnknownAssetError,
    UnknownFeatureServiceError,
)
from core.names import InvalidIdError
from inference.client import Client
from registry import lifecycle
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.db import connect
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.store import online_features
from warehouse.validate import IngestError

pytestmark = pytest.mark.integration
TENANT = "badin"
INJECTION = "x'; DROP TABLE readings;--"
TABLES = ("readings", "assets", "weather", "readings_hourly", "readings_refresh_queue")


def _tables(settings) -> dict[str, int | None]:
    """Row count of each table (None if it is gone)."""
    out = {}
    with connect(settings) as conn:
        for table in TABLES:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            out[table] = conn.execute(count).fetchone()[0] if exists else None
    return out


class Echo(mlflow.pyfunc.PythonModel):
    """A stand-in anomaly model: the tests only need a registered version of the wrong type."""

    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def ctx(stack, store, env, tmp_path_factory):
    """Tenant `badin` with two Tetouan feeders (three days, hourly aggregates refreshed) and no
    production forecaster; registered model `badin.lifecycle` v1 in production, v2 in staging."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    ingest_readings(stack, tetouan_slice(tmp / "t.csv", "2017-05-01", "2017-05-04"), TENANT, wide=True,
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    refresh(stack)
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    mlflow.set_experiment("bad-inputs")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    v1, v2 = (lifecycle.register(mlc, TENANT, "lifecycle", info.model_uri, run.info.run_id,
                                 {"model_type": "anomaly"}) for _ in range(2))
    lifecycle.promote(mlc, v1.id, "production")
    return SimpleNamespace(settings=stack, client=Client(stack, store, model_ttl_seconds=0), mlc=mlc, tmp=tmp,
                           production=v1.id, staging=v2.id, tables=_tables(stack))


@pytest.fixture(autouse=True)
def fresh_cli(monkeypatch):
    """The CLI and the SDK's default client rebuild their settings from the test stack's environment."""
    monkeypatch.setattr(cli._State, "settings", None)
    monkeypatch.setattr(inference, "_default", None)


# ------------------------------------------------------------------ SDK and registry functions
SDK = [
    pytest.param(lambda c: c.client.forecast("nobody", "zone1"), UnknownAssetError,
                 ["tenant 'nobody' has no asset(s) 'zone1'"], id="unknown-tenant"),
    pytest.param(lambda c: c.client.forecast(TENANT, "zone9", horizon=168), UnknownAssetError,
                 ["tenant 'badin' has no asset(s) 'zone9'"], id="unknown-asset"),
    pytest.param(lambda c: inference.forecast(TENANT, "zone1"), ModelNotFoundError,
                 ["model badin:load_forecaster has no production version",
                  "ems models promote badin:load_forecaster:<version> --to production"], id="no-production-model"),
    pytest.param(lambda c: c.client.forecast(TENANT, "zone1", model="badin:load_forecaster:999"), ModelNotFoundError,
                 ["model badin:load_forecaster:999 does not exist"], id="unknown-model-version"),
    pytest.param(lambda c: c.client.forecast(TENANT, "zone1", model=c.production), ModelNotFoundError,
                 ["is a anomaly model, not forecast"], id="model-of-the-wrong-type"),
    pytest.param(lambda c: c.client.forecast(TENANT, "zone1", as_of="2030-01-01"), InvalidRangeError,
                 ["as_of=2030-01-01T00:00:00 is after the latest complete hour of 'zone1'"], id="as-of-after-data"),
    pytest.param(lambda c: c.client.detect_anomalies(TENANT, "zone2", method="iqr"), ModelNotFoundError,
                 ["model badin:anomaly_iqr has no production version"], id="anomaly-method-not-trained"),
    pytest.param(lambda c: c.client.explain_global("badin:load_forecaster:999"), ModelNotFoundError,
                 ["badin:load_forecaster:999 does not exist"], id="explain-global-unknown-version"),
    pytest.param(lambda c: online_features(c.settings, "forecast_premium", TENANT, ["zone1"]),
                 UnknownFeatureServiceError, ["feature service 'forecast_premium' is not registered",
                                              "known: anomaly_detection, forecast_advanced, forecast_basic, "
                                              "forecast_load, forecast_load_15min, forecast_load_30min, "
                                              "forecast_regional, forecast_weather, forecast_weather_ahead"],
                 id="unknown-feature-service"),
    pytest.param(lambda c: lifecycle.promote(c.mlc, "badin:nosuch:1", "production"), ModelNotFoundError,
                 ["model badin:nosuch:1 does not exist"], id="promote-unknown-model"),
    pytest.param(lambda c: lifecycle.promote(c.mlc, c.staging, "staging"), InvalidTransitionError,
                 ["is staging; it can move to archived, production, not staging"], id="promote-to-same-stage"),
    pytest.param(lambda c: lifecycle.promote(c.mlc, c.production, "staging"), InvalidTransitionError,
                 ["is production; it can move to archived, not staging"], id="production-back-to-staging"),
    pytest.param(lambda c: lifecycle.delete(c.mlc, c.production), InvalidTransitionError,
                 ["is serving (production); pass --force to delete it"], id="delete-production-without-force"),
]


@pytest.mark.parametrize(("call", "error", "says"), SDK)
def test_sdk_and_registry_refuse_unknown_names_with_one_clear_error(ctx, call, error, says):
    with pytest.raises(error) as info:
        call(ctx)
    for text in says:
        assert text in str(info.value)
    assert _tables(ctx.settings) == ctx.tables


# ------------------------------------------------------------------ CLI (in process) against the stack
CLI = [
    pytest.param(["forecast", "-t", "nobody", "-a", "zone1"], ["tenant 'nobody' has no asset(s) 'zone1'"],
                 id="cli-unknown-tenant"),
    pytest.param(["anomaly", "-t", TENANT, "-a", "zone1", "-m", "isolation_forest"],
                 ["model badin:anomaly_isolation_forest has no production version"], id="cli-no-detector"),
    pytest.param(["features", "-t", TENANT, "-a", "zone1", "-a", "zone'3"], ["asset id \"zone'3\" is invalid"],
                 id="cli-features-quoted-asset"),
    pytest.param(["models", "show", "badin:lifecycle:999"], ["model badin:lifecycle:999 does not exist"],
                 id="cli-show-unknown-version"),
    pytest.param(["models", "promote", "badin:lifecycle:999", "--to", "production"],
                 ["model badin:lifecycle:999 does not exist"], id="cli-promote-unknown-version"),
    pytest.param(["models", "promote", "@staging", "--to", "Live"], ["stage 'Live' is not one of staging"],
                 id="cli-promote-wrong-stage"),
    pytest.param(["models", "delete", "@production"], ["is serving (production); pass --force"],
                 id="cli-delete-production"),
]


@pytest.mark.parametrize(("args", "says"), CLI)
def test_cli_refuses_unknown_names_with_one_line(ctx, args, says):
    args = [getattr(ctx, a[1:]) if a.startswith("@") else a for a in args]
    result = CliRunner().invoke(cli.app, args)
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for text in says:
        assert text in output
    assert "Traceback" not in result.output
    assert _tables(ctx.settings) == ctx.tables


# ------------------------------------------------------------------ injection attempts
def test_injection_in_the_tenant_is_refused_at_cli_sdk_and_ingest(ctx):
    good = ctx.tmp / "good.csv"
    good.write_text("asset_id,timestamp,value\nm1,2017-05-01T00:00:00Z,1\n")
    result = CliRunner().invoke(cli.app, ["ingest", str(good), "--tenant", INJECTION])
    assert result.exit_code == 1 and f'tenant id "{INJECTION}" is invalid' in result.output
    result = CliRunner().invoke(cli.app, ["forecast", "--tenant", INJECTION, "--asset", "zone1"])
    assert result.exit_code == 1 and f'tenant id "{INJECTION}" is invalid' in result.output
    with pytest.raises(InvalidIdError, match="tenant id .* is invalid"):
        ctx.client.detect_anomalies(INJECTION, "zone1")
    with pytest.raises(InvalidIdError, match="tenant id .* is invalid"):
        ingest_readings(ctx.settings, good, INJECTION)
    with pytest.raises(InvalidIdError, match="tenant id .* is invalid"):
        lifecycle.list_models(ctx.mlc, "badin' OR name LIKE '%")
    assert _tables(ctx.settings) == ctx.tables


def test_injection_in_asset_and_site_ids_is_refused_and_rejected_rows_are_not_loaded(ctx):
    with pytest.raises(InvalidIdError, match="asset id .* is invalid"):
        ctx.client.forecast(TENANT, "zone1' OR '1'='1")
    with pytest.raises(InvalidIdError, match="site id .* is invalid"):
        ingest_weather(ctx.settings, ctx.tmp / "t.csv", "s'); DELETE FROM weather;--")
    assert _tables(ctx.settings) == ctx.tables
    # a file mixing good rows with injected asset ids: the good rows load, the others are rejected
    path = ctx.tmp / "mixed.csv"
    path.write_text('asset_id,timestamp,value\nm1,2017-05-01T00:00:00Z,1\nm1,2017-05-01T01:00:00Z,2\n'
                    f'"{INJECTION}",2017-05-01T00:00:00Z,3\n"m2\'),(\'evil",2017-05-01T00:00:00Z,4\n')
    result = CliRunner().invoke(cli.app, ["ingest", str(path), "--tenant", "badin-mixed", "--rejects",
                                          str(ctx.tmp / "mixed.rejects.csv"), "--json"])
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(ctx.tmp / "mixed.rejects.csv", dtype=str)
    assert rejects["asset_id"].tolist() == [INJECTION, "m2'),('evil"]
    assert set(rejects["reason"]) == {"invalid_asset_id"}
    after = _tables(ctx.settings)
    assert {k: after[k] - ctx.tables[k] for k in ("readings", "assets", "weather")} == \
        {"readings": 2, "assets": 1, "weather": 0}
    with connect(ctx.settings) as conn:
        assert conn.execute("SELECT asset_id FROM assets WHERE tenant_id = 'badin-mixed'").fetchall() == [("m1",)]
        conn.execute("DELETE FROM readings WHERE tenant_id = 'badin-mixed'")
        conn.execute("DELETE FROM readings_refresh_queue WHERE tenant_id = 'badin-mixed'")
        conn.execute("DELETE FROM assets WHERE tenant_id = 'badin-mixed'")
    assert _tables(ctx.settings) == ctx.tables


def test_a_file_of_only_bad_rows_writes_nothing_and_names_them(ctx):
    path = ctx.tmp / "weather_bad.csv"
    path.write_text("timestamp,temperature\n2017-05-01T00:00:00Z,warm\n2017-05-01T01:00:00Z,\n")
    with pytest.raises(IngestError, match=r"all 2 rows were rejected: non_numeric_value x1 .*temperature='warm'.*"
                                          r"missing_or_nan_value x1"):
        ingest_weather(ctx.settings, path, "site-bad")
    assert _tables(ctx.settings) == ctx.tables


# ------------------------------------------------------------------ the real process
def test_the_real_cli_shows_no_traceback_unless_debug(ctx, env):
    refused = ems("forecast", "--tenant", INJECTION, "--asset", "zone1", env=env, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr + refused.stdout
    assert f'tenant id "{INJECTION}" is invalid' in refused.stderr
    debug = ems("--debug", "models", "show", "badin:lifecycle:999", env=env, check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelNotFoundError" in debug.stderr
    assert "model badin:lifecycle:999 does not exist" in debug.stderr
    corrupt = ctx.tmp / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 truncated")
    bad_file = ems("ingest", str(corrupt), "--tenant", TENANT, env=env, check=False)
    assert bad_file.returncode == 1 and "Traceback" not in bad_file.stderr + bad_file.stdout
    assert "corrupt.parquet: cannot read as a table" in bad_file.stderr
    assert _tables(ctx.settings) == ctx.tables
