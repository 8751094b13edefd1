"""`ems refresh`: bring the hourly relations and the feature tables up to date with what ingest queued.

Ingest records the time ranges it touched in the refresh queues. A refresh takes a snapshot of the
queues, merges the ranges per asset (per site for weather) and then, per batch of assets, in ONE
transaction: recomputes the hourly buckets in those ranges (plain PostgreSQL; TimescaleDB refreshes
its continuous aggregates over the same windows first, which cannot run inside a transaction),
recomputes the feature rows that depend on them (feature_repo/sql/093_refresh_features.sql: a
changed hour moves the rows up to 167 h later), queues the entities whose rows changed for
`ems materialize`, and deletes the queue entries it handled. A refresh killed at any point leaves
the tables and the queues consistent; the next one does the rest. Two refreshes at once: the
second waits for the first (a session advisory lock), then finds the queues empty or newer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg

from core.settings import Settings
from warehouse.db import connect
from warehouse.migrate import flavour
from warehouse.steps import STEP_TABLES

logger = logging.getLogger(__name__)

_HOUR = "date_bin(INTERVAL '1 hour', {col}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
# Hourly bucket ranges [lo, hi) per asset, merged (range_agg) so an hour is recomputed once.
# The queue entries are captured by id: an ingest that commits during the refresh (with a lower id
# than one already seen) is left for the next refresh, never deleted unprocessed.
READINGS_RANGES_SQL = f"""
    SELECT tenant_id, asset_id, lower(r), upper(r), ids
    FROM (SELECT tenant_id, asset_id, array_agg(id) AS ids,
                 unnest(range_agg(tstzrange({_HOUR.format(col='from_ts')},
                                            {_HOUR.format(col='to_ts')} + INTERVAL '1 hour'))) AS r
          FROM readings_refresh_queue WHERE id = ANY(%s) GROUP BY tenant_id, asset_id) AS q
    ORDER BY tenant_id, asset_id, 3
"""
WEATHER_RANGES_SQL = f"""
    SELECT site_id, lower(r), upper(r)
    FROM (SELECT site_id,
                 unnest(range_agg(tstzrange({_HOUR.format(col='from_ts')},
                                            {_HOUR.format(col='to_ts')} + INTERVAL '1 hour'))) AS r
          FROM weather_refresh_queue WHERE id = ANY(%s) GROUP BY site_id) AS q
    ORDER BY site_id, 2
"""
# TimescaleDB: one continuous-aggregate refresh per merged window over all assets (a late hour in
# 2019 and today's hour are two small windows, not one spanning the years between).
WINDOWS_SQL = f"""
    SELECT lower(r), upper(r)
    FROM (SELECT unnest(range_agg(tstzrange({_HOUR.format(col='from_ts')},
                                            {_HOUR.format(col='to_ts')} + INTERVAL '1 hour'))) AS r
          FROM {{queue}} WHERE id = ANY(%s)) AS q
