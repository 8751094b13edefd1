-- Fill the feature tables once from the hourly relations of an existing database (a no-op on a new
-- one); every asset is queued for the online store.
SELECT ems_refresh_load_features(array_agg(tenant_id), array_agg(asset_id),
                                 array_agg(TIMESTAMPTZ '-infinity'), array_agg(TIMESTAMPTZ 'infinity'))
FROM assets;
SELECT ems_refresh_asset_weather(ARRAY[]::text[], ARRAY[]::timestamptz[], ARRAY[]::timestamptz[],
                                 array_agg(tenant_id), array_agg(asset_id))
FROM assets;
