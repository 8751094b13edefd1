"""Anomaly alert records (table `anomaly_alerts`, feature_repo/sql/120_anomaly_alerts.sql).

One alert is a run of consecutive anomalous hours of one asset under one detector. `record` is
idempotent: an hour an alert already covers (open or acknowledged) changes nothing but a higher score;
an hour adjacent to an open alert extends it; any other hour opens a new alert. All of one asset's hours
are written in one transaction under an advisory lock, so a rerun or a concurrent run never duplicates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from psycopg.rows import dict_row

from core.errors import EmsError, InvalidArgumentError
from core.names import check_asset_id, check_tenant_id
from core.settings import Settings
from warehouse.db import connect

HOUR = timedelta(hours=1)
SEVERITIES = ("low", "medium", "high", "critical")  # registry/severity.py bands, lowest first
STATES = ("open", "acknowledged")
MAX_LIMIT = 10_000
MAX_NOTE = 500
_RETURNING = (" RETURNING id, tenant_id, asset_id, detector, model_id, window_start, window_end, severity, score, "
              "explanation, state, created_at, updated_at, acknowledged_at, acknowledged_by, note")
_LIST = ("SELECT id, tenant_id, asset_id, detector, model_id, window_start, window_end, severity, score, explanation, "
         "state, created_at, updated_at, acknowledged_at, acknowledged_by, note FROM anomaly_alerts "
         "WHERE tenant_id = %(tenant)s AND (%(state)s::text IS NULL OR state = %(state)s) "
         "AND (%(asset)s::text IS NULL OR asset_id = %(asset)s) ORDER BY window_start DESC, id DESC LIMIT %(limit)s")
_ACK = ("UPDATE anomaly_alerts SET state = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, now()), "
        "acknowledged_by = coalesce(acknowledged_by, %(by)s), note = coalesce(%(note)s, note), updated_at = now() "
        "WHERE id = %(id)s AND tenant_id = %(tenant)s" + _RETURNING)


class AlertNotFoundError(EmsError, LookupError):
    """No alert with that id for that tenant."""


@dataclass(frozen=True)
class AnomalousHour:
    hour: datetime  # start of the hour, UTC
    score: float
    severity: str
    explanation: str


@dataclass(frozen=True)
class Alert:
    id: int
    tenant_id: str
    asset_id: str
    detector: str
    model_id: str
    window_start: datetime
    window_end: datetime
    severity: str
    score: float
    explanation: str
    state: str
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None

    def as_dict(self) -> dict:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass
class RecordReport:
    opened: int = 0
    extended: int = 0
    unchanged: int = 0  # hours an alert already covered

    def add(self, other: RecordReport) -> None:
        self.opened += other.opened
        self.extended += other.extended
        self.unchanged += other.unchanged


def _worse(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


def record(settings: Settings, tenant: str, asset: str, detector: str, model_id: str,
           hours: list[AnomalousHour]) -> RecordReport:
    """Write the anomalous `hours` of one asset as alerts (module docstring); one transaction."""
    check_tenant_id(tenant)
    check_asset_id(asset)
    for h in hours:
        if h.severity not in SEVERITIES:
            raise InvalidArgumentError(f"severity {h.severity!r} is not one of {', '.join(SEVERITIES)}")
    report = RecordReport()
    if not hours:
        return report
    with connect(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('anomaly_alerts'), hashtext(%s))",
                     (f"{tenant}\x1f{asset}\x1f{detector}",))
        for h in sorted(hours, key=lambda x: x.hour):
            key = {"tenant": tenant, "asset": asset, "detector": detector, "start": h.hour, "end": h.hour + HOUR}
            cover = conn.execute(
                "SELECT id, score FROM anomaly_alerts WHERE tenant_id = %(tenant)s AND asset_id = %(asset)s AND "
                "detector = %(detector)s AND window_start <= %(start)s AND window_end >= %(end)s "
                "ORDER BY id LIMIT 1", key).fetchone()
            if cover:
                if h.score > cover[1]:
                    conn.execute("UPDATE anomaly_alerts SET score = %s, severity = %s, explanation = %s, "
                                 "model_id = %s, updated_at = now() WHERE id = %s",
                                 (h.score, h.severity, h.explanation, model_id, cover[0]))
                report.unchanged += 1
                continue
            near = conn.execute(
                "SELECT id, score, severity FROM anomaly_alerts WHERE tenant_id = %(tenant)s AND "
                "asset_id = %(asset)s AND detector = %(detector)s AND state = 'open' AND "
                "(window_end = %(start)s OR window_start = %(end)s) ORDER BY window_start LIMIT 1", key).fetchone()
            if near:
                top = h.score > near[1]
                conn.execute(
                    "UPDATE anomaly_alerts SET window_start = least(window_start, %s), "
                    "window_end = greatest(window_end, %s), score = greatest(score, %s), severity = %s, "
                    "explanation = CASE WHEN %s THEN %s ELSE explanation END, model_id = %s, updated_at = now() "
                    "WHERE id = %s",
                    (h.hour, h.hour + HOUR, h.score, _worse(h.severity, near[2]), top, h.explanation, model_id,
                     near[0]))
                report.extended += 1
                continue
            conn.execute(
                "INSERT INTO anomaly_alerts (tenant_id, asset_id, detector, model_id, window_start, window_end, "
                "severity, score, explanation) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (tenant, asset, detector, model_id, h.hour, h.hour + HOUR, h.severity, h.score, h.explanation))
            report.opened += 1
    return report


def list_alerts(settings: Settings, tenant: str, state: str | None = None, asset: str | None = None,
                limit: int = 100) -> list[Alert]:
    """The tenant's alerts, newest window first; optionally only one state or one asset."""
    check_tenant_id(tenant)
    if state is not None and state not in STATES:
        raise InvalidArgumentError(f"state {state!r} is not one of {', '.join(STATES)}")
    if asset is not None:
        check_asset_id(asset)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit={limit!r} is out of range 1..{MAX_LIMIT}")
    with connect(settings) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_LIST, {"tenant": tenant, "state": state, "asset": asset, "limit": limit}).fetchall()
    return [Alert(**r) for r in rows]


def acknowledge(settings: Settings, tenant: str, alert_id: int, by: str, note: str | None = None) -> Alert:
    """Mark one open alert acknowledged (idempotent: acknowledging again keeps the first who and when)."""
    check_tenant_id(tenant)
    if isinstance(alert_id, bool) or not isinstance(alert_id, int) or alert_id < 1:
        raise InvalidArgumentError(f"alert id {alert_id!r} must be a positive integer")
    if note is not None and (not note.strip() or len(note) > MAX_NOTE):
        raise InvalidArgumentError(f"note {note!r} must be 1..{MAX_NOTE} characters of text")
    with connect(settings) as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_ACK, {"by": by, "note": note, "id": alert_id, "tenant": tenant}).fetchone()
    if row is None:
        raise AlertNotFoundError(f"tenant {tenant!r} has no alert {alert_id}; list them with `ems alerts list`")
    return Alert(**row)
