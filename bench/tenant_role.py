"""The bench's tenant database roles: rows measured with row-level security on (`ems users create --db`'s role,
`warehouse/tenant_roles.py`) read and write as the tenant's role through a Feast yaml of its own, next to the
same rows as the operator (the owner of the tables, whom the policies do not apply to)."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml
from psycopg import sql

from core.settings import Settings
from warehouse.db import connect
from warehouse.tenant_roles import SCOPE, create_tenant_role, role_name


def tenant_settings(settings: Settings, tenant: str, work: Path) -> Settings:
    """Settings acting as `tenant`'s database role: the role is created on first use; a new throwaway password
    is set on each run (written only into the bench's own yaml under `work`, owner-only)."""
    role, password = role_name(tenant), secrets.token_urlsafe(18)
    with connect(settings) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            conn.commit()
    if not exists:
        create_tenant_role(settings, tenant, password)
    cfg = yaml.safe_load(settings.feast_yaml.read_text())
    owner = f"{settings.postgres.user}:{settings.postgres.password}@"
    cfg["offline_store"].update(user=role, password=password, db_schema=SCOPE)
    cfg["registry"]["path"] = cfg["registry"]["path"].replace(owner, f"{role}:{password}@")
    path = work / f"feature_store.{role}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Settings(FEAST_FS_YAML_FILE_PATH=str(path), home=settings.home)
