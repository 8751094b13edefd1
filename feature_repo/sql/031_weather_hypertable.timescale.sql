-- TimescaleDB: weather as a hypertable with compression and retention policies.
SELECT create_hypertable('weather', 'ts', chunk_time_interval => INTERVAL '30 days', if_not_exists => TRUE);
ALTER TABLE weather SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('weather', compress_after => INTERVAL '30 days', if_not_exists => TRUE);
SELECT add_retention_policy('weather', drop_after => current_setting('ems.raw_retention')::interval,
                            if_not_exists => TRUE);
