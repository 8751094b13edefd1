"""The forecast log (table `forecast_log`, feature_repo/sql/121_forecast_log.sql): served forecasts
written per target hour, and read back joined with the actual hourly mean of that hour and the
seasonal-naive forecast of it (the same hour one week earlier, known at issue time for horizons <= 168)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.names import check_asset_id, check_tenant_id
from core.settings import Settings
from warehouse.db import connect

_UPSERT = """
    INSERT INTO forecast_log (tenant_id, asset_id, model_id, issue_time, target_time, horizon_h, point, p10, p50, p90,
                              source)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (tenant_id, asset_id, model_id, issue_time, target_time) DO UPDATE SET
        horizon_h = EXCLUDED.horizon_h, point = EXCLUDED.point, p10 = EXCLUDED.p10, p50 = EXCLUDED.p50,
        p90 = EXCLUDED.p90, source = EXCLUDED.source, logged_at = now()
"""
# Logged rows whose target hour has an actual; naive_168 is NULL where that hour has no reading.
_JOINED = """
    SELECT f.tenant_id, f.asset_id, f.model_id, f.issue_time, f.target_time, f.horizon_h, f.point, f.p10, f.p50,
           f.p90, a.avg_value AS actual, n.avg_value AS naive_168
    FROM forecast_log f
    JOIN readings_hourly a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id AND a.bucket = f.target_time
    LEFT JOIN readings_hourly n ON n.tenant_id = f.tenant_id AND n.asset_id = f.asset_id
                               AND n.bucket = f.target_time - INTERVAL '168 hours'
    WHERE f.tenant_id = %(tenant)s
      AND (%(since)s::timestamptz IS NULL OR f.target_time >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR f.target_time < %(until)s)
    ORDER BY f.model_id, f.asset_id, f.issue_time, f.target_time
"""
COLUMNS = ["tenant_id", "asset_id", "model_id", "issue_time", "target_time", "horizon_h", "point", "p10", "p50", "p90",
           "actual", "naive_168"]


def write(settings: Settings, tenant: str, asset: str, model_id: str, issue_time: datetime, rows: pd.DataFrame,
          source: str) -> int:
    """Log one forecast (`rows`: timestamp, horizon_h, point and optionally p10/p50/p90); one transaction."""
    check_tenant_id(tenant)
    check_asset_id(asset)
    q = {c: rows[c].to_numpy() if c in rows.columns else [None] * len(rows) for c in ("p10", "p50", "p90")}
    values = [(tenant, asset, model_id, issue_time, ts.to_pydatetime(), int(h), float(p), *(
        None if q[c][i] is None else float(q[c][i]) for c in ("p10", "p50", "p90")), source)
        for i, (ts, h, p) in enumerate(zip(pd.to_datetime(rows["timestamp"], utc=True), rows["horizon_h"],
                                           rows["point"], strict=True))]
    with connect(settings) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, values)
    return len(values)


def joined(settings: Settings, tenant: str, since: datetime | None = None, until: datetime | None = None
           ) -> pd.DataFrame:
    """Every logged forecast hour of the tenant whose actual is known, with its actual and naive_168."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.execute(_JOINED, {"tenant": tenant, "since": since, "until": until}).fetchall()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("point", "p10", "p50", "p90", "actual", "naive_168"):
        frame[c] = frame[c].astype(float)
    return frame


def tenants(settings: Settings) -> list[str]:
    """Tenants with at least one logged forecast."""
    with connect(settings) as conn:
        return [t for (t,) in conn.execute("SELECT DISTINCT tenant_id FROM forecast_log ORDER BY 1")]
