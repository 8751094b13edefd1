-- The hourly means in key order, readable without visiting the table: the feature refresh (093, 095)
-- reads each recomputed hour's 168-hour window of one asset. Hourly appends interleave the assets,
-- so an asset's last week lies on about one table page per hour (168 page visits per asset and
-- cycle); in this index it is one or two leaf pages (index-only scan). Measured on 1,000 assets x 2
-- years after a few hundred hourly cycles: 1.15 ms -> 0.12 ms per asset window.
CREATE INDEX IF NOT EXISTS readings_hourly_window ON readings_hourly (tenant_id, asset_id, bucket)
    INCLUDE (avg_value);
