-- Anomaly alerts raised by the hourly pipeline (pipelines/hourly.py): one row per run of consecutive
-- anomalous hours of an asset under one detector, [window_start, window_end). Re-scoring an hour an
-- alert already covers changes nothing but a higher score; an anomalous hour next to an OPEN alert
-- extends it; anything else opens a new alert. State: open -> acknowledged (by whom, when, note).
-- Same table on both schema paths (a small, frequently updated table: not a hypertable).
CREATE TABLE IF NOT EXISTS anomaly_alerts (
    id               bigserial   PRIMARY KEY,
    tenant_id        text        NOT NULL,
    asset_id         text        NOT NULL,
    detector         text        NOT NULL,  -- the registered model name, e.g. anomaly_z_score
    model_id         text        NOT NULL,  -- the version that raised (or last raised) it
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL CHECK (window_end > window_start),
    severity         text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    score            double precision NOT NULL,
    explanation      text        NOT NULL,
    state            text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    note             text
);
CREATE INDEX IF NOT EXISTS anomaly_alerts_asset_window
    ON anomaly_alerts (tenant_id, asset_id, detector, window_start);
CREATE INDEX IF NOT EXISTS anomaly_alerts_tenant_state ON anomaly_alerts (tenant_id, state, window_start DESC);
