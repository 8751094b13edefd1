-- Covariates known for the target hours (issues "Forecasts that survive real feeds" and "Generation and
-- price forecasts"): forecasts of a series (a weather site; a market zone is a site of its own) stored with
-- two times. issue_time: when the forecast was published; target_time: the start of the hour it is for
-- (the convention of observed weather's ts). One row per (series, target hour, issue); a later issue never
-- replaces an earlier one, so a training row at origin T and a forecast served at T both take, per target
-- hour, the latest value issued at or before T (warehouse/covariates.py, the Feast view `weather_forecast`).
CREATE TABLE IF NOT EXISTS covariate_forecasts (
    series_id         text             NOT NULL,
    target_time       timestamptz      NOT NULL,
    issue_time        timestamptz      NOT NULL,
    temperature       double precision,
    humidity          double precision,
    solar_irradiance  double precision,
    wind_speed        double precision,
    wind_u            double precision,
    wind_v            double precision,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, target_time, issue_time),
    CONSTRAINT covariate_issued_by_target CHECK (issue_time <= target_time)
);

-- Per asset (through its site, as observed weather) and whole target hour, for Feast's point-in-time join:
-- entity (tenant_id, asset_id, target_hour = hours since 1970-01-01 UTC), event_timestamp = issue_time.
-- Feast's rule "the latest row at or before the entity time" is then "the latest issue at or before the
-- origin" for that target hour.
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
       f.ingested_at AS created
FROM assets a
JOIN covariate_forecasts f ON f.series_id = a.site_id;

-- Tenant database roles: a site's forecasts are read by the tenants with an asset there (as observed
-- weather), written by the operator only; the view runs with the caller's rights.
ALTER TABLE covariate_forecasts ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_rows ON covariate_forecasts;
CREATE POLICY tenant_rows ON covariate_forecasts FOR SELECT
    USING (series_id IN (SELECT site_id FROM assets WHERE tenant_id = (SELECT ems_role_tenant(current_user::text))));
ALTER VIEW asset_covariate_forecasts SET (security_invoker = true);
