-- Weather of the asset's site for the last complete hour, keyed by (tenant_id, asset_id) so that
-- feature services need no site key. event_timestamp is the end of the weather hour.
CREATE OR REPLACE VIEW asset_weather_features AS
SELECT a.tenant_id,
       a.asset_id,
       w.bucket + INTERVAL '1 hour' AS event_timestamp,
       w.temperature,
       w.humidity,
       w.solar_irradiance,
       w.wind_speed,
       w.bucket + INTERVAL '1 hour' AS created
FROM assets a
JOIN weather_hourly w ON w.site_id = a.site_id;
