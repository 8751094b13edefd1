-- TimescaleDB: readings as a hypertable with compression and retention policies.
-- Retention is relative to now(); ems.raw_retention comes from EMS_RAW_RETENTION (the demo data
-- reaches back to 2002, so the local default is long).
SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant_id, asset_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('readings', compress_after => INTERVAL '30 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings', drop_after => current_setting('ems.raw_retention')::interval,
                            if_not_exists => TRUE);
