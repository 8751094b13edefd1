-- TimescaleDB: the step feature tables (124) as hypertables, compressed and retained like the hourly ones (091).
SELECT create_hypertable(t, 'event_timestamp', chunk_time_interval => INTERVAL '30 days', if_not_exists => TRUE,
                         migrate_data => TRUE)
FROM unnest(ARRAY['load_features_30min', 'load_features_15min']::regclass[]) AS t;
ALTER TABLE load_features_30min SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant_id, asset_id',
                                     timescaledb.compress_orderby = 'event_timestamp');
ALTER TABLE load_features_15min SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant_id, asset_id',
                                     timescaledb.compress_orderby = 'event_timestamp');
SELECT add_compression_policy(t, compress_after => INTERVAL '30 days', if_not_exists => TRUE)
FROM unnest(ARRAY['load_features_30min', 'load_features_15min']::regclass[]) AS t;
SELECT add_retention_policy(t, drop_after => current_setting('ems.raw_retention')::interval, if_not_exists => TRUE)
FROM unnest(ARRAY['load_features_30min', 'load_features_15min']::regclass[]) AS t;
