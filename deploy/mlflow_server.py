"""The compose stack's MLflow server, configured from the same settings as `ems` (core/settings.py).

Backend store: database `mlflow` on the stack's Postgres through psycopg2 (psycopg 3 breaks stage
transitions with archiving); artifacts proxied by the server to the S3 bucket, so clients need no
S3 credentials. MLflow reads `MLFLOW_SERVER_ALLOWED_HOSTS` itself and refuses other Host headers.
With `EMS_MLFLOW_AUTH=true` the server runs MLflow's basic-auth app: users and permissions live in
database `mlflow_auth`, new resources are private to their creator (default permission
NO_PERMISSIONS), and the first admin comes from `MLFLOW_AUTH_ADMIN_USERNAME` /
`MLFLOW_AUTH_ADMIN_PASSWORD`; CSRF tokens are signed with `MLFLOW_FLASK_SERVER_SECRET_KEY`. Secrets go to
MLflow through the environment, never the command line.

Run by the image as `python deploy/mlflow_server.py` (service `mlflow` in mlflow-compose.yml).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

# Listen address inside the container (the compose file publishes the port on loopback only);
# MLflow's own MLFLOW_HOST / MLFLOW_PORT override them.
HOST, PORT = "0.0.0.0", 5000
AUTH_DATABASE = "mlflow_auth"
AUTH_DEFAULT_PERMISSION = "NO_PERMISSIONS"
AUTH_SETTINGS = (  # (variable, what it is): required with EMS_MLFLOW_AUTH=true
    ("MLFLOW_AUTH_ADMIN_USERNAME", "the first MLflow admin"),
    ("MLFLOW_AUTH_ADMIN_PASSWORD", "the first MLflow admin's password"),
    ("MLFLOW_FLASK_SERVER_SECRET_KEY", "a static key for CSRF tokens, the same for every worker"),
)
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def auth_enabled(env: Mapping[str, str]) -> bool:
    value = env.get("EMS_MLFLOW_AUTH", "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise SettingsError(f"EMS_MLFLOW_AUTH={value!r} must be true or false")
    return value in _TRUE


def auth_config(settings: Settings, env: Mapping[str, str]) -> str:
    """basic_auth.ini for MLflow's auth app: the user store in Postgres, no password in the file
    except inside the database URI (the file is written 0600 and never committed)."""
    for name, what in AUTH_SETTINGS:
        if not env.get(name):
            raise SettingsError(f"EMS_MLFLOW_AUTH=true needs {name} ({what})")
    # MLflow reads the file with configparser's interpolation: a literal % is written %%.
    database_uri = settings.postgres.sqlalchemy_url(AUTH_DATABASE).replace("%", "%%")
    return (
        "[mlflow]\n"
        f"default_permission = {AUTH_DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def databases(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """The Postgres databases the server needs."""
    return [settings.mlflow_database, *([AUTH_DATABASE] if auth_enabled(env) else [])]


def server_command(env: Mapping[str, str]) -> list[str]:
    command = ["mlflow", "server", "--serve-artifacts"]
    if auth_enabled(env):
        command += ["--app-name", "basic-auth"]
    return command


def server_env(settings: Settings, env: Mapping[str, str], auth_config_path: Path | None = None) -> dict[str, str]:
    """The server's environment: the caller's, plus the store URIs and S3 access from Settings."""
    if not env.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        raise SettingsError("set MLFLOW_SERVER_ALLOWED_HOSTS (host[:port] names clients use, e.g. mlflow:5000)")
    out = {
        "MLFLOW_HOST": HOST,
        "MLFLOW_PORT": str(PORT),
        **env,
        **settings.service_env(),
        "MLFLOW_BACKEND_STORE_URI": settings.mlflow_backend_uri,
        "MLFLOW_ARTIFACTS_DESTINATION": settings.mlflow_artifacts_destination,
    }
    if auth_config_path is not None:
        out["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path)
    return out


def ensure_databases(settings: Settings, names: list[str]) -> None:
    """Create the server's databases beside the feature data when they are missing (idempotent), closed to
    every role but their owner (tenant database roles cannot log in to them)."""
    from warehouse.db import ensure_databases as create_missing

    create_missing(settings.postgres, names, SettingsError, private=tuple(names))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = dict(os.environ)
    try:
        settings = Settings()
        settings.check_credentials()
        ensure_databases(settings, databases(settings, env))
        config_path = None
        if auth_enabled(env):
            config_path = Path(tempfile.mkstemp(prefix="mlflow-auth-", suffix=".ini")[1])
            config_path.write_text(auth_config(settings, env))  # mkstemp made it 0600
        command, command_env = server_command(env), server_env(settings, env, config_path)
    except SettingsError as e:
        sys.exit(f"error: {e}")
    logger.info("exec %s", " ".join(command))
    os.execvpe(command[0], command, command_env)


if __name__ == "__main__":
    main()
