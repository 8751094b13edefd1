"""Row-level security per tenant database role (`ems users create --tenant T --db`), on the session's
schema path (plain or TimescaleDB): tenant A's role sees and writes only A's rows in every relation the
SDK and the offline store read; attempts to name B (a WHERE, a setting, SET ROLE, a chunk, a write) see
nothing or are refused; the operator's role sees every tenant as before."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import psycopg
import pytest
import yaml
from psycopg import sql

from core.settings import Settings
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import PG_FLAVOUR, ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.point_in_time import features_at
from warehouse.refresh import refresh
from warehouse.store import get_store
from warehouse.tenant_roles import SCOPE, SCOPED, TenantRoleError, create_tenant_role, role_name
from warehouse.validate import IngestError

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]

A, B = "rls-a", "rls-b"
SITE_A, SITE_B = "rls-site-a", "rls-site-b"
# Every relation a tenant's SDK, training sets and ingest touch, with the column that names the tenant.
TENANT_RELATIONS = ("assets", "readings", "readings_hourly", "load_lag_features", "load_rolling_features",
                    "asset_weather_features", "asset_profile_features", "jobs", "readings_refresh_queue",
                    "online_refresh_queue", "asset_refresh_queue", "load_features_30min", "load_features_15min")
SITE_RELATIONS = ("weather", "weather_hourly")
REFUSED_ROW = (psycopg.errors.InsufficientPrivilege, psycopg.errors.WithCheckOptionViolation)


@pytest.fixture(scope="module")
def tenants(stack, tmp_path_factory):
    """Two tenants with readings, weather of their own site and features; a database role for each."""
    tmp = tmp_path_factory.mktemp("rls")
    data = tetouan_slice(tmp / "t.csv", "2017-06-01", "2017-06-06")
    for tenant, site in ((A, SITE_A), (B, SITE_B)):
        ingest_readings(stack, data, tenant, wide=True, site=site, columns="zone1=zone1_power_consumption")
        ingest_weather(stack, data, site, columns="temperature,humidity")
    refresh(stack)
    passwords = {t: secrets.token_urlsafe(16) for t in (A, B)}
    for tenant, password in passwords.items():
        create_tenant_role(stack, tenant, password)
    return passwords


def tenant_settings(stack, tmp_path, tenant: str, password: str) -> Settings:
    """The session's Feast yaml with the tenant's role in place of the operator (offline store and registry)."""
    cfg = yaml.safe_load(stack.feast_yaml.read_text())
    owner = f"{stack.postgres.user}:{stack.postgres.password}@"
    # db_schema: Feast's connections set search_path to it (then public): the tenant_scope views on TimescaleDB
    cfg["offline_store"].update(user=role_name(tenant), password=password, db_schema=SCOPE)
    cfg["registry"]["path"] = cfg["registry"]["path"].replace(owner, f"{role_name(tenant)}:{password}@")
    path = tmp_path / f"{tenant}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Settings(FEAST_FS_YAML_FILE_PATH=str(path), home=stack.home)


def as_tenant(stack, tenant: str, password: str) -> psycopg.Connection:
    a = stack.postgres
    return psycopg.connect(host=a.host, port=a.port, dbname=a.database, user=role_name(tenant), password=password,
                           sslmode=a.sslmode)


def tenants_in(conn, relation: str, column: str = "tenant_id") -> set[str]:
    return {r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT {} FROM {}").format(
        sql.Identifier(column), sql.Identifier(relation))).fetchall()}


def test_a_tenant_role_sees_only_its_own_rows_everywhere(stack, tenants):
    with as_tenant(stack, A, tenants[A]) as conn:
        for relation in TENANT_RELATIONS:
            assert tenants_in(conn, relation) <= {A}, relation
        for relation in ("assets", "readings", "readings_hourly", "load_lag_features", "asset_profile_features",
                         "load_features_30min"):
            assert tenants_in(conn, relation) == {A}, relation  # and its own rows are there
        for relation in SITE_RELATIONS:
            assert tenants_in(conn, relation, "site_id") == {SITE_A}, relation
    with psycopg.connect(stack.postgres.conninfo()) as operator:  # the operator is unaffected
        for relation in ("readings", "readings_hourly", "load_lag_features", "asset_profile_features"):
            assert tenants_in(operator, relation) >= {A, B}, relation
        assert tenants_in(operator, "weather_hourly", "site_id") >= {SITE_A, SITE_B}


def test_a_tenant_role_reads_the_forecasts_of_its_own_sites_only(stack, tenants):
    """The covariate store (weather forecasts per site, issue time): A's role sees its site's forecasts, in the
    table and per asset in the view Feast reads; B's site's are absent; the operator sees both."""
    issued = datetime(2017, 6, 5, tzinfo=UTC)
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        for site in (SITE_A, SITE_B):
            operator.execute("INSERT INTO covariate_forecasts (series_id, target_time, issue_time, temperature) "
                             "VALUES (%s, %s, %s, 20) ON CONFLICT DO NOTHING",
                             (site, issued.replace(hour=6), issued))
        assert tenants_in(operator, "covariate_forecasts", "series_id") >= {SITE_A, SITE_B}
    with as_tenant(stack, A, tenants[A]) as conn:
        assert tenants_in(conn, "covariate_forecasts", "series_id") == {SITE_A}
        assert tenants_in(conn, "asset_covariate_forecasts") == {A}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO covariate_forecasts (series_id, target_time, issue_time) "
                         "VALUES (%s, now(), now())", (SITE_A,))


@pytest.mark.parametrize("attempt", [
    "SELECT count(*) FROM readings WHERE tenant_id = 'rls-b'",
    "SELECT count(*) FROM readings_hourly WHERE tenant_id = 'rls-b'",
    "SELECT count(*) FROM weather WHERE site_id = 'rls-site-b'",
    "SELECT count(*) FROM load_lag_features WHERE tenant_id = 'rls-b'",
])
def test_naming_the_other_tenant_finds_nothing(stack, tenants, attempt):
    with as_tenant(stack, A, tenants[A]) as conn:
        for smuggle in ("SET ems.tenant = 'rls-b'", "SET application_name = 'tenant_rls-b'",
                        "SELECT set_config('ems.tenant_id', 'rls-b', false)"):
            conn.execute(smuggle)
        assert conn.execute(attempt).fetchone()[0] == 0


@pytest.mark.parametrize(("statement", "error"), [
    ('SET ROLE "tenant_rls-b"', psycopg.errors.InsufficientPrivilege),
    ("SELECT * FROM tenant_roles", psycopg.errors.InsufficientPrivilege),
    ("INSERT INTO readings (tenant_id, asset_id, ts, value) VALUES ('rls-b', 'zone1', now(), 1)",
     REFUSED_ROW),  # new row violates row-level security policy (plain) / check option (TimescaleDB views)
    ("UPDATE readings SET tenant_id = 'rls-b', asset_id = 'moved' WHERE tenant_id = 'rls-a'", REFUSED_ROW),
    ("INSERT INTO load_lag_features (tenant_id, asset_id, event_timestamp, created) VALUES ('rls-a', 'x', now(), "
     "now())", psycopg.errors.InsufficientPrivilege),  # features are the operator's to write
    ("DELETE FROM weather", psycopg.errors.InsufficientPrivilege),
])
def test_reaching_or_writing_the_other_tenant_is_refused(stack, tenants, statement, error):
    with as_tenant(stack, A, tenants[A]) as conn, pytest.raises(error):
        conn.execute(statement)


def test_a_tenant_role_writes_its_own_readings(stack, tenants):
    with as_tenant(stack, A, tenants[A]) as conn:
        conn.execute("INSERT INTO readings (tenant_id, asset_id, ts, value) VALUES (%s, 'zone1', %s, 1.5)",
                     (A, datetime(2030, 1, 1, tzinfo=UTC)))
        assert conn.execute("SELECT count(*) FROM readings WHERE ts = %s",
                            (datetime(2030, 1, 1, tzinfo=UTC),)).fetchone()[0] == 1
        conn.rollback()


def test_no_relation_with_tenant_rows_is_readable_without_a_policy(stack, tenants):
    """Guard for new tables: everything the group role may read that holds a tenant_id or site_id column is
    under row-level security or a view with the caller's rights; on TimescaleDB the hypertables and
    aggregates are readable only through the tenant_scope views, and chunks not at all."""
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        rows = operator.execute("""
            SELECT c.relname, c.relkind, c.relrowsecurity, coalesce(c.reloptions, '{}')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
              AND has_table_privilege('ems_tenant', c.oid, 'SELECT')
              AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                          AND a.attname IN ('tenant_id', 'site_id', 'series_id') AND NOT a.attisdropped)""").fetchall()
        caggs = set()
        if PG_FLAVOUR == "timescale":
            chunk = operator.execute("SELECT format('%I.%I', chunk_schema, chunk_name) FROM "
                                     "timescaledb_information.chunks WHERE hypertable_name = 'readings' "
                                     "LIMIT 1").fetchone()[0]
    unguarded = [name for name, kind, rls, options in rows
                 if not rls and "security_invoker=true" not in options and name not in caggs]
    assert {name for name, *_ in rows} >= {"assets", "jobs"} and unguarded == []
    if PG_FLAVOUR == "timescale":  # hypertables and aggregates only through the tenant_scope views
        assert not {name for name, *_ in rows} & set(SCOPED)
        with psycopg.connect(stack.postgres.conninfo()) as operator:
            views = dict(operator.execute(
                "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'v'", (SCOPE,)).fetchall())
        assert set(views) == set(SCOPED) and all("security_barrier=true" in v for v in views.values())
        with as_tenant(stack, A, tenants[A]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT count(*) FROM {chunk}")


def test_the_public_relations_are_filtered_or_refused(stack, tenants):
    """`public.readings` (past the tenant_scope views on TimescaleDB) holds no row of B for A's role."""
    for setup, statement in (("", "SELECT count(*) FROM public.readings WHERE tenant_id = 'rls-b'"),
                             ("", "SELECT count(*) FROM public.readings_hourly WHERE tenant_id = 'rls-b'"),
                             ("SET search_path = public", "SELECT count(*) FROM readings WHERE tenant_id = 'rls-b'")):
        with as_tenant(stack, A, tenants[A]) as conn:
            if setup:
                conn.execute(setup)
            if PG_FLAVOUR == "timescale":
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
            else:
                assert conn.execute(statement).fetchone()[0] == 0


