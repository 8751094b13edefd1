-- TimescaleDB: tenant roles read the step feature tables (124) through tenant_scope views, as the hourly ones
-- (101_tenant_scope.timescale.sql); warehouse/tenant_roles.py revokes the public tables from the group.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['load_features_30min', 'load_features_15min'] LOOP
        EXECUTE format('CREATE OR REPLACE VIEW tenant_scope.%I WITH (security_barrier = true) AS'
                       ' SELECT * FROM public.%I WHERE tenant_id = (SELECT public.ems_role_tenant(current_user::text))'
                       ' WITH CASCADED CHECK OPTION', t, t);
    END LOOP;
END $$;
