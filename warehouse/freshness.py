"""How far the hourly features lag the readings, per asset: the SQL side of staleness reports.

`features_end` is the end of the asset's latest hourly bucket (the event time of its newest feature
row, what `ems refresh` has computed); `readings_end` is the end of the hour holding its latest
reading. The online side (what Redis holds) is read by inference/freshness.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

# Per asset `a`: (features_end, readings_end). One definition for staleness reports and the SDK's
# issue-time lookup (warehouse/store.py latest_times, which filters by tenant and assets).
LATEST_COLUMNS = """
           (SELECT max(h.bucket) + INTERVAL '1 hour' FROM readings_hourly h
             WHERE h.tenant_id = a.tenant_id AND h.asset_id = a.asset_id),
           (SELECT date_bin(INTERVAL '1 hour', max(r.ts), TIMESTAMPTZ '2000-01-01 00:00:00+00') + INTERVAL '1 hour'
              FROM readings r WHERE r.tenant_id = a.tenant_id AND r.asset_id = a.asset_id)"""
LATEST_SQL = f"""
    SELECT a.tenant_id, a.asset_id, {LATEST_COLUMNS}
    FROM assets a
    WHERE (%(tenant)s::text IS NULL OR a.tenant_id = %(tenant)s)
      AND (%(assets)s::text[] IS NULL OR a.asset_id = ANY(%(assets)s))
    ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Latest:
    tenant_id: str
    asset_id: str
    features_end: datetime | None  # end of the latest hourly bucket (the newest feature row's event time)
    readings_end: datetime | None  # end of the hour holding the latest reading


def latest(conn: psycopg.Connection, tenant: str | None = None, assets: list[str] | None = None) -> list[Latest]:
    """Per asset (of one tenant, or of all): the newest feature hour and the newest reading's hour."""
    return [Latest(*row) for row in conn.execute(LATEST_SQL, {"tenant": tenant, "assets": assets})]
