"""Versioned SQL migrations from feature_repo/sql/, recorded in `schema_migrations`.

Files are `NNN_<object>.sql` (both paths), `NNN_<object>.timescale.sql` (only when the TimescaleDB
extension can be created) and `NNN_<object>.plain.sql` (only without it). Each file runs once, in
its own transaction; a file edited after it ran is refused, so changes go in a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.errors import EmsError
from core.settings import ROOT, Settings
from warehouse.db import connect

logger = logging.getLogger(__name__)
SQL_DIR = ROOT / "feature_repo" / "sql"
FLAVOURS = ("timescale", "plain")
_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+?)(?:\.(?P<flavour>timescale|plain))?\.sql$")


class MigrationError(EmsError, RuntimeError):
    """A migration failed or was edited after it ran."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    flavour: str | None
    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(flavour: str, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migrations for one flavour, in version order."""
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_<object>[.timescale|.plain].sql")
        if m["flavour"] in (None, flavour):
            found.append(Migration(int(m["version"]), m["name"], m["flavour"], path))
    return found


def detect_flavour(conn: psycopg.Connection) -> str:
    """`timescale` when the extension exists or can be created, else `plain`. An extension that is
    installed but not preloaded (its CREATE would end the session with FATAL) falls back to the plain
    path with a warning that says how to enable it."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return "timescale"
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
        logger.info("TimescaleDB is not installed in this Postgres; using the plain PostgreSQL schema")
        return "plain"
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    if "timescaledb" not in [lib.strip() for lib in preload.split(",")]:
        logger.warning("TimescaleDB is installed but not in shared_preload_libraries (%r); using the plain "
                       "PostgreSQL schema. To use TimescaleDB, add timescaledb to shared_preload_libraries, "
                       "restart Postgres and migrate a new database", preload)
        return "plain"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return "timescale"
    except psycopg.Error as e:
        logger.warning("TimescaleDB could not be created (%s); using the plain PostgreSQL schema", str(e).strip())
        return "plain"


def flavour(settings: Settings) -> str:
    """The flavour the database was migrated with."""
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT flavour FROM schema_migrations WHERE flavour IS NOT NULL LIMIT 1"
        ).fetchone()
    return row[0] if row else "plain"


def migrate(settings: Settings, raw_retention: str | None = None) -> list[str]:
    """Apply pending migrations; returns the files applied. Safe to run concurrently and repeatedly.
    `raw_retention` (default: settings.raw_retention, EMS_RAW_RETENTION) is the TimescaleDB retention
    of raw and feature rows; a changed value updates the existing policies."""
    raw_retention = _check_retention(settings, raw_retention or settings.raw_retention)
    applied_now = []
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " filename text PRIMARY KEY, version int NOT NULL, flavour text,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ems_migrate'))")
            row = conn.execute("SELECT flavour FROM schema_migrations WHERE flavour IS NOT NULL LIMIT 1").fetchone()
            kind = row[0] if row else detect_flavour(conn)
            done = dict(conn.execute("SELECT filename, checksum FROM schema_migrations").fetchall())
            conn.execute("SELECT set_config('ems.raw_retention', %s, true)", (raw_retention,))
            for mig in discover(kind):
                if mig.key in done:
                    if done[mig.key] != mig.checksum:
                        raise MigrationError(
                            f"{mig.key} changed after it was applied; put the change in a new migration"
                        )
                    continue
                logger.info("applying %s", mig.key)
                try:
                    with conn.transaction():
                        conn.execute(mig.path.read_text())
                        conn.execute(
                            "INSERT INTO schema_migrations (filename, version, flavour, checksum)"
                            " VALUES (%s, %s, %s, %s)",
                            (mig.key, mig.version, kind, mig.checksum),
                        )
                except psycopg.Error as e:
                    raise MigrationError(f"{mig.key} failed: {str(e).strip()}") from e
                applied_now.append(mig.key)
            if kind == "timescale":
                _apply_retention(conn, raw_retention)
    return applied_now


# Hypertables whose rows the retention policy drops (raw data and the features computed from it).
RETAINED = ("readings", "weather", "load_lag_features", "load_rolling_features", "asset_weather_features",
            "load_features_30min", "load_features_15min")


def _check_retention(settings: Settings, value: str) -> str:
    with connect(settings) as conn:
        try:
            if conn.execute("SELECT %s::interval <= INTERVAL '0'", (value,)).fetchone()[0]:
                raise MigrationError(f"EMS_RAW_RETENTION={value!r} must be a positive interval, e.g. '3 years'")
        except psycopg.errors.DataError as e:
            raise MigrationError(f"EMS_RAW_RETENTION={value!r} is not a Postgres interval; use e.g. '3 years' "
                                 "or '400 days'") from e
    return value


def _apply_retention(conn: psycopg.Connection, value: str) -> None:
    """Make each retained hypertable's retention policy drop rows older than `value` (TimescaleDB)."""
    current = dict(conn.execute(
        "SELECT hypertable_name, (config->>'drop_after')::interval FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()").fetchall())
    wanted = conn.execute("SELECT %s::interval", (value,)).fetchone()[0]
    for table in RETAINED:
        if table in current and current[table] != wanted:
            logger.info("retention of %s: %s -> %s", table, current[table], value)
            conn.execute("SELECT remove_retention_policy(%s::regclass)", (table,))
            conn.execute("SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)", (table, value))
