"""MLflow basic auth without a server: the auth app's config and environment, the `--auth` mode of
the local MLflow, the throwaway admin refused off loopback, refusals turned into one clear error,
and tenant users validated before any request."""

from __future__ import annotations

import configparser
import os
import secrets
from urllib.parse import quote

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED
from typer.testing import CliRunner

from core.names import InvalidIdError
from core.settings import LOCAL_MLFLOW_ADMIN_PASSWORD, Settings, SettingsError
from registry.access import AuthSetupError, RegistryAccessError, create_tenant_user, registry_access
from stack import auth
from stack.services import MLflow

URI = "http://127.0.0.1:9"  # nothing listens: every test here fails before a request
PG_PASSWORD = f"{secrets.token_hex(4)}%w"  # a % to escape in the ini file


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for name in ("EMS_MLFLOW_AUTH", "EMS_MLFLOW_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_USERNAME",
                 "EMS_MLFLOW_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    fs_yaml = tmp_path / "fs.yaml"
    fs_yaml.write_text("offline_store: {type: postgres, host: 127.0.0.1, port: 6000, database: d, user: u, "
                       f"password: '{PG_PASSWORD}'}}\n"
                       "online_store: {type: redis, connection_string: '127.0.0.1:7000'}\n")
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(fs_yaml))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9999")
    monkeypatch.setenv("EMS_HOME", str(tmp_path / "home"))
    return Settings()


def test_auth_app_denies_by_default_and_keeps_users_in_the_same_postgres(settings):
    path = auth.write_server_config(settings)
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # the database URI holds a password
    parsed = configparser.ConfigParser()
    parsed.read(path)  # the way MLflow reads it (interpolation on: the password's % is escaped)
    assert parsed["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    uri = f"postgresql+psycopg2://u:{quote(PG_PASSWORD)}@127.0.0.1:6000/mlflow_auth?sslmode=disable"
    assert parsed["mlflow"]["database_uri"] == uri


def test_local_mlflow_runs_the_auth_app_as_asked_else_as_it_ran_last(settings):
    assert not MLflow(settings).auth
    assert "--app-name" not in MLflow(settings).command()
    assert "MLFLOW_AUTH_CONFIG_PATH" not in MLflow(settings).env()
    auth.write_server_config(settings)  # what `ems up --auth` leaves behind
    server = MLflow(settings)
    assert server.auth and server.command()[-2:] == ["--app-name", "basic-auth"]
    env = server.env()
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(auth.config_path(settings))
    admin = (env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert admin == ("admin", LOCAL_MLFLOW_ADMIN_PASSWORD)
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64
    settings.mlflow_auth = False  # `ems up --no-auth`
    assert not MLflow(settings).auth


def test_throwaway_admin_password_is_refused_for_a_server_off_loopback(settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("EMS_MLFLOW_AUTH", "true")
    with pytest.raises(SettingsError, match="set EMS_MLFLOW_ADMIN_PASSWORD"):
        Settings().check_credentials()
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "generated-elsewhere-0123")
    Settings().check_credentials()
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    monkeypatch.setenv("EMS_MLFLOW_AUTH", "false")
    Settings().check_credentials()  # no auth app: no admin


def test_refusals_become_one_error_naming_the_user_and_what_was_refused(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-password")
    with pytest.raises(RegistryAccessError, match=r"MLflow user 'alice' may not read model b:m:1 \(HTTP 403 from "):
        with registry_access(URI, "read model b:m:1"):
            raise MlflowException("Permission denied", error_code=PERMISSION_DENIED)
    with pytest.raises(RegistryAccessError, match="rejected the login of user 'alice' to list models"):
        with registry_access(URI, "list models"):
            raise MlflowException("You are not authenticated", error_code=UNAUTHENTICATED)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    with pytest.raises(RegistryAccessError, match="needs a login to list models .*MLFLOW_TRACKING_USERNAME"):
        with registry_access(URI, "list models"):
            raise MlflowException("You are not authenticated", error_code=UNAUTHENTICATED)
    with pytest.raises(MlflowException, match="gone"):  # anything else is not an access question
        with registry_access(URI, "read model b:m:1"):
            raise MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST)


@pytest.mark.parametrize(("tenant", "username", "password", "error", "match"), [
    ("Bad Tenant", None, None, InvalidIdError, "tenant id 'Bad Tenant' is invalid"),
    ("a", "no spaces", None, AuthSetupError, "username 'no spaces' is invalid"),
    ("a", None, "short", AuthSetupError, "has 5 characters; MLflow needs at least 12"),
])
def test_tenant_users_are_checked_before_any_request(tenant, username, password, error, match):
    with pytest.raises(error, match=match):
        create_tenant_user(URI, tenant, username, password)


def test_users_cli_gives_one_line_for_a_bad_tenant(settings):
    from cli import app

    result = CliRunner().invoke(app, ["users", "create", "--tenant", "Bad Tenant"], env=dict(os.environ))
    assert result.exit_code == 1
    assert "tenant id 'Bad Tenant' is invalid" in result.output and "Traceback" not in result.output
