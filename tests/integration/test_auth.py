"""MLflow basic auth with two tenants (`ems up --auth`): a second MLflow server started the way the stack
starts it, with its auth app, on the session's Postgres (same registry, users in their own database)
and S3. Each tenant's user reads, loads and promotes its own models only; the admin sees all."""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
import pytest

from core.names import TAG_ARTIFACT_LOCATION, experiment_name
from registry import lifecycle
from registry.access import RegistryAccessError, create_tenant_user
from stack import services
from tests.helpers.stack import TEST_PORTS, ems

pytestmark = pytest.mark.integration

AUTH_PORT = TEST_PORTS["mlflow"] + 1  # beside the session's MLflow
A, B = "auth-a", "auth-b"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


@contextmanager
def login(username: str | None, password: str | None = None):
    """Act as an MLflow user: MLflow reads these two variables on every request."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.pop(k, None) for k in names}
    if username is not None:
        os.environ.update({names[0]: username, names[1]: password})
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@dataclass
class Tenants:
    uri: str
    admin: tuple[str, str]
    users: dict[str, tuple[str, str]]  # tenant -> (username, password)
    models: dict[str, str]  # tenant -> model id


@pytest.fixture(scope="module")
def auth_mlflow(stack, tmp_path_factory):
    settings = stack.model_copy(update={
        "home": tmp_path_factory.mktemp("auth-home"), "mlflow_auth": True,
        "mlflow_tracking_uri": f"http://127.0.0.1:{AUTH_PORT}", "mlflow_auth_database": "mlflow_auth_test",
    })
    server = services.MLflow(settings)
    try:
        server.up()
        yield settings
    finally:
        server.down()


def _log_model(uri: str, tenant: str) -> tuple[str, str]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment_name(tenant))
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    finally:
        mlflow.set_tracking_uri(previous)
    return info.model_uri, run.info.run_id


@pytest.fixture(scope="module")
def tenants(auth_mlflow) -> Tenants:
    """A's user exists before A's model is registered (registering grants it to the tenant's role); B's
    user is created after a model was made in the MLflow UI's way, by name (creating the user grants it).
    The admin logs and registers the models, as the project's training does."""
    uri = auth_mlflow.mlflow_tracking_uri
    admin = (auth_mlflow.mlflow_admin_username, auth_mlflow.mlflow_admin_password)
    cli_env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": admin[0], "MLFLOW_TRACKING_PASSWORD": admin[1]}
    user_a = json.loads(ems("users", "create", "--tenant", A, "--json", env=cli_env).stdout)
    models = {}
    with login(*admin):
        mlc = lifecycle.client(uri)
        for tenant in (A, B):
            models[tenant] = lifecycle.register(mlc, tenant, "shared", *_log_model(uri, tenant),
                                                {"model_type": "forecast"}).id
        mlc.create_registered_model(f"{B}.from_ui", tags={"tenant_id": B})  # no project hook ran
        b_password = secrets.token_urlsafe(16)
        user_b = create_tenant_user(uri, B, "bob", b_password)
    assert user_a["models"] == [] and len(user_a["password"]) >= 12  # generated, shown once
    assert user_b.as_dict() == {"username": "bob", "tenant": B, "password": None, "models": [f"{B}.from_ui"]}
    return Tenants(uri, admin, {A: (A, user_a["password"]), B: ("bob", b_password)}, models)


def test_tenant_user_reads_loads_and_promotes_its_own_model(tenants):
    mlc = lifecycle.client(tenants.uri)
    with login(*tenants.users[A]):
        assert lifecycle.show(mlc, tenants.models[A]).tenant == A
        assert lifecycle.promote(mlc, tenants.models[A], "production").stage == "production"
        assert lifecycle.resolve_production(mlc, A, "shared").id == tenants.models[A]
        model = mlflow.pyfunc.load_model(f"models:/{A}.shared/1")  # files via the tenant's experiment
        assert list(model.predict([1.0, 2.0])) == [1.0, 2.0]
        assert {m.tenant for m in lifecycle.list_models(mlc)} == {A}  # other tenants' models are filtered out
        assert lifecycle.list_models(mlc, B) == []
    with login(*tenants.users[B]):
        assert [m.id for m in lifecycle.list_models(mlc)] == [tenants.models[B]]


def test_tenant_user_gets_one_clear_error_for_another_tenants_model(tenants):
    mlc = lifecycle.client(tenants.uri)
    b_model = tenants.models[B]
    with login(*tenants.users[A]):
        with pytest.raises(RegistryAccessError, match=f"MLflow user '{A}' may not read model {b_model} .*HTTP 403"):
            lifecycle.show(mlc, b_model)
        with pytest.raises(RegistryAccessError, match=f"'{A}' may not promote model {b_model} to production"):
            lifecycle.promote(mlc, b_model, "production")
    with login(*tenants.admin):
        assert lifecycle.show(mlc, b_model).stage == "staging"  # untouched


def test_the_sdk_with_mlflow_credentials_only_loads_its_model_through_the_proxy(tenants, stack, tmp_path):
    """A tenant's process with its MLflow login and no S3 key of its own (the settings hold the built-in one, the
    operator's): the SDK's model cache loads A's model through MLflow's artifact proxy (nothing read from S3
    directly), and B's model is one error naming the user and the model; B's files stay out of reach."""
    from core.settings import LOCAL_S3_ACCESS_KEY
    from inference.models import ModelCache

    settings = stack.model_copy(update={"mlflow_tracking_uri": tenants.uri})
    assert settings.s3_access_key == LOCAL_S3_ACCESS_KEY  # no tenant key in the environment
    cache_dir = tmp_path / "models"
    with login(*tenants.users[A]):
        cache = ModelCache(tenants.uri, settings=settings, cache_dir=cache_dir)
        served = cache.version(tenants.models[A])
        assert served.info.tenant == A and list(served.python_model.predict(None, [3.0])) == [3.0]
        assert not cache_dir.exists() or not list(cache_dir.rglob("MLmodel"))  # not the direct-S3 copy
        b_model = tenants.models[B]
        with pytest.raises(RegistryAccessError, match=f"MLflow user '{A}' may not read model {b_model} .*HTTP 403"):
            cache.version(b_model)
        assert cache.cached_ids() == [tenants.models[A]]
    with login(*tenants.admin):
        b_files = lifecycle.show(lifecycle.client(tenants.uri), b_model).tags[TAG_ARTIFACT_LOCATION]
    import requests

    with login(*tenants.users[A]), pytest.raises(requests.HTTPError, match="403 .*Permission denied"):
        mlflow.artifacts.download_artifacts(artifact_uri=b_files, tracking_uri=tenants.uri,
                                            dst_path=str(tmp_path / "b"))  # B's files by their address


def test_models_cli_refusal_is_one_line_naming_user_and_model(tenants):
    username, password = tenants.users[B]
    env = {"MLFLOW_TRACKING_URI": tenants.uri, "MLFLOW_TRACKING_USERNAME": username,
           "MLFLOW_TRACKING_PASSWORD": password}
    refused = ems("models", "promote", tenants.models[A], "--to", "archived", env=env, check=False)
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"error: MLflow user 'bob' may not promote model {tenants.models[A]} to archived")
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr


