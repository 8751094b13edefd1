"""Connections to the project database (the Feast offline store), always in UTC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from inference.errors import EmsError
from stack.settings import Settings


class DatabaseUnavailableError(EmsError, RuntimeError):
    """Postgres could not be reached; the message names the address and the fix."""


@contextmanager
def connect(settings: Settings, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    addr = settings.postgres
    try:
        conn = psycopg.connect(addr.conninfo(), autocommit=autocommit, connect_timeout=5,
                               options="-c timezone=UTC")
    except psycopg.OperationalError as e:
        raise DatabaseUnavailableError(
            f"cannot reach Postgres at {addr.host}:{addr.port}/{addr.database} ({str(e).strip()}); "
            "start the local stack with `ems up` or fix the offline_store block of the Feast yaml"
        ) from e
    with conn:
        yield conn
