"""Jobs: long work started over the API (a training, a point-in-time export), one row each in `jobs`.

The API process creates the row (`submit`, refused past a tenant's limit of unfinished jobs); the job's
own process moves it (`start`, `progress`, which also beats the heart, `finish`, `fail`). Every API
worker reads the same rows, so any worker answers for any job. A running job whose heartbeat is older
than `LOST_AFTER` lost its process (killed, machine restarted): `get` and `list_jobs` report it failed
with code `lost`, and it stops counting against the limit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.errors import JobNotFoundError, TooManyJobsError
from core.names import check_tenant_id
from core.settings import Settings
from warehouse.db import connect

KINDS = ("train", "export")
LOST_AFTER = timedelta(seconds=60)
HEARTBEAT_EVERY = timedelta(seconds=10)

# One statement for every read: a running job past its heartbeat is shown as lost.
_SELECT = """
    SELECT id, tenant_id, kind, request, created_by, step, done, total, result, pid,
           created_at, started_at, heartbeat_at,
           CASE WHEN status = 'running' AND heartbeat_at < now() - %(lost)s THEN 'failed' ELSE status END AS status,
           CASE WHEN status = 'running' AND heartbeat_at < now() - %(lost)s THEN 'lost' ELSE error_code END
               AS error_code,
           CASE WHEN status = 'running' AND heartbeat_at < now() - %(lost)s
                THEN 'the job''s process stopped reporting at ' || to_char(heartbeat_at AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '; submit it again'
                ELSE error END AS error,
           CASE WHEN status = 'running' AND heartbeat_at < now() - %(lost)s THEN heartbeat_at ELSE finished_at END
               AS finished_at
    FROM jobs
"""
_ONE = _SELECT + " WHERE id = %(id)s"
_OF_TENANT = _SELECT + (" WHERE tenant_id = %(tenant)s AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
                        " ORDER BY created_at DESC, id LIMIT %(limit)s")


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: str
    kind: str
    status: str  # queued | running | succeeded | failed
    request: dict
    created_by: str
    step: str | None
    done: int
    total: int | None
    result: dict | None
    error_code: str | None
    error: str | None
    pid: int | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    def as_dict(self) -> dict:
        """JSON-ready (ISO 8601 UTC times), without the process id."""
        out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(self).items() if k != "pid"}
        out["job_id"] = out.pop("id")
        return out


def submit(settings: Settings, tenant: str, kind: str, request: dict, created_by: str, limit: int) -> Job:
    """A new queued job, unless the tenant already has `limit` unfinished ones (serialized per tenant,
    so two submissions racing for the last place cannot both get it)."""
    check_tenant_id(tenant)
    if kind not in KINDS:
        raise ValueError(f"job kind {kind!r} is not one of {', '.join(KINDS)}")
    job_id = uuid.uuid4().hex
    with connect(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ems.jobs'), hashtext(%s))", (tenant,))
        (open_jobs,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE tenant_id = %s AND (status = 'queued' OR"
            " (status = 'running' AND heartbeat_at >= now() - %s))", (tenant, LOST_AFTER)).fetchone()
        if open_jobs >= limit:
            raise TooManyJobsError(f"tenant {tenant!r} has {open_jobs} jobs queued or running, the most it may "
                                   f"have (EMS_API_MAX_JOBS={limit}); wait for one to finish")
        conn.execute("INSERT INTO jobs (id, tenant_id, kind, request, created_by) VALUES (%s, %s, %s, %s, %s)",
                     (job_id, tenant, kind, Jsonb(request), created_by))
    return get(settings, job_id)


def get(settings: Settings, job_id: str) -> Job:
    with connect(settings) as conn:
        row = conn.cursor(row_factory=dict_row).execute(_ONE, {"id": job_id, "lost": LOST_AFTER}).fetchone()
    if row is None:
        raise JobNotFoundError(f"no job {job_id!r}")
    return Job(**row)


def list_jobs(settings: Settings, tenant: str, kind: str | None = None, limit: int = 100) -> list[Job]:
    """A tenant's jobs (of one kind), newest first."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            _OF_TENANT, {"tenant": tenant, "kind": kind, "limit": limit, "lost": LOST_AFTER}).fetchall()
    return [Job(**row) for row in rows]


def start(settings: Settings, job_id: str, pid: int) -> dict:
    """Claim a queued job for process `pid`; returns its request. A job claimed already is refused
    (a second runner of the same id exits)."""
    with connect(settings) as conn, conn.transaction():
        row = conn.execute("UPDATE jobs SET status = 'running', pid = %s, started_at = now(), heartbeat_at = now()"
                           " WHERE id = %s AND status = 'queued' RETURNING request", (pid, job_id)).fetchone()
    if row is None:
        raise JobNotFoundError(f"no queued job {job_id!r}")
    return row[0]


def progress(settings: Settings, job_id: str, step: str | None = None, done: int | None = None,
             total: int | None = None) -> None:
    """Record a step (and beat the heart); no arguments: only the heartbeat."""
    with connect(settings) as conn, conn.transaction():
        conn.execute("UPDATE jobs SET heartbeat_at = now(), step = coalesce(%s, step), done = coalesce(%s, done),"
                     " total = coalesce(%s, total) WHERE id = %s AND status = 'running'",
                     (step, done, total, job_id))


def finish(settings: Settings, job_id: str, result: dict) -> None:
    with connect(settings) as conn, conn.transaction():
        conn.execute("UPDATE jobs SET status = 'succeeded', result = %s, finished_at = now(), heartbeat_at = now(),"
                     " done = coalesce(total, done) WHERE id = %s",
                     (Jsonb(json.loads(json.dumps(result, default=str))), job_id))


def fail(settings: Settings, job_id: str, code: str, message: str) -> None:
    with connect(settings) as conn, conn.transaction():
        conn.execute("UPDATE jobs SET status = 'failed', error_code = %s, error = %s, finished_at = now(),"
                     " heartbeat_at = now() WHERE id = %s", (code, message[:2000], job_id))
