"""Reads of the hourly relations shared by training, serving and evaluation: hourly mean series per
asset (indexed by the END of each hour, the label and lag_1h convention) and site peers.
`conn`: an open connection to reuse (the SDK keeps one), or None for a new one."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.settings import Settings
from warehouse.db import connect


def site_peers(conn, tenant: str, assets: list[str], settings=None) -> dict[str, list[str]]:
    """Per asset: the tenant's other assets at the same site (sorted; none without a site)."""
    query = ("SELECT a.asset_id, coalesce(array_agg(p.asset_id ORDER BY p.asset_id) FILTER (WHERE p.asset_id "
             "IS NOT NULL), '{}') FROM assets a LEFT JOIN assets p ON p.tenant_id = a.tenant_id AND "
             "p.site_id = a.site_id AND p.asset_id <> a.asset_id WHERE a.tenant_id = %s AND a.asset_id = ANY(%s) "
             "GROUP BY a.asset_id")
    rows = fetch(settings, conn, query, (tenant, list(assets)))
    found = {r[0]: list(r[1]) for r in rows}
    return {a: found.get(a, []) for a in assets}


def fetch(settings, conn, query: str, args: tuple) -> list[tuple]:
    """Rows of a warehouse query on `conn` or a new connection."""
    if conn is not None:
        return conn.execute(query, args).fetchall()
    with connect(settings) as c:
        return c.execute(query, args).fetchall()


def series_by_end(settings, conn, tenant: str, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """The asset's hourly means of the hours starting in [start, end), indexed by hour end (the values
    the feature views' lag_1h had at those hours); `conn` or a new connection."""
    return series(settings, conn, tenant, [asset], start, end)[asset]


def series(settings, conn, tenant: str, assets: list[str], start: pd.Timestamp, end: pd.Timestamp
           ) -> dict[str, pd.Series]:
    """series_by_end of several assets in one read: asset -> series (empty without rows)."""
    query = ("SELECT asset_id, bucket + INTERVAL '1 hour', avg_value FROM readings_hourly WHERE tenant_id = %s "
             "AND asset_id = ANY(%s) AND bucket >= %s AND bucket < %s ORDER BY asset_id, bucket")
    parts: dict[str, list[tuple]] = {a: [] for a in assets}
    for asset, end_time, value in fetch(settings, conn, query, (tenant, list(assets), start, end)):
        parts[asset].append((end_time, value))
    return {a: pd.Series([v for _, v in rows], index=pd.to_datetime([e for e, _ in rows], utc=True), dtype=float)
            for a, rows in parts.items()}


def history(settings: Settings, tenant: str, assets: list[str], until: datetime | None = None,
            history_days: int | None = None) -> dict[str, pd.Series]:
    """Hourly mean load per asset, indexed by the END of each hour (the label convention)."""
    query = """
        SELECT asset_id, bucket + INTERVAL '1 hour' AS hour_end, avg_value FROM readings_hourly
        WHERE tenant_id = %(tenant)s AND asset_id = ANY(%(assets)s)
          AND (%(until)s::timestamptz IS NULL OR bucket + INTERVAL '1 hour' <= %(until)s::timestamptz)
        ORDER BY asset_id, bucket
    """
    with connect(settings) as conn:
        rows = conn.execute(query, {"tenant": tenant, "assets": assets, "until": until}).fetchall()
    frame = pd.DataFrame(rows, columns=["asset_id", "hour_end", "value"])
    frame["hour_end"] = pd.to_datetime(frame["hour_end"], utc=True)
    out = {}
    for asset, part in frame.groupby("asset_id", sort=False):
        s = part.set_index("hour_end")["value"].astype(float)
        if history_days is not None and len(s):
            s = s[s.index > s.index[-1] - pd.Timedelta(days=history_days + 7)]  # +7: lags of the first week
        out[asset] = s
    return out
