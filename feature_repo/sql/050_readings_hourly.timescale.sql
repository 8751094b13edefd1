-- TimescaleDB: the hourly aggregate as a continuous aggregate with a refresh policy.
-- materialized_only keeps it identical to the plain path (only refreshed buckets are visible);
-- backfills older than the policy window are refreshed by `ems refresh` from the queue.
CREATE MATERIALIZED VIEW IF NOT EXISTS readings_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT tenant_id,
       asset_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       avg(value)          AS avg_value,
       min(value)          AS min_value,
       max(value)          AS max_value,
       stddev_samp(value)  AS std_value,
       count(*)            AS n_readings
FROM readings
GROUP BY tenant_id, asset_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => TRUE);
