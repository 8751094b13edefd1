"""SQL of the drift and freshness checks (inference/drift.py): the stored hourly feature values of a
tenant in a time window, and the alert records of table `monitor_alerts` (migration 122)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import pandas as pd
from psycopg.rows import dict_row

from core.names import check_tenant_id
from core.settings import Settings
from warehouse.db import connect

# Every numeric feature stored per asset and hour (feature_repo/sql/090_feature_tables.sql).
FEATURES = ("lag_1h", "lag_24h", "lag_168h", "historical_avg_24h", "historical_std_24h", "min_24h", "max_24h",
            "range_24h", "historical_avg_168h", "historical_std_168h", "min_168h", "max_168h", "range_168h",
            "temperature", "humidity", "solar_irradiance", "wind_speed")
_VALUES = """
    SELECT l.asset_id, l.event_timestamp, l.lag_1h, l.lag_24h, l.lag_168h, r.historical_avg_24h,
           r.historical_std_24h, r.min_24h, r.max_24h, r.range_24h, r.historical_avg_168h, r.historical_std_168h,
           r.min_168h, r.max_168h, r.range_168h, w.temperature, w.humidity, w.solar_irradiance, w.wind_speed
    FROM load_lag_features l
    LEFT JOIN load_rolling_features r USING (tenant_id, asset_id, event_timestamp)
    LEFT JOIN asset_weather_features w USING (tenant_id, asset_id, event_timestamp)
    WHERE l.tenant_id = %(tenant)s AND l.event_timestamp > %(start)s AND l.event_timestamp <= %(end)s
    ORDER BY 1, 2
"""
_RAISE = """
    INSERT INTO monitor_alerts (tenant_id, asset_id, kind, subject, value, threshold, window_start, window_end)
    VALUES (%(tenant)s, %(asset)s, %(kind)s, %(subject)s, %(value)s, %(threshold)s, %(start)s, %(end)s)
    ON CONFLICT (tenant_id, asset_id, kind, subject) WHERE state = 'open' DO UPDATE SET
        value = EXCLUDED.value, threshold = EXCLUDED.threshold, window_start = EXCLUDED.window_start,
        window_end = EXCLUDED.window_end, last_seen = now()
    RETURNING (xmax = 0) AS inserted
"""
_OPEN = """
    SELECT id, tenant_id, asset_id, kind, subject, value, threshold, window_start, window_end, state, first_seen,
           last_seen, acknowledged_at, acknowledged_by
    FROM monitor_alerts WHERE tenant_id = %(tenant)s AND state = 'open' ORDER BY kind, asset_id, subject
"""


@dataclass(frozen=True)
class MonitorAlert:
    id: int
    tenant_id: str
    asset_id: str
    kind: str
    subject: str
    value: float
    threshold: float
    window_start: datetime | None
    window_end: datetime | None
    state: str
    first_seen: datetime
    last_seen: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    def as_dict(self) -> dict:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def feature_values(settings: Settings, tenant: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Every asset's stored feature rows with event time in (start, end]."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.execute(_VALUES, {"tenant": tenant, "start": start, "end": end}).fetchall()
    frame = pd.DataFrame(rows, columns=["asset_id", "event_timestamp", *FEATURES])
    return frame.astype({f: float for f in FEATURES})


def raise_alerts(settings: Settings, tenant: str, crossings: list[dict]) -> dict[str, int]:
    """Record each crossing (asset, kind, subject, value, threshold, start, end) in one transaction: a new
    open alert, or the open one of the same (asset, kind, subject) updated."""
    check_tenant_id(tenant)
    counts = {"opened": 0, "updated": 0}
    with connect(settings) as conn, conn.transaction():
        for c in crossings:
            (inserted,) = conn.execute(_RAISE, {"tenant": tenant, **c}).fetchone()
            counts["opened" if inserted else "updated"] += 1
    return counts


def open_alerts(settings: Settings, tenant: str) -> list[MonitorAlert]:
    check_tenant_id(tenant)
    with connect(settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        return [MonitorAlert(**r) for r in cur.execute(_OPEN, {"tenant": tenant}).fetchall()]