def test_training_sets_and_the_feature_store_with_a_tenant_role_hold_only_its_rows(stack, tenants, tmp_path):
    """Feast's get_historical_features through our offline store, and the registry, with A's role."""
    settings = tenant_settings(stack, tmp_path, A, tenants[A])
    store = get_store(settings)
    when = datetime(2017, 6, 5, 12, tzinfo=UTC)
    mine = features_at(settings, store, "forecast_basic", A, ["zone1"], when)
    assert mine["lag_1h"].notna().all()
    from core.errors import UnknownAssetError

    with pytest.raises(UnknownAssetError, match="rls-b"):  # B's asset does not exist for A
        features_at(settings, store, "forecast_basic", B, ["zone1"], when)
    operator = features_at(stack, get_store(stack), "forecast_basic", A, ["zone1"], when)
    assert mine["lag_1h"].tolist() == operator["lag_1h"].tolist()


def test_bad_input_is_one_error_and_creates_nothing(stack, tenants):
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        before = operator.execute("SELECT count(*) FROM pg_roles").fetchone()[0]
    for tenant, password, match in ((A, secrets.token_urlsafe(16), "role 'tenant_rls-a' of tenant 'rls-a' exists"),
                                    ("a'b", secrets.token_urlsafe(16), "tenant id \"a'b\" is invalid"),
                                    ("../x", secrets.token_urlsafe(16), "tenant id '../x' is invalid"),
                                    ("rls-c", "short", "at least 12 characters")):
        with pytest.raises((TenantRoleError, ValueError), match=match):
            create_tenant_role(stack, tenant, password)
    with pytest.raises(RuntimeError, match="mlflow failed"):  # a failure after the role: rolled back
        create_tenant_role(stack, "rls-c", secrets.token_urlsafe(16), then=_fail)
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        assert operator.execute("SELECT count(*) FROM pg_roles").fetchone()[0] == before
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "tenant_rls-a"'):
        as_tenant(stack, A, "not-" + tenants[A])
    proc = ems("users", "create", "--tenant", "rls'c", "--db", check=False)
    assert proc.returncode == 1 and "tenant id \"rls'c\" is invalid" in proc.stderr, proc.stderr
    # The session's MLflow has no auth app: the MLflow user fails, so the role is rolled back with it.
    proc = ems("users", "create", "--tenant", "rls-d", "--db", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") <= 3, proc.stderr
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        assert operator.execute("SELECT count(*) FROM pg_roles").fetchone()[0] == before
        assert operator.execute("SELECT count(*) FROM tenant_roles WHERE tenant_id = 'rls-d'").fetchone()[0] == 0


def _fail():
    raise RuntimeError("mlflow failed")


def test_the_cli_with_a_tenant_role_finds_no_asset_of_the_other_tenant(stack, tenants, tmp_path):
    """`ems features` run with A's role (its own Feast yaml): B's asset is unknown, one line naming it."""
    settings = tenant_settings(stack, tmp_path, A, tenants[A])
    env = {"FEAST_FS_YAML_FILE_PATH": str(settings.feast_yaml)}
    proc = ems("features", "--tenant", B, "--asset", "zone1", "--service", "forecast_basic", env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "tenant 'rls-b' has no asset(s) 'zone1'" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_training_from_the_cli_with_a_tenant_role_finds_no_asset_of_the_other_tenant(stack, tenants, tmp_path):
    """`ems train forecast` for B run with A's role (the CLI's training-set path): one error line naming B
    (its assets are not there for A), before anything reaches MLflow (no model of B)."""
    settings = tenant_settings(stack, tmp_path, A, tenants[A])
    env = {"FEAST_FS_YAML_FILE_PATH": str(settings.feast_yaml)}
    proc = ems("train", "forecast", "--tenant", B, "--asset", "zone1", "--features", "forecast_basic",
               "--history-days", "30", "--holdout-days", "2", env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: tenant 'rls-b' has no assets; ingest readings first (`ems ingest`)"], proc.stderr
    assert "Traceback" not in proc.stderr
    import mlflow

    registry = mlflow.MlflowClient(stack.mlflow_tracking_uri)
    assert registry.search_registered_models(f"name = '{B}.load_forecaster'") == []


def test_a_tenant_role_cannot_log_in_to_mlflows_database(stack, tenants):
    """MLflow's registry (models, runs, tags of every tenant) is in its own database, closed to every role but
    its owner: A's role is refused at login; the operator, who runs the MLflow server, is not."""
    a = stack.postgres
    with pytest.raises(psycopg.OperationalError, match=f'permission denied for database "{stack.mlflow_database}"'):
        psycopg.connect(host=a.host, port=a.port, dbname=stack.mlflow_database, user=role_name(A),
                        password=tenants[A], sslmode=a.sslmode)
    with psycopg.connect(a.conninfo(stack.mlflow_database)) as operator:
        assert operator.execute("SELECT count(*) FROM registered_models").fetchone()[0] >= 0


def test_ingest_as_a_tenant_role_writes_its_own_readings_only(stack, tenants, tmp_path):
    """Postgres refuses COPY under row-level security: a tenant role's ingest stages the rows and inserts them
    with the policies' checks on; the same file for B is refused and writes nothing."""
    settings = tenant_settings(stack, tmp_path, A, tenants[A])
    data = tetouan_slice(tmp_path / "late.csv", "2017-06-10", "2017-06-11")
    report = ingest_readings(settings, data, A, wide=True, columns="zone9=zone1_power_consumption")
    assert report.inserted == 144 and report.rejected == 0, report
    with pytest.raises(IngestError, match=f"database role 'tenant_{A}' may not write readings of tenant '{B}' "
                       "\\(new row violates .*nothing was written"):
        ingest_readings(settings, data, B, wide=True, columns="zone9=zone1_power_consumption")
    with psycopg.connect(stack.postgres.conninfo()) as operator:
        counts = dict(operator.execute("SELECT tenant_id, count(*) FROM readings WHERE asset_id = 'zone9' "
                                       "AND tenant_id IN (%s, %s) GROUP BY tenant_id", (A, B)).fetchall())
        assert counts == {A: 144}  # (other modules' tenants may have a zone9 of their own)
        for table in ("readings", "readings_refresh_queue", "asset_refresh_queue", "assets"):
            operator.execute(sql.SQL("DELETE FROM {} WHERE asset_id = 'zone9' AND tenant_id = %s").format(
                sql.Identifier(table)), (A,))
