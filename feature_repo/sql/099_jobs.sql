-- Long work started over the API (a training, a point-in-time feature export): one row per job,
-- shared by every API worker, written by the job's own process (`python -m service.jobs <id>`).
-- A running job beats `heartbeat_at`; one whose beat stops (its process died) is reported lost.
CREATE TABLE IF NOT EXISTS jobs (
    id            text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('train', 'export')),
    status        text        NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    request       jsonb       NOT NULL,
    created_by    text        NOT NULL,
    step          text,
    done          integer     NOT NULL DEFAULT 0,
    total         integer,
    result        jsonb,
    error_code    text,
    error         text,
    pid           integer,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_tenant_kind_created ON jobs (tenant_id, kind, created_at DESC);