def test_the_cli_cannot_load_another_tenants_model_files(tenants, stack, tmp_path):
    """`ems forecast` (the CLI's way to a model's files) with A's MLflow login and B's model id, B's asset
    known to the store: one line naming the user and the model (HTTP 403), nothing of B's files copied."""
    from tests.helpers.data import tetouan_slice
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh

    ingest_readings(stack, tetouan_slice(tmp_path / "b.csv", "2017-03-01", "2017-03-04"), B, wide=True,
                    columns="zone1=zone1_power_consumption")
    refresh(stack)
    username, password = tenants.users[A]
    env = {"MLFLOW_TRACKING_URI": tenants.uri, "MLFLOW_TRACKING_USERNAME": username,
           "MLFLOW_TRACKING_PASSWORD": password}
    b_model = tenants.models[B]
    refused = ems("forecast", "--tenant", B, "--asset", "zone1", "--model", b_model, env=env, check=False)
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"error: MLflow user '{A}' may not read model {b_model}"), refused.stderr
    assert "HTTP 403" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not [p for p in (stack.home / "models").rglob("*") if B in str(p)]  # no copy of B's files


def test_admin_sees_every_tenants_models(tenants):
    with login(*tenants.admin):
        ids = {m.id for m in lifecycle.list_models(lifecycle.client(tenants.uri))}
    assert set(tenants.models.values()) <= ids


def test_unauthenticated_and_wrong_password_requests_are_refused(tenants):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{tenants.uri}/api/2.0/mlflow/registered-models/search", timeout=5)
    assert refused.value.code == 401
    mlc = lifecycle.client(tenants.uri)
    with login(None), pytest.raises(RegistryAccessError, match="needs a login to list models .*HTTP 401"):
        lifecycle.list_models(mlc)
    with login(A, "not-the-password"), pytest.raises(RegistryAccessError, match=f"rejected the login of user '{A}'"):
        lifecycle.show(mlc, tenants.models[A])


