"""Warehouse reads of the generation forecaster: a tenant's generation units (capacity, site), the sites of
units by name, and the forecasts of a site with their issue times (every issue, for the point-in-time join of
a training set; registry/generation.pit_join applies the rule `covariates_at` applies at serving)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.errors import InvalidArgumentError, UnknownAssetError
from core.names import check_tenant_id
from core.settings import Settings
from warehouse.db import connect
from warehouse.hourly import fetch

WIND = ("wind_speed", "wind_u", "wind_v")
UNIT_COLUMNS = ["asset_id", "kind", "capacity", "technology", "site_id"]
UNITS_SQL = "SELECT asset_id, kind, capacity, technology, site_id FROM assets WHERE tenant_id = %s ORDER BY asset_id"
SOME_UNITS_SQL = ("SELECT asset_id, kind, capacity, technology, site_id FROM assets WHERE tenant_id = %s "
                  "AND asset_id = ANY(%s) ORDER BY asset_id")


def units(settings: Settings, tenant: str, assets: list[str] | None = None, conn=None) -> pd.DataFrame:
    """The tenant's generation units (asset_id, capacity, technology, site_id), all or `assets` (only those are
    read); one error naming an asset that is unknown or not a generation unit, or a unit without a site (no
    weather). `conn`: an open connection to reuse, else a new one."""
    check_tenant_id(tenant)
    rows = fetch(settings, conn, SOME_UNITS_SQL if assets else UNITS_SQL,
                 (tenant, list(assets)) if assets else (tenant,))
    return pd.DataFrame(_checked(rows, tenant, assets), columns=UNIT_COLUMNS)


def unit_and_sites(conn, tenant: str, asset: str, others: list[str]) -> tuple[tuple, dict[str, str]]:
    """units(..., [asset])'s one row as a tuple (asset_id, kind, capacity, technology, site_id) and sites(...,
    others), in one read on `conn` (what serving a generation unit looks up)."""
    check_tenant_id(tenant)
    rows = conn.execute(SOME_UNITS_SQL, (tenant, [asset, *others])).fetchall()
    unit = _checked([r for r in rows if r[0] == asset], tenant, [asset])[0]
    found = {r[0]: r[4] for r in rows if r[4] is not None}
    return unit, {a: found[a] for a in others if a in found}


def _checked(rows: list[tuple], tenant: str, assets: list[str] | None) -> list[tuple]:
    """The generation units among the assets rows (UNIT_COLUMNS) of `assets` (None: all), with units()' errors."""
    if assets:
        unknown = sorted(set(assets) - {r[0] for r in rows})
        if unknown:
            raise UnknownAssetError(f"tenant {tenant!r} has no asset {', '.join(map(repr, unknown))}")
        rows = [r for r in rows if r[0] in set(assets)]
        other = [r for r in rows if r[1] != "generation"]
        if other:
            raise InvalidArgumentError(f"asset {other[0][0]!r} is a {other[0][1]} asset, not a generation unit; "
                                       "`ems assets set ... --kind generation --capacity C` says so")
    rows = [r for r in rows if r[1] == "generation"]
    if not rows:
        raise UnknownAssetError(f"tenant {tenant!r} has no generation unit; set one with `ems assets set "
                                "--kind generation --capacity C --technology wind`")
    no_site = [r for r in rows if r[4] is None]
    if no_site:
        raise InvalidArgumentError(f"generation unit {no_site[0][0]!r} has no site, so no weather "
                                   "forecasts; ingest its readings with --site")
    wind = [r for r in rows if r[3] != "wind"]
    if wind:
        raise InvalidArgumentError(f"generation unit {wind[0][0]!r} is {wind[0][3]}; "
                                   "the generation forecaster serves wind units only (PV is not built yet)")
    return rows


def sites(settings: Settings, tenant: str, assets: list[str]) -> dict[str, str]:
    """The site of each of `assets` (the tenant's) that still exists and has one, in the order given: the
    other units whose weather forecasts a generation model reads (a unit gone since training is left out)."""
    check_tenant_id(tenant)
    if not assets:
        return {}
    with connect(settings) as conn:
        rows = conn.execute("SELECT asset_id, site_id FROM assets WHERE tenant_id = %s AND asset_id = ANY(%s) "
                            "AND site_id IS NOT NULL", (tenant, list(assets))).fetchall()
    found = dict(rows)
    return {a: found[a] for a in assets if a in found}


def forecasts(settings: Settings, series: str, start: datetime, end: datetime,
              issued_by: datetime | None = None) -> pd.DataFrame:
    """Every stored issue of `series` for the target hours in [start, end) (issued by `issued_by` if
    given): target_time, issue_time and the wind variables."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT target_time, issue_time, wind_speed, wind_u, wind_v FROM covariate_forecasts "
            "WHERE series_id = %s AND target_time >= %s AND target_time < %s "
            "AND (%s::timestamptz IS NULL OR issue_time <= %s::timestamptz) ORDER BY target_time, issue_time",
            (series, start, end, issued_by, issued_by)).fetchall()
    frame = pd.DataFrame(rows, columns=["target_time", "issue_time", *WIND])
    for c in ("target_time", "issue_time"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    frame[list(WIND)] = frame[list(WIND)].astype(float)
    return frame
