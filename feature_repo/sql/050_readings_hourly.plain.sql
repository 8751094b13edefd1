-- Plain PostgreSQL: the hourly aggregate as a table, kept current by ems_refresh_readings_hourly().
-- Buckets are UTC hours [bucket, bucket + 1 h), the same as TimescaleDB's time_bucket('1 hour', ts).
CREATE TABLE IF NOT EXISTS readings_hourly (
    tenant_id   text             NOT NULL,
    asset_id    text             NOT NULL,
    bucket      timestamptz      NOT NULL,
    avg_value   double precision NOT NULL,
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    std_value   double precision,
    n_readings  bigint           NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, bucket)
);
