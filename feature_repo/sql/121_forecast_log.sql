-- Forecasts as they were served (SDK, CLI `ems forecast --log`, the hourly pipeline), one row per target
-- hour, so live accuracy can be computed once the actuals arrive (inference/accuracy.py). Logging the
-- same forecast again (same model, issue time, target hour) replaces it: a rerun never duplicates.
-- Same table on both schema paths (written and read by tenant and target time; not a hypertable).
CREATE TABLE IF NOT EXISTS forecast_log (
    tenant_id    text             NOT NULL,
    asset_id     text             NOT NULL,
    model_id     text             NOT NULL,
    issue_time   timestamptz      NOT NULL,  -- end of the last complete hour the forecast's inputs describe
    target_time  timestamptz      NOT NULL,  -- start of the forecast hour
    horizon_h    integer          NOT NULL CHECK (horizon_h BETWEEN 1 AND 168),
    point        double precision NOT NULL,
    p10          double precision,
    p50          double precision,
    p90          double precision,
    source       text             NOT NULL,  -- online | offline | history
    logged_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, asset_id, model_id, issue_time, target_time)
);
CREATE INDEX IF NOT EXISTS forecast_log_tenant_target ON forecast_log (tenant_id, target_time);
