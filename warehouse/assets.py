"""What an asset is: a consumption meter (load forecasts), a generation unit with its capacity and technology
(generation forecasts) or a market zone (price forecasts); feature_repo/sql/111_asset_kinds.sql. Assets are
created by ingest as consumption meters; `ems assets set` (set_kind) says otherwise, and gives an asset its
position (latitude, longitude; feature_repo/sql/127_asset_position.sql), which a PV unit's forecast needs."""

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


POSITION_RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}  # decimal degrees


def check_position(latitude=None, longitude=None) -> tuple[float, float] | None:
    """The position as floats (a number or its text), or None when neither is given. One error naming the bad
    value and its range: text that is not a number, a value outside [-90, 90] / [-180, 180], or one without
    the other."""
    given = {"latitude": latitude, "longitude": longitude}
    if latitude is None and longitude is None:
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        have = next(k for k in given if k not in missing)
        raise InvalidArgumentError(f"{have}={given[have]!r} without a {missing[0]}: give both (latitude in "
                                   "[-90, 90], longitude in [-180, 180], decimal degrees)")
    out = []
    for name, value in given.items():
        lo, hi = POSITION_RANGES[name]
        try:  # text from the CLI or a float from the SDK; a bool is not a coordinate
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and lo <= number <= hi):
            raise InvalidArgumentError(f"{name}={value!r} is out of range: a {name} is a number in [{lo:g}, {hi:g}] "
                                       "(decimal degrees)")
        out.append(number)
    return out[0], out[1]


def set_kind(settings: Settings, tenant: str, asset: str, kind: str, capacity: float | None = None,
             technology: str | None = None, latitude=None, longitude=None) -> dict:
    """Say what an existing asset is, and where (latitude and longitude, both or neither; neither keeps the
    stored position); returns its row as a dict. Everything is checked before anything is written."""
    check_tenant_id(tenant)
    check_asset_id(asset)
    kind, capacity, technology = check_kind(kind, capacity, technology)
    position = check_position(latitude, longitude)
    lat, lon = position if position else (None, None)
    with connect(settings) as conn, conn.transaction():
        row = conn.execute("UPDATE assets SET kind = %s, capacity = %s, technology = %s, "
                           "latitude = CASE WHEN %s THEN %s ELSE latitude END, "
                           "longitude = CASE WHEN %s THEN %s ELSE longitude END, updated_at = now() "
                           "WHERE tenant_id = %s AND asset_id = %s RETURNING latitude, longitude",
                           (kind, capacity, technology, position is not None, lat, position is not None, lon,
                            tenant, asset)).fetchone()
    if row is None:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {asset!r}; ingest its readings first (`ems ingest`)")
    return {"tenant": tenant, "asset": asset, "kind": kind, "capacity": capacity, "technology": technology,
            "latitude": row[0], "longitude": row[1]}


_COLUMNS = ["asset_id", "kind", "capacity", "technology", "site_id", "timezone", "latitude", "longitude",
            "step_minutes"]
_LIST = ("SELECT asset_id, kind, capacity, technology, site_id, timezone, latitude, longitude, step_minutes "
         "FROM assets WHERE tenant_id = %s ORDER BY asset_id")
_ONE = ("SELECT asset_id, kind, capacity, technology, site_id, timezone, latitude, longitude, step_minutes "
        "FROM assets WHERE tenant_id = %s AND asset_id = %s")


def list_assets(settings: Settings, tenant: str) -> pd.DataFrame:
    """The tenant's assets with their kind, capacity, technology, site, time zone, position and native step
    (minutes between readings, recorded by ingest; None before any)."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.execute(_LIST, (tenant,)).fetchall()
    return pd.DataFrame(rows, columns=_COLUMNS)


def get_asset(settings: Settings, tenant: str, asset: str) -> dict:
    """One asset's row as list_assets gives it; UnknownAssetError when the tenant has no such asset."""
    check_tenant_id(tenant)
    check_asset_id(asset)
    with connect(settings) as conn:
        row = conn.execute(_ONE, (tenant, asset)).fetchone()
    if row is None:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {asset!r}; ingest its readings first (`ems ingest`)")
    return dict(zip(_COLUMNS, row, strict=True))
