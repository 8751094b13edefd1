"""Reading steps and the sub-hourly feature tables (feature_repo/sql/124_step_features.sql).

Readings are stored at their native step. Ingest records each asset's step (the most common spacing of the
readings it loads, the finest seen over all loads) on the asset; `ems refresh` rolls the readings of assets
whose step divides 15 or 30 minutes up to those steps (mean per bucket) and computes the step features there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from core.names import STEP_INTERVALS

STEP_TABLES = {step: f"load_features_{step}min" for step in STEP_INTERVALS}  # the migration's fixed names
STEP_COLUMNS = ("last_value", "lag_1d", "lag_7d", "avg_1d", "std_1d", "min_1d", "max_1d", "steps_1d", "avg_7d",
                "std_7d", "n_readings")


def native_steps(rows: pd.DataFrame) -> dict[str, int]:
    """Per asset (rows: asset_id, ts), the most common spacing of its distinct reading times in whole
    minutes (the smallest of equally common ones); assets with a single reading are left out."""
    out = {}
    for asset, ts in rows.groupby("asset_id", sort=False, observed=True)["ts"]:
        t = np.unique(ts.to_numpy(dtype="datetime64[s]").astype(np.int64))
        if len(t) < 2:
            continue
        minutes = np.maximum(np.round(np.diff(t) / 60).astype(np.int64), 1)
        values, counts = np.unique(minutes, return_counts=True)
        out[str(asset)] = int(min(values[counts == counts.max()].min(), 1440))
    return out


def record_steps(conn: psycopg.Connection, tenant: str, steps: dict[str, int]) -> None:
    """Store each asset's step, keeping the finest seen (a load of hourly corrections does not coarsen an
    asset whose readings come every 10 minutes)."""
    if steps:
        conn.execute(
            "UPDATE assets a SET step_minutes = least(coalesce(a.step_minutes, s.step), s.step)"
            " FROM unnest(%s::text[], %s::int[]) AS s(asset_id, step)"
            " WHERE a.tenant_id = %s AND a.asset_id = s.asset_id"
            " AND a.step_minutes IS DISTINCT FROM least(coalesce(a.step_minutes, s.step), s.step)",
            (list(steps), list(steps.values()), tenant))


class AssetStep(NamedTuple):
    step: int | None  # minutes between readings (None: nothing ingested since steps are recorded)
    timezone: str
    unit: str | None


def asset_step(conn: psycopg.Connection, tenant: str, asset: str) -> AssetStep | None:
    row = conn.execute("SELECT step_minutes, timezone, unit FROM assets WHERE tenant_id = %s AND asset_id = %s",
                       (tenant, asset)).fetchone()
    return AssetStep(*row) if row else None


def step_rows(conn: psycopg.Connection, tenant: str, assets: list[str], step: int,
              since: pd.Timestamp | None = None, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The step feature rows of `assets` with event_timestamp in (since, until], in time order."""
    query = sql.SQL("SELECT asset_id, event_timestamp, {cols} FROM {table} WHERE tenant_id = %s AND asset_id = ANY(%s)"
                    " AND event_timestamp > coalesce(%s, '-infinity'::timestamptz)"
                    " AND event_timestamp <= coalesce(%s, 'infinity'::timestamptz)"
                    " ORDER BY asset_id, event_timestamp").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, STEP_COLUMNS)), table=sql.Identifier(STEP_TABLES[step]))
    with conn.cursor() as cur:
        cur.execute(query, (tenant, assets, since, until))
        frame = pd.DataFrame(cur.fetchall(), columns=["asset_id", "event_timestamp", *STEP_COLUMNS])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    for c in STEP_COLUMNS:
        frame[c] = frame[c].astype(float)
    return frame


def step_series(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Per asset, the step means (last_value) indexed by bucket end."""
    return {str(a): part.set_index("event_timestamp")["last_value"].astype(float)
            for a, part in frame.groupby("asset_id", sort=False)}


def latest_step(conn: psycopg.Connection, tenant: str, asset: str, step: int) -> pd.Timestamp | None:
    """The end of the asset's latest complete step bucket in the step table (the issue time of a forecast)."""
    row = conn.execute(sql.SQL("SELECT max(event_timestamp) FROM {} WHERE tenant_id = %s AND asset_id = %s").format(
        sql.Identifier(STEP_TABLES[step])), (tenant, asset)).fetchone()
    return pd.Timestamp(row[0]).tz_convert("UTC") if row and row[0] is not None else None
