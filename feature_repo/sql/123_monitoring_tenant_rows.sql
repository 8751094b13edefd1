-- Row-level security on the monitoring tables (120 anomaly_alerts, 121 forecast_log, 122 monitor_alerts),
-- as 100_tenant_roles.sql does for the other tables keyed by tenant: a tenant database role (which is
-- granted SELECT on every table of the schema) reads and writes its own tenant's rows only. Plain tables
-- on both schema paths, so the same policy applies on TimescaleDB.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['anomaly_alerts', 'forecast_log', 'monitor_alerts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %I', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I'
                       ' USING (tenant_id = (SELECT ems_role_tenant(current_user::text)))'
                       ' WITH CHECK (tenant_id = (SELECT ems_role_tenant(current_user::text)))', t);
    END LOOP;
END $$;