"""
# Feature rows recomputed per transaction (assets are never split): bounds a batch's temp tables.
BATCH_HOURS = 2_000_000
_LOCK = "SELECT pg_advisory_lock(hashtext('ems_refresh'))"
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('ems_refresh'))"


@dataclass
class RefreshReport:
    """What one refresh recomputed: hourly buckets written and feature rows changed, per relation."""

    rows: dict[str, int] = field(default_factory=dict)
    assets: int = 0  # assets whose load features were recomputed
    sites: int = 0
    waited: bool = False  # another refresh held the lock first

    def add(self, relation: str, n: int) -> None:
        self.rows[relation] = self.rows.get(relation, 0) + int(n or 0)


@dataclass(frozen=True)
class _Snapshot:
    readings_ids: list[int]
    weather_ids: list[int]
    assets_ids: list[int]
    readings: list[tuple[str, str, datetime, datetime, list[int]]]
    weather: list[tuple[str, datetime, datetime]]
    changed_assets: list[tuple[str, str]]


def refresh(settings: Settings, progress: Callable[[int, int], None] | None = None) -> RefreshReport:
    """Recompute what the refresh queues name; returns the rows written per relation."""
    kind = flavour(settings)
    report = RefreshReport()
    with connect(settings, autocommit=True) as conn:
        if not conn.execute(_TRY_LOCK).fetchone()[0]:
            logger.warning("another `ems refresh` is running; waiting for it to finish")
            report.waited = True
            conn.execute(_LOCK)
        snap = _snapshot(conn)
        if kind == "timescale":
            snap = _refresh_aggregates(conn, snap, report)
        batches = _batches(snap.readings) or [[]]  # one (empty) batch still handles weather and assets
        for i, batch in enumerate(batches):
            with conn.transaction():
                _refresh_batch(conn, kind, snap, batch, report, weather=i == len(batches) - 1)
            if progress:
                progress(i + 1, len(batches))
    logger.info("refresh: %s", report)
    return report


def _snapshot(conn: psycopg.Connection) -> _Snapshot:
    with conn.transaction():
        readings_ids = [i for (i,) in conn.execute("SELECT id FROM readings_refresh_queue")]
        weather_ids = [i for (i,) in conn.execute("SELECT id FROM weather_refresh_queue")]
        assets_ids = [i for (i,) in conn.execute("SELECT id FROM asset_refresh_queue")]
        readings = conn.execute(READINGS_RANGES_SQL, (readings_ids,)).fetchall() if readings_ids else []
        weather = conn.execute(WEATHER_RANGES_SQL, (weather_ids,)).fetchall() if weather_ids else []
        changed = (conn.execute("SELECT DISTINCT tenant_id, asset_id FROM asset_refresh_queue WHERE id = ANY(%s)",
                                (assets_ids,)).fetchall() if assets_ids else [])
    return _Snapshot(readings_ids, weather_ids, assets_ids, readings, weather, changed)


# Per continuous aggregate: its key columns, the queue feeding it and the snapshot field of its ranges.
_CAGGS = (("readings_hourly", ("tenant_id", "asset_id"), "readings_refresh_queue", "readings_ids"),
          ("weather_hourly", ("site_id",), "weather_refresh_queue", "weather_ids"))


def _refresh_aggregates(conn: psycopg.Connection, snap: _Snapshot, report: RefreshReport) -> _Snapshot:
    """TimescaleDB: refresh the continuous aggregates over the queued windows (outside a transaction;
    idempotent, so a refresh killed after this step redoes it harmlessly). A window's refresh
    rematerializes every key's buckets in it, and a bucket recomputed from the same readings can come
    out one ulp apart (summation order); so the buckets whose stored values changed are diffed and
    added to the ranges whose features are recomputed, keeping the feature tables exactly equal to
    what the hourly relation holds. Returns the snapshot with those ranges merged in."""
    from psycopg import sql

    extra: dict[str, list[tuple]] = {"readings_hourly": [], "weather_hourly": []}
    for relation, keys, queue, ids_field in _CAGGS:
        ids = getattr(snap, ids_field)
        if not ids:
            continue
        for lo, hi in conn.execute(sql.SQL(WINDOWS_SQL.format(queue="{}")).format(sql.Identifier(queue)),
                                   (ids,)).fetchall():
            window = sql.SQL("SELECT * FROM {} WHERE bucket >= %(lo)s AND bucket < %(hi)s").format(
                sql.Identifier(relation))
            conn.execute("DROP TABLE IF EXISTS _ems_before")
            conn.execute(sql.SQL("CREATE TEMP TABLE _ems_before AS {}").format(window), {"lo": lo, "hi": hi})
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", (relation, lo, hi))
            key = sql.SQL(", ").join(map(sql.Identifier, keys))
            changed = conn.execute(sql.SQL(
                "SELECT {key}, lower(r), upper(r) FROM (SELECT {key}, unnest(range_agg(tstzrange(bucket, bucket"
                " + INTERVAL '1 hour'))) AS r FROM (({window} EXCEPT SELECT * FROM _ems_before) UNION"
                " (SELECT * FROM _ems_before EXCEPT {window})) AS d GROUP BY {key}) AS m").format(
                    key=key, window=window), {"lo": lo, "hi": hi}).fetchall()
            conn.execute("DROP TABLE _ems_before")
            extra[relation].extend(changed)
    readings = _merge([(*row[:4], tuple(row[4])) for row in snap.readings]
                      + [(*row, ()) for row in extra["readings_hourly"]], key=2)
    weather = _merge([(*row, ()) for row in snap.weather] + [(*row, ()) for row in extra["weather_hourly"]], key=1)
    return replace(snap, readings=[(*r[:4], list(r[4])) for r in readings],
                   weather=[r[:3] for r in weather])


def _merge(rows: list[tuple], key: int) -> list[tuple]:
    """Rows (key..., lo, hi, ids) with overlapping or adjacent [lo, hi) of one key merged (ids joined),
    sorted by key and lo."""
    out: list[tuple] = []
    for row in sorted(rows, key=lambda r: (r[:key], r[key])):
        k, lo, hi, ids = row[:key], row[key], row[key + 1], row[key + 2]
        if out and out[-1][:key] == k and lo <= out[-1][key + 1]:
            last = out[-1]
            out[-1] = (*k, last[key], max(hi, last[key + 1]), tuple(sorted(set(last[key + 2]) | set(ids))))
        else:
            out.append((*k, lo, hi, tuple(ids)))
    return out


def _batches(ranges: list[tuple[str, str, datetime, datetime]]) -> list[list[tuple]]:
    """Split the per-asset ranges into batches of about BATCH_HOURS recomputed hours, never splitting
    an asset (its ranges share one transaction with its queue entries)."""
    batches: list[list[tuple]] = []
    current: list[tuple] = []
    hours = 0.0
    previous = None
    for row in ranges:
        key = row[:2]
        span = (row[3] - row[2]).total_seconds() / 3600 + 167
        if current and key != previous and hours + span > BATCH_HOURS:
            batches.append(current)
            current, hours = [], 0.0
        current.append(row)
        hours += span
        previous = key
    if current:
        batches.append(current)
    return batches


def _refresh_batch(conn: psycopg.Connection, kind: str, snap: _Snapshot, batch: list[tuple],
                   report: RefreshReport, weather: bool) -> None:
    """One transaction: hourly buckets (plain), load features of `batch`'s assets, their queue entries;
    with `weather`, also the weather buckets, the assets' weather rows and those queues."""
    # Corrections of old hours rewrite only the feature rows that changed; on TimescaleDB those may
    # lie in compressed chunks, which a refresh must be able to decompress whatever their number.
    conn.execute("SELECT set_config('timescaledb.max_tuples_decompressed_per_dml_transaction', '0', true)")
    tenants, assets, los, his = ([row[i] for row in batch] for i in range(4))
    if batch:
        if kind == "plain":
            report.add("readings_hourly", conn.execute("SELECT ems_refresh_readings_hourly(%s, %s, %s, %s)",
                                                       (tenants, assets, los, his)).fetchone()[0])
        else:
            report.add("readings_hourly", _buckets_in(conn, tenants, assets, los, his))
        lags, rolling = conn.execute("SELECT * FROM ems_refresh_load_features(%s, %s, %s, %s)",
                                     (tenants, assets, los, his)).fetchone()
        report.add("load_lag_features", lags)
        report.add("load_rolling_features", rolling)
        for step, table in STEP_TABLES.items():  # assets whose readings are that fine (warehouse/steps.py)
            report.add(table, conn.execute("SELECT ems_refresh_step_features(%s, %s, %s, %s, %s)",
                                           (step, tenants, assets, los, his)).fetchone()[0])
        report.assets += len({(t, a) for t, a in zip(tenants, assets, strict=True)})
        conn.execute("DELETE FROM readings_refresh_queue WHERE id = ANY(%s)",
                     (sorted({i for row in batch for i in row[4]}),))
    if not weather:
        return
    sites, slo, shi = (list(col) for col in zip(*snap.weather, strict=True)) if snap.weather else ([], [], [])
    if sites and kind == "plain":
        report.add("weather_hourly", conn.execute("SELECT ems_refresh_weather_hourly(%s, %s, %s)",
                                                  (sites, slo, shi)).fetchone()[0])
    elif sites:
        report.add("weather_hourly", conn.execute(
            "SELECT count(*) FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS d(site_id, lo, hi)"
            " JOIN weather_hourly h ON h.site_id = d.site_id AND h.bucket >= d.lo AND h.bucket < d.hi",
            (sites, slo, shi)).fetchone()[0])
    changed_t = [t for t, _ in snap.changed_assets]
    changed_a = [a for _, a in snap.changed_assets]
    if sites or changed_t:
        report.add("asset_weather_features", conn.execute(
            "SELECT ems_refresh_asset_weather(%s::text[], %s::timestamptz[], %s::timestamptz[],"
            " %s::text[], %s::text[])",
            (sites, slo, shi, changed_t, changed_a)).fetchone()[0])
        report.sites = len(set(sites))
    if snap.weather_ids:
        conn.execute("DELETE FROM weather_refresh_queue WHERE id = ANY(%s)", (snap.weather_ids,))
    if snap.assets_ids:
        conn.execute("DELETE FROM asset_refresh_queue WHERE id = ANY(%s)", (snap.assets_ids,))


def _buckets_in(conn: psycopg.Connection, tenants, assets, los, his) -> int:
    """TimescaleDB: the hourly buckets inside the refreshed ranges (what the aggregate refresh covered)."""
    return conn.execute(
        "SELECT count(*) FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
        " AS d(tenant_id, asset_id, lo, hi)"
        " JOIN readings_hourly h ON h.tenant_id = d.tenant_id AND h.asset_id = d.asset_id"
        " AND h.bucket >= d.lo AND h.bucket < d.hi",
        (tenants, assets, los, his),
    ).fetchone()[0]
