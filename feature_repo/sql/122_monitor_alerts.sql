-- Drift and freshness alerts (inference/drift.py): one row per (tenant, asset, kind, subject) while it is
-- open; a check that crosses the threshold again updates its value and last_seen instead of adding a
-- row. kind: psi (subject = feature), nulls (feature), feature_age (view), materialization_lag (tenant,
-- asset = '') . The daily pipeline reads the open ones as reasons to retrain.
CREATE TABLE IF NOT EXISTS monitor_alerts (
    id               bigserial        PRIMARY KEY,
    tenant_id        text             NOT NULL,
    asset_id         text             NOT NULL,
    kind             text             NOT NULL CHECK (kind IN ('psi', 'nulls', 'feature_age', 'materialization_lag')),
    subject          text             NOT NULL,
    value            double precision NOT NULL,
    threshold        double precision NOT NULL,
    window_start     timestamptz,
    window_end       timestamptz,
    state            text             NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged')),
    first_seen       timestamptz      NOT NULL DEFAULT now(),
    last_seen        timestamptz      NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text
);
CREATE UNIQUE INDEX IF NOT EXISTS monitor_alerts_one_open
    ON monitor_alerts (tenant_id, asset_id, kind, subject) WHERE state = 'open';
