-- The hourly feature relations as tables, maintained incrementally by `ems refresh` (functions in
-- 092_refresh_features.sql) instead of window-function views recomputed on every read: a time
-- filter cannot be pushed below a window function, so a view's cost grew with the whole history.
-- Same names, columns and values as the views of 060/061/070 (which this migration replaces):
-- one row per asset and complete hour, event_timestamp = end of the hour, features at T use only
-- readings with ts < T. Filled once from the hourly relations by 093_fill_feature_tables.sql.
DO $$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY ARRAY['load_lag_features', 'load_rolling_features', 'asset_weather_features'] LOOP
        IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relname = v AND c.relkind = 'v' AND n.nspname = current_schema()) THEN
            EXECUTE format('DROP VIEW %I', v);
        END IF;
    END LOOP;
END $$;

CREATE TABLE IF NOT EXISTS load_lag_features (
    tenant_id        text             NOT NULL,
    asset_id         text             NOT NULL,
    event_timestamp  timestamptz      NOT NULL,
    lag_1h           double precision,
    lag_24h          double precision,
    lag_168h         double precision,
    created          timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, event_timestamp)
);

CREATE TABLE IF NOT EXISTS load_rolling_features (
    tenant_id            text             NOT NULL,
    asset_id             text             NOT NULL,
    event_timestamp      timestamptz      NOT NULL,
    historical_avg_24h   double precision,
    historical_std_24h   double precision,
    min_24h              double precision,
    max_24h              double precision,
    range_24h            double precision,
    hours_24h            bigint,
    historical_avg_168h  double precision,
    historical_std_168h  double precision,
    min_168h             double precision,
    max_168h             double precision,
    range_168h           double precision,
    hours_168h           bigint,
    created              timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, event_timestamp)
);

-- Weather of the asset's site, keyed by asset so that feature services need no site key.
CREATE TABLE IF NOT EXISTS asset_weather_features (
    tenant_id         text             NOT NULL,
    asset_id          text             NOT NULL,
    event_timestamp   timestamptz      NOT NULL,
    temperature       double precision,
    humidity          double precision,
    solar_irradiance  double precision,
    wind_speed        double precision,
    created           timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, event_timestamp)
);

-- Entities whose feature rows changed in a refresh (or whose attributes changed): `ems materialize`
-- writes their latest rows to the online store and deletes the entries it handled.
CREATE TABLE IF NOT EXISTS online_refresh_queue (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    asset_id   text        NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

-- Assets created or whose site changed: their weather rows are rebuilt by the next refresh.
CREATE TABLE IF NOT EXISTS asset_refresh_queue (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    asset_id   text        NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION ems_queue_asset_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO asset_refresh_queue (tenant_id, asset_id) VALUES (NEW.tenant_id, NEW.asset_id);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS assets_changed ON assets;
CREATE TRIGGER assets_changed AFTER INSERT OR UPDATE OF site_id, timezone ON assets
    FOR EACH ROW EXECUTE FUNCTION ems_queue_asset_change();

-- Which online views `ems materialize` has loaded whole, and for which definition (a view that is
-- new or changed since is loaded whole on the next run).
CREATE TABLE IF NOT EXISTS online_views (
    feature_view  text        PRIMARY KEY,
    fingerprint   text        NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
