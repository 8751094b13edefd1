-- Plain PostgreSQL: the step feature tables (124) under the tenant-row policy of 101_tenant_rows.plain.sql.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['load_features_30min', 'load_features_15min'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %I', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I'
                       ' USING (tenant_id = (SELECT ems_role_tenant(current_user::text)))'
                       ' WITH CHECK (tenant_id = (SELECT ems_role_tenant(current_user::text)))', t);
    END LOOP;
END $$;