def test_users_create_with_db_makes_the_mlflow_user_and_a_database_role_together(tenants, stack):
    """`ems users create --tenant T --db --s3`: one password for the MLflow user and the database role, which
    sees no other tenant's rows, and an S3 key that lists the tenant's experiment prefix and no other; a
    second run is one error naming the existing role, and changes nothing."""
    import psycopg

    admin_env = {"MLFLOW_TRACKING_URI": tenants.uri, "MLFLOW_TRACKING_USERNAME": tenants.admin[0],
                 "MLFLOW_TRACKING_PASSWORD": tenants.admin[1]}
    made = json.loads(ems("users", "create", "--tenant", "auth-c", "--db", "--s3", "--json", env=admin_env).stdout)
    assert made["database_role"] == "tenant_auth-c" and made["username"] == "auth-c" and len(made["password"]) >= 12
    import boto3
    import botocore.exceptions

    from registry.access import tenant_experiment_id
    from stack.s3_identities import artifact_prefix

    s3 = boto3.client("s3", **{**stack.s3_client_kwargs(), "aws_access_key_id": made["s3_access_key"],
                               "aws_secret_access_key": made["s3_secret_key"]})
    with login(*tenants.admin):
        bucket, prefix = artifact_prefix(stack, tenant_experiment_id(tenants.uri, "auth-c"))
        _, other = artifact_prefix(stack, tenant_experiment_id(tenants.uri, A))
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["KeyCount"] == 0  # its own (empty) experiment
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        s3.list_objects_v2(Bucket=bucket, Prefix=other)
    a = stack.postgres
    with psycopg.connect(host=a.host, port=a.port, dbname=a.database, user="tenant_auth-c",
                         password=made["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE tenant_id <> 'auth-c'").fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "mlflow_auth_test"'):
        psycopg.connect(host=a.host, port=a.port, dbname="mlflow_auth_test", user="tenant_auth-c",
                        password=made["password"])  # the MLflow users' password hashes: the operator's only
    again = ems("users", "create", "--tenant", "auth-c", "--db", env=admin_env, check=False)
    assert again.returncode == 1 and "database role 'tenant_auth-c' of tenant 'auth-c' exists already" in again.stderr


def _leftovers(tenants, stack, tenant: str) -> list[str]:
    """What exists of `tenant`'s access: its MLflow user, its database role, its S3 identity."""
    import psycopg
    from mlflow.exceptions import MlflowException

    from registry.access import _auth_client
    from stack.s3_identities import config_path, identity_name

    found = []
    with login(*tenants.admin):
        try:
            _auth_client(tenants.uri).get_user(tenant)
            found.append(f"MLflow user {tenant}")
        except MlflowException as e:
            assert e.error_code == "RESOURCE_DOES_NOT_EXIST", e
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"tenant_{tenant}",)).fetchone():
            found.append(f"database role tenant_{tenant}")
    if identity_name(tenant) in config_path(stack).read_text():
        found.append(f"S3 identity {identity_name(tenant)}")
    return found


def test_users_create_failing_half_way_keeps_nothing_and_runs_again(tenants, stack, tmp_path):
    """`ems users create --db --s3` whose S3 step fails after the MLflow user exists (an EMS_HOME whose S3 `ems
    up` did not start): the user is deleted again and the role rolled back, one line naming the S3 server; a
    wrong admin password and tenant names with quotes or path characters: one line, nothing created; the same
    command succeeds once the cause is fixed."""
    admin_env = {"MLFLOW_TRACKING_URI": tenants.uri, "MLFLOW_TRACKING_USERNAME": tenants.admin[0],
                 "MLFLOW_TRACKING_PASSWORD": tenants.admin[1]}
    tenant = "auth-d"
    attempts = [
        ({**admin_env, "EMS_HOME": str(tmp_path)}, tenant,
         f"S3 at {stack.s3_endpoint_url} was not started by `ems up`"),
        ({**admin_env, "MLFLOW_TRACKING_PASSWORD": tenants.admin[1][::-1]}, tenant,
         f"rejected the login of user '{tenants.admin[0]}'"),
        (admin_env, "auth'd", "tenant id \"auth'd\" is invalid"),
        (admin_env, "../auth-d", "tenant id '../auth-d' is invalid"),
        (admin_env, "auth/d", "tenant id 'auth/d' is invalid"),
    ]
    for env, name, message in attempts:
        failed = ems("users", "create", "--tenant", name, "--db", "--s3", env=env, check=False)
        assert failed.returncode == 1 and failed.stderr.startswith("error: "), failed.stderr
        assert message in failed.stderr and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "Traceback" not in failed.stderr and _leftovers(tenants, stack, tenant) == [], (name, message)
    assert "nothing was kept: MLflow user 'auth-d' deleted and database role rolled back" in ems(
        "users", "create", "--tenant", tenant, "--db", "--s3", env=attempts[0][0], check=False).stderr
    made = json.loads(ems("users", "create", "--tenant", tenant, "--db", "--s3", "--json", env=admin_env).stdout)
    assert made["database_role"] == f"tenant_{tenant}" and made["s3_access_key"]
    assert _leftovers(tenants, stack, tenant) == [f"MLflow user {tenant}", f"database role tenant_{tenant}",
                                                  f"S3 identity tenant-{tenant}"]


def test_status_reports_auth_on_and_off(auth_mlflow, stack):
    assert services.MLflow(auth_mlflow).status().detail == "running, basic auth on"
    assert services.MLflow(stack).status().detail == "running, auth off"


def test_up_without_auth_restarts_the_server_and_the_choice_is_remembered(auth_mlflow):
    """`ems up --no-auth` after `ems up --auth` (runs last: the server is left without auth)."""
    with_auth = services.MLflow(auth_mlflow).status()
    without = services.MLflow(auth_mlflow.model_copy(update={"mlflow_auth": False})).up()
    assert without.detail == "running, auth off" and without.pid != with_auth.pid
    assert not services.MLflow(auth_mlflow.model_copy(update={"mlflow_auth": None})).auth  # plain `ems up`
