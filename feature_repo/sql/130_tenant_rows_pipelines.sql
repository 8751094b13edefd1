-- Tenant database roles (100_tenant_roles.sql) and what the unattended loop records: anomaly alerts, the
-- forecast log with its scores, drift and freshness alerts are a tenant's rows like its readings. A tenant
-- role reads its own rows only (both schema paths: plain tables) and writes none (no grant: the pipelines
-- write them as the operator; the policy's CHECK keeps even a future grant to the role's own tenant).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['anomaly_alerts', 'forecast_log', 'monitor_alerts'] LOOP
        IF to_regclass(t) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %I', t);
            EXECUTE format('CREATE POLICY tenant_rows ON %I'
                           ' USING (tenant_id = (SELECT ems_role_tenant(current_user::text)))'
                           ' WITH CHECK (tenant_id = (SELECT ems_role_tenant(current_user::text)))', t);
        END IF;
    END LOOP;
END $$;
