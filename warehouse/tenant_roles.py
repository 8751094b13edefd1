"""Database roles of tenants (`ems users create --tenant T --db`): a login role that row-level security
(feature_repo/sql/100_tenant_roles.sql, 101_tenant_rows.plain.sql) limits to its tenant's rows.

The role is `tenant_<tenant>`, a member of group role `ems_tenant`, recorded in `tenant_roles`. On the
TimescaleDB path, which refuses row-level security on compressed hypertables, it reads hypertables and
continuous aggregates through `tenant_scope` views first on its search_path (101_tenant_scope.timescale.sql).
It reads
the tenant's assets, readings, hourly aggregates, feature tables, jobs and the weather of its sites, the
Feast registry (to build a FeatureStore) and nothing of another tenant; it writes readings and assets of
its own tenant only. The operator (owner of the tables) is unaffected. Creation is one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from core.errors import EmsError
from core.names import check_tenant_id
from core.settings import Settings
from warehouse.db import connect

logger = logging.getLogger(__name__)

GROUP = "ems_tenant"
# What a tenant's ingest writes (RLS keeps the rows its own); everything else is read-only.
WRITES = ("assets", "readings", "readings_refresh_queue", "asset_refresh_queue")
NEVER = ("tenant_roles", "schema_migrations", "weather_refresh_queue")  # not even readable
# TimescaleDB path: relations a tenant role reads only through its tenant_scope view of the same name
# (feature_repo/sql/101_tenant_scope.timescale.sql); the public ones are out of its reach.
SCOPE = "tenant_scope"
SCOPED = ("readings", "readings_hourly", "weather", "weather_hourly", "load_lag_features", "load_rolling_features",
          "asset_weather_features", "load_features_30min", "load_features_15min")
MIN_PASSWORD = 12


class TenantRoleError(EmsError, ValueError):
    """A tenant's database role cannot be created as asked; the message names the value and the fix."""


def role_name(tenant: str) -> str:
    return f"tenant_{check_tenant_id(tenant)}"


GRANTS = [
    sql.SQL("GRANT USAGE ON SCHEMA public TO {group}"),
    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {group}"),
    sql.SQL("REVOKE ALL ON {never} FROM {group}"),
    sql.SQL("GRANT INSERT, UPDATE ON {writes} TO {group}"),
    sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {group}"),
]


SCOPE_GRANTS = [
    sql.SQL("REVOKE ALL ON {scoped} FROM {group}"),
    sql.SQL("GRANT USAGE ON SCHEMA {scope} TO {group}"),
    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {scope} TO {group}"),
    sql.SQL("GRANT INSERT, UPDATE ON {scope}.readings TO {group}"),
]


def scoped(conn: psycopg.Connection) -> bool:
    """Does this schema read hypertables through tenant_scope views (the TimescaleDB path)?"""
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCOPE,)).fetchone()[0]


def grant_group(conn: psycopg.Connection) -> None:
    """The group's privileges on the tables there are now (Feast's registry tables appear with `feast
    apply`); idempotent."""
    names = {"group": sql.Identifier(GROUP), "scope": sql.Identifier(SCOPE),
             "never": sql.SQL(", ").join(map(sql.Identifier, NEVER)),
             "writes": sql.SQL(", ").join(map(sql.Identifier, WRITES)),
             "scoped": sql.SQL(", ").join(sql.Identifier("public", t) for t in SCOPED)}
    for statement in GRANTS + (SCOPE_GRANTS if scoped(conn) else []):
        conn.execute(statement.format(**names))


@contextmanager
def creating_tenant_role(settings: Settings, tenant: str, password: str) -> Iterator[str]:
    """Create the tenant's role inside a transaction that commits only when the `with` body succeeds (the
    CLI creates the MLflow user there), so a failure leaves nothing. Yields the role name."""
    role = role_name(tenant)
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise TenantRoleError(f"password for database role {role!r} is too short: use at least {MIN_PASSWORD} "
                              "characters (EMS_NEW_USER_PASSWORD, or leave it unset to generate one)")
    with connect(settings) as conn, conn.transaction():
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            raise TenantRoleError(f"database role {role!r} of tenant {tenant!r} exists already: nothing was "
                                  "created (drop it with `DROP ROLE` as the operator to create it again)")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (GROUP,)).fetchone():
            raise TenantRoleError(f"group role {GROUP!r} is missing: run `ems migrate` first")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(role), sql.Literal(password), sql.Identifier(GROUP)))
        if scoped(conn):  # the tenant_scope views shadow the public relations of the same names
            conn.execute(sql.SQL("ALTER ROLE {} SET search_path = {}, public").format(
                sql.Identifier(role), sql.Identifier(SCOPE)))
        conn.execute("INSERT INTO tenant_roles (role_name, tenant_id) VALUES (%s, %s)", (role, tenant))
        grant_group(conn)
        yield role
    logger.info("created database role %s for tenant %s", role, tenant)


def create_tenant_role(settings: Settings, tenant: str, password: str,
                       then: Callable[[], object] | None = None) -> str:
    """Create the role; `then` runs before the commit (its failure rolls the role back)."""
    with creating_tenant_role(settings, tenant, password) as role:
        if then is not None:
            then()
    return role
