"""Connections to the project database (the Feast offline store), always in UTC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from inference.errors import EmsError
from stack.settings import Settings


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
