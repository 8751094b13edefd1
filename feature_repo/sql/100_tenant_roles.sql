-- Database roles of tenants (`ems users create --tenant T --db`, warehouse/tenant_roles.py): row-level
-- security shows such a role its own tenant's rows and lets it write only those. The operator owns the
-- tables and is no tenant's role, so policies do not apply to it (RLS is enabled, not forced).
-- The role is found by current_user, never by a setting a client could SET.
CREATE TABLE IF NOT EXISTS tenant_roles (
    role_name  text        PRIMARY KEY,
    tenant_id  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The tenant of a database role; NULL for a role that is no tenant's. SECURITY DEFINER: tenant roles
-- cannot read tenant_roles. Policies call it in a sub-select, so it runs once per statement.
CREATE OR REPLACE FUNCTION ems_role_tenant(p_role text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT tenant_id FROM public.tenant_roles WHERE role_name = p_role
$$;

-- Group role of every tenant role: what it may touch (grants: warehouse/tenant_roles.py).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ems_tenant') THEN
        CREATE ROLE ems_tenant NOLOGIN;
    END IF;
END $$;

-- Plain tables keyed by tenant (both paths): read and write the role's tenant only. Readings, weather, the
-- hourly relations and the feature tables: 101_tenant_rows.plain.sql, 101_tenant_scope.timescale.sql.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['assets', 'readings_refresh_queue', 'online_refresh_queue', 'asset_refresh_queue',
                             'jobs'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %I', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I'
                       ' USING (tenant_id = (SELECT ems_role_tenant(current_user::text)))'
                       ' WITH CHECK (tenant_id = (SELECT ems_role_tenant(current_user::text)))', t);
    END LOOP;
END $$;

-- A view reads as its owner (past the policies) unless it runs with the caller's rights.
ALTER VIEW asset_profile_features SET (security_invoker = true);
