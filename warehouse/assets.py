"""What an asset is: a consumption meter (load forecasts), a generation unit with its capacity and technology
(generation forecasts) or a market zone (price forecasts); feature_repo/sql/111_asset_kinds.sql. Assets are
created by ingest as consumption meters; `ems assets set` (set_kind) says otherwise."""

from __future__ import annotations

import math

import pandas as pd

from core.errors import InvalidArgumentError, UnknownAssetError
from core.names import ASSET_KINDS, TECHNOLOGIES, check_asset_id, check_tenant_id
from core.settings import Settings
from warehouse.db import connect


def check_kind(kind, capacity=None, technology=None) -> tuple[str, float | None, str | None]:
    """The kind with what it requires: a generation unit has a capacity > 0 and a technology; a consumption
    meter or a market zone has neither. One error naming the bad value and what is allowed."""
    if kind not in ASSET_KINDS:
        raise InvalidArgumentError(f"kind={kind!r} is not an asset kind; use one of {', '.join(ASSET_KINDS)}")
    if kind != "generation":
        if capacity is not None or technology is not None:
            raise InvalidArgumentError(f"a {kind} asset has no capacity or technology (got capacity={capacity!r}, "
                                       f"technology={technology!r}); those are for kind=generation")
        return kind, None, None
    if isinstance(capacity, bool) or not isinstance(capacity, int | float) or not math.isfinite(capacity) \
            or capacity <= 0:
        raise InvalidArgumentError(f"capacity={capacity!r} is not a positive number; a generation unit needs its "
                                   "capacity (> 0, in the unit of its readings, e.g. MW)")
    if technology not in TECHNOLOGIES:
        raise InvalidArgumentError(f"technology={technology!r} is not known; use one of {', '.join(TECHNOLOGIES)}")
    return kind, float(capacity), technology


def set_kind(settings: Settings, tenant: str, asset: str, kind: str, capacity: float | None = None,
             technology: str | None = None) -> dict:
    """Say what an existing asset is; returns its row as a dict."""
    check_tenant_id(tenant)
    check_asset_id(asset)
    kind, capacity, technology = check_kind(kind, capacity, technology)
    with connect(settings) as conn, conn.transaction():
        row = conn.execute("UPDATE assets SET kind = %s, capacity = %s, technology = %s, updated_at = now() "
                           "WHERE tenant_id = %s AND asset_id = %s RETURNING asset_id",
                           (kind, capacity, technology, tenant, asset)).fetchone()
    if row is None:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {asset!r}; ingest its readings first (`ems ingest`)")
    return {"tenant": tenant, "asset": asset, "kind": kind, "capacity": capacity, "technology": technology}


def list_assets(settings: Settings, tenant: str) -> pd.DataFrame:
    """The tenant's assets with their kind, capacity, technology, site and time zone."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.execute("SELECT asset_id, kind, capacity, technology, site_id, timezone FROM assets "
                            "WHERE tenant_id = %s ORDER BY asset_id", (tenant,)).fetchall()
    return pd.DataFrame(rows, columns=["asset_id", "kind", "capacity", "technology", "site_id", "timezone"])
