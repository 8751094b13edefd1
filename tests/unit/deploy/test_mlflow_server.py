"""deploy/mlflow_server.py: the compose stack's MLflow server command and environment, parsed by MLflow's
own CLI and auth-config reader (no server is started)."""

from __future__ import annotations

import os
import secrets

import pytest

from core.settings import LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, Settings, SettingsError


@pytest.fixture
def server_env(in_app_env, compose, monkeypatch) -> dict[str, str]:
    """The `mlflow` service's environment, in this process."""
    env = {k: str(v) for k, v in compose["services"]["mlflow"]["environment"].items()}
    for name, value in env.items():
        if name not in in_app_env:
            monkeypatch.setenv(name, value)
    return dict(os.environ)


def _parse(command: list[str], env: dict[str, str], monkeypatch) -> dict:
    """The options `mlflow server` would run with (its click command, environment included)."""
    from mlflow.cli import server

    assert command[:2] == ["mlflow", "server"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return server.make_context("server", command[2:]).params


def test_server_uses_postgres_via_psycopg2_and_proxies_artifacts_to_s3(mlflow_server, server_env, monkeypatch):
    settings = Settings()
    command = mlflow_server.server_command(server_env)
    env = mlflow_server.server_env(settings, server_env)
    params = _parse(command, env, monkeypatch)
    assert params["backend_store_uri"].startswith("postgresql+psycopg2://")
    assert params["backend_store_uri"].split("@")[1] == "timescaledb:5432/mlflow?sslmode=disable"
    assert params["artifacts_destination"] == f"s3://{server_env['EMS_S3_BUCKET']}/mlflow"
    assert params["serve_artifacts"] and (params["host"], params["port"]) == ("0.0.0.0", 5000)
    assert params["allowed_hosts"] == server_env["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert params["app_name"] is None
    assert (env["MLFLOW_S3_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        "http://minio:9000", server_env["EMS_S3_ACCESS_KEY"], server_env["EMS_S3_SECRET_KEY"])
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_no_secret_reaches_the_command_line(mlflow_server, server_env, monkeypatch):
    monkeypatch.setenv("EMS_MLFLOW_AUTH", "true")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", secrets.token_hex(8))
    command = " ".join(mlflow_server.server_command(dict(os.environ)))
    for name in ("EMS_PG_PASSWORD", "EMS_S3_SECRET_KEY", "EMS_S3_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD",
                 "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert os.environ[name] not in command, name


def test_basic_auth_keeps_users_in_postgres_and_starts_private(mlflow_server, server_env, tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.permissions import ALL_PERMISSIONS

    monkeypatch.setenv("EMS_PG_PASSWORD", "p@ss:w/rd%")  # % must survive configparser interpolation
    monkeypatch.setenv("EMS_MLFLOW_AUTH", "true")
    admin_password = secrets.token_hex(8)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", admin_password)
    assert os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # set by the compose file from .env
    env, settings = dict(os.environ), Settings()
    path = tmp_path / "auth.ini"
    path.write_text(mlflow_server.auth_config(settings, env))
    command_env = mlflow_server.server_env(settings, env, path)
    params = _parse(mlflow_server.server_command(env), command_env, monkeypatch)
    assert params["app_name"] == "basic-auth"
    config = read_auth_config()  # MLflow's reader, through MLFLOW_AUTH_CONFIG_PATH
    assert config.database_uri == settings.postgres.sqlalchemy_url("mlflow_auth")
    assert config.default_permission == "NO_PERMISSIONS" and config.default_permission in ALL_PERMISSIONS
    assert (config.admin_username, config.admin_password) == ("admin", admin_password)
    assert mlflow_server.databases(settings, env) == ["mlflow", "mlflow_auth"]


@pytest.mark.parametrize("secret", ["MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"])
def test_basic_auth_without_its_secrets_is_refused(mlflow_server, server_env, env_example, secret, monkeypatch):
    assert env_example["EMS_MLFLOW_ADMIN_PASSWORD"] == env_example["EMS_MLFLOW_SECRET_KEY"] == ""
    monkeypatch.setenv("EMS_MLFLOW_AUTH", "true")
    monkeypatch.setenv(secret, "")
    with pytest.raises(SettingsError, match=secret):
        mlflow_server.auth_config(Settings(), dict(os.environ))


@pytest.mark.parametrize("value", ["maybe", "on?"])
def test_auth_switch_accepts_only_true_or_false(mlflow_server, value):
    with pytest.raises(SettingsError, match="EMS_MLFLOW_AUTH"):
        mlflow_server.auth_enabled({"EMS_MLFLOW_AUTH": value})


def test_allowed_hosts_are_required(mlflow_server, server_env):
    env = {**server_env, "MLFLOW_SERVER_ALLOWED_HOSTS": ""}
    with pytest.raises(SettingsError, match="MLFLOW_SERVER_ALLOWED_HOSTS"):
        mlflow_server.server_env(Settings(), env)


def test_only_the_mlflow_database_without_auth(mlflow_server, server_env):
    assert mlflow_server.databases(Settings(), server_env) == ["mlflow"]


def test_start_refuses_local_throwaway_credentials_before_touching_anything(mlflow_server, server_env, monkeypatch):
    monkeypatch.setenv("EMS_S3_ACCESS_KEY", LOCAL_S3_ACCESS_KEY)
    monkeypatch.setenv("EMS_S3_SECRET_KEY", LOCAL_S3_SECRET_KEY)
    with pytest.raises(SystemExit, match="EMS_S3_ACCESS_KEY"):
        mlflow_server.main()
