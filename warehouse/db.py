"""Connections to the project database (the Feast offline store), always in UTC."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from core.errors import EmsError
from core.settings import Settings

logger = logging.getLogger(__name__)


class DatabaseUnavailableError(EmsError, RuntimeError):
    """Postgres could not be reached; the message names the address and the fix."""


def open_connection(settings: Settings, autocommit: bool = False) -> psycopg.Connection:
    """A new connection in UTC; one clear error naming the address when Postgres is unreachable (on one
    line: libpq puts its hint on a second)."""
    addr = settings.postgres
    try:
        return psycopg.connect(addr.conninfo(), autocommit=autocommit, connect_timeout=5, options="-c timezone=UTC")
    except psycopg.OperationalError as e:
        raise DatabaseUnavailableError(
            f"cannot reach Postgres at {addr.host}:{addr.port}/{addr.database} ({' '.join(str(e).split())}); "
            "start the local stack with `ems up` or fix the offline_store block of the Feast yaml"
        ) from e


@contextmanager
def connect(settings: Settings, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    with open_connection(settings, autocommit) as conn:
        yield conn


def ensure_databases(addr, names: list[str], error: type[Exception], connect_timeout: int = 10,
                     private: tuple[str, ...] = ()) -> None:
    """Create each database in `names` that the server at `addr` (core.settings.PostgresAddress) lacks,
    through its maintenance database `postgres`; idempotent. Databases in `private` (MLflow's registry and
    its users, which only the operator's MLflow server reads) lose the CONNECT and TEMPORARY privileges
    every role has by default, so a tenant's database role cannot even log in to them; one this user does not
    own is left as it is, with a warning. A failure raises `error` naming the server, the user and the cause."""
    from psycopg import sql

    try:
        with psycopg.connect(host=addr.host, port=addr.port, dbname="postgres", user=addr.user,
                             password=addr.password, sslmode=addr.sslmode, connect_timeout=connect_timeout,
                             autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in dict.fromkeys(names):
                if name not in existing:
                    logger.info("creating database %s", name)
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            for name in dict.fromkeys(private):
                if name == addr.database:  # the feature data's own: tenant roles log in there
                    logger.warning("MLflow shares database %s with the feature data: tenant database roles can "
                                   "log in to it (give MLflow a database of its own)", name)
                    continue
                owned = conn.execute("SELECT pg_get_userbyid(datdba) = current_user FROM pg_database "
                                     "WHERE datname = %s", (name,)).fetchone()
                if owned and owned[0]:
                    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(name)))
                elif owned:
                    logger.warning("database %s is not owned by %s: its CONNECT privilege for every role is left "
                                   "as it is (revoke it as its owner)", name, addr.user)
    except psycopg.Error as e:
        raise error(f"postgres at {addr.host}:{addr.port}: cannot check or create databases "
                    f"{', '.join(map(repr, dict.fromkeys(names)))} as {addr.user!r} ({str(e).strip()}); "
                    "create them or grant CREATEDB") from e

