"""`ems refresh`: bring the hourly aggregates up to date with what ingest queued.

Plain PostgreSQL: recompute the queued hours into the hourly tables (SQL functions in
feature_repo/sql/055_refresh_hourly.plain.sql). TimescaleDB: refresh the continuous aggregates over
the queued window (refresh_continuous_aggregate cannot run inside a transaction).
"""

from __future__ import annotations

import logging

from psycopg import sql

from stack.settings import Settings
from warehouse.db import connect
from warehouse.migrate import flavour

logger = logging.getLogger(__name__)

# (hourly relation, refresh queue, plain-path refresh function): a fixed allow-list.
AGGREGATES = (
    ("readings_hourly", "readings_refresh_queue", "ems_refresh_readings_hourly"),
    ("weather_hourly", "weather_refresh_queue", "ems_refresh_weather_hourly"),
)


def refresh(settings: Settings) -> dict[str, int]:
    """Refresh every hourly aggregate; returns rows written (plain) or buckets in range (timescale)."""
    kind = flavour(settings)
    out = {}
    for relation, queue, function in AGGREGATES:
        if kind == "plain":
            with connect(settings) as conn:
                out[relation] = conn.execute(sql.SQL("SELECT {}()").format(sql.Identifier(function))).fetchone()[0]
        else:
            out[relation] = _refresh_timescale(settings, relation, queue)
        logger.info("refreshed %s: %s", relation, out[relation])
    return out


def _refresh_timescale(settings: Settings, relation: str, queue: str) -> int:
    with connect(settings, autocommit=True) as conn:
        last_id, lo, hi = conn.execute(
            sql.SQL(
                "SELECT max(id), date_bin(INTERVAL '1 hour', min(from_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00'),"
                " date_bin(INTERVAL '1 hour', max(to_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00') + INTERVAL '1 hour'"
                " FROM {}"
            ).format(sql.Identifier(queue))
        ).fetchone()
        if last_id is None:
            return 0
        conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", (relation, lo, hi))
        conn.execute(sql.SQL("DELETE FROM {} WHERE id <= %s").format(sql.Identifier(queue)), (last_id,))
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE bucket >= %s AND bucket < %s").format(sql.Identifier(relation)),
            (lo, hi),
        ).fetchone()[0]
