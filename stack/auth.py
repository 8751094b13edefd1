"""MLflow basic auth: the local server's auth app (`ems up --auth`). Tenant users, roles and grants
are registry/access.py.

Server: `mlflow server --app-name basic-auth` reads `basic_auth.ini` under the stack's home
(MLFLOW_AUTH_CONFIG_PATH): users and permissions in database `mlflow_auth` of the same Postgres
(psycopg2), default permission NO_PERMISSIONS, so a user sees only what it was granted or created.
MLflow creates the first admin on first start from EMS_MLFLOW_ADMIN_USERNAME / _PASSWORD (a throwaway
default for loopback only) and ignores them once it exists; they reach the server through its
environment, never the file or the command line.

"""

from __future__ import annotations

import logging
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from core.settings import Settings
from stack.process import ServiceError

logger = logging.getLogger(__name__)

AUTH_APP = "basic-auth"  # `mlflow server --app-name`
DEFAULT_PERMISSION = "NO_PERMISSIONS"  # nothing is visible unless granted (or created by the user)


# ---------------------------------------------------------------- server
def enabled(settings: Settings) -> bool:
    """Does the local stack run with auth (MLflow's basic-auth app, Redis without an open `default` user)?
    As asked (EMS_MLFLOW_AUTH, `ems up --auth/--no-auth`), else as it ran last (basic_auth.ini is present)."""
    if settings.mlflow_auth is not None:
        return settings.mlflow_auth
    return config_path(settings).exists()


def config_path(settings: Settings) -> Path:
    """The auth app's config; its presence also records that the local stack runs with auth."""
    return settings.home / "mlflow" / "basic_auth.ini"


def server_config(settings: Settings) -> str:
    # MLflow reads the file with configparser's interpolation: a literal % is written %%.
    database_uri = settings.postgres.sqlalchemy_url(settings.mlflow_auth_database).replace("%", "%%")
    return (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def write_server_config(settings: Settings) -> Path:
    """Write basic_auth.ini readable by its owner only (the database URI holds a password)."""
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(server_config(settings))
    os.chmod(path, 0o600)
    return path


def server_env(settings: Settings) -> dict[str, str]:
    """The auth app's environment: its config, the first admin, and the CSRF key of its forms (new
    at each start; a browser session ends with the server)."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config_path(settings)),
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow_admin_username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": settings.mlflow_admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }


def ensure_database(settings: Settings) -> None:
    """Create the auth app's database beside MLflow's when it is missing (idempotent)."""
    from warehouse.db import ensure_databases

    ensure_databases(settings.postgres, [settings.mlflow_auth_database], ServiceError, connect_timeout=5,
                     private=(settings.mlflow_auth_database,))


def probe(tracking_uri: str) -> bool | None:
    """Does the MLflow server ask for a login? None when it does not answer."""
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=3):
            return False
    except urllib.error.HTTPError as e:
        return e.code == 401
    except OSError:
        return None


