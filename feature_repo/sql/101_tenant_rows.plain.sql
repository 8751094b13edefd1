-- Plain PostgreSQL: readings, weather, the hourly relations and the feature tables under the policies of
-- 100_tenant_roles.sql (TimescaleDB refuses row-level security on compressed hypertables: see
-- 101_tenant_scope.timescale.sql).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['readings', 'readings_hourly', 'load_lag_features', 'load_rolling_features',
                             'asset_weather_features'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %I', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I'
                       ' USING (tenant_id = (SELECT ems_role_tenant(current_user::text)))'
                       ' WITH CHECK (tenant_id = (SELECT ems_role_tenant(current_user::text)))', t);
    END LOOP;
END $$;

-- Weather belongs to sites: a tenant role reads the weather of its own assets' sites and writes none.
ALTER TABLE weather ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_rows ON weather;
CREATE POLICY tenant_rows ON weather FOR SELECT
    USING (site_id IN (SELECT site_id FROM assets WHERE tenant_id = (SELECT ems_role_tenant(current_user::text))));

ALTER TABLE weather_hourly ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_rows ON weather_hourly;
CREATE POLICY tenant_rows ON weather_hourly FOR SELECT
    USING (site_id IN (SELECT site_id FROM assets WHERE tenant_id = (SELECT ems_role_tenant(current_user::text))));
