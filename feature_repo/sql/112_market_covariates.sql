-- Market covariates (issue "Generation and price forecasts", item 2): the exogenous day-ahead forecasts a
-- market publishes before its auction for every hour of the next day, stored in the one covariate store
-- (110) with their issue time, under the market zone's site as series_id. NP publishes a grid load and a
-- wind power forecast; PJM a system and a zonal load forecast (the system one is `load_forecast`). MW.
-- The same point-in-time rule holds: at origin T, per target hour, the latest issue at or before T.
ALTER TABLE covariate_forecasts ADD COLUMN IF NOT EXISTS load_forecast double precision;
ALTER TABLE covariate_forecasts ADD COLUMN IF NOT EXISTS wind_forecast double precision;
ALTER TABLE covariate_forecasts ADD COLUMN IF NOT EXISTS zonal_load_forecast double precision;

-- 110's view with the market columns appended (CREATE OR REPLACE VIEW may only add columns at the end).
CREATE OR REPLACE VIEW asset_covariate_forecasts AS
SELECT a.tenant_id,
       a.asset_id,
       (extract(epoch FROM f.target_time) / 3600)::bigint AS target_hour,
       f.target_time,
       f.issue_time AS event_timestamp,
       f.temperature,
       f.humidity,
       f.solar_irradiance,
       f.wind_speed,
       f.wind_u,
       f.wind_v,
       f.ingested_at AS created,
       f.load_forecast,
       f.wind_forecast,
       f.zonal_load_forecast
FROM assets a
JOIN covariate_forecasts f ON f.series_id = a.site_id;

-- As in 110: the view runs with the caller's rights, so the table's RLS policy tenant_rows (unchanged:
-- a site's rows are read by the tenants with an asset there) applies to the market columns too.
ALTER VIEW asset_covariate_forecasts SET (security_invoker = true);
