-- TimescaleDB: the feature tables as hypertables with the readings' compression and retention
-- approach (compressed after 30 days, segmented by asset; retention from EMS_RAW_RETENTION).
SELECT create_hypertable('load_lag_features', 'event_timestamp', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('load_rolling_features', 'event_timestamp', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('asset_weather_features', 'event_timestamp', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE load_lag_features SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant_id, asset_id',
                                   timescaledb.compress_orderby = 'event_timestamp');
ALTER TABLE load_rolling_features SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant_id, asset_id',
                                       timescaledb.compress_orderby = 'event_timestamp');
ALTER TABLE asset_weather_features SET (timescaledb.compress,
                                        timescaledb.compress_segmentby = 'tenant_id, asset_id',
                                        timescaledb.compress_orderby = 'event_timestamp');
SELECT add_compression_policy(t, compress_after => INTERVAL '30 days', if_not_exists => TRUE)
FROM unnest(ARRAY['load_lag_features', 'load_rolling_features', 'asset_weather_features']::regclass[]) AS t;
SELECT add_retention_policy(t, drop_after => current_setting('ems.raw_retention')::interval, if_not_exists => TRUE)
FROM unnest(ARRAY['load_lag_features', 'load_rolling_features', 'asset_weather_features']::regclass[]) AS t;
