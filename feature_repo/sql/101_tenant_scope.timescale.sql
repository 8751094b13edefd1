-- TimescaleDB refuses row-level security on hypertables with the columnstore (readings, weather, the feature
-- tables), and continuous aggregates (the hourly relations) are views that read as their owner. A tenant
-- role therefore reads them through schema tenant_scope, first on its search_path: security-barrier views
-- of the same names that keep the role's tenant (or its assets' sites) only, with CHECK OPTION on writes.
-- The group role has no privilege on the public relations themselves (warehouse/tenant_roles.py), so
-- `public.readings`, a chunk or `SET search_path = public` is refused.
CREATE SCHEMA IF NOT EXISTS tenant_scope;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['readings', 'readings_hourly', 'load_lag_features', 'load_rolling_features',
                             'asset_weather_features'] LOOP
        EXECUTE format('CREATE OR REPLACE VIEW tenant_scope.%I WITH (security_barrier = true) AS'
                       ' SELECT * FROM public.%I WHERE tenant_id = (SELECT public.ems_role_tenant(current_user::text))'
                       ' WITH CASCADED CHECK OPTION', t, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['weather', 'weather_hourly'] LOOP
        EXECUTE format('CREATE OR REPLACE VIEW tenant_scope.%I WITH (security_barrier = true) AS'
                       ' SELECT * FROM public.%I WHERE site_id IN (SELECT site_id FROM public.assets'
                       ' WHERE tenant_id = (SELECT public.ems_role_tenant(current_user::text)))', t, t);
    END LOOP;
END $$;
