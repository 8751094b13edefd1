"""Warehouse reads of the generation forecaster: a tenant's generation units (capacity, technology, site,
position), the sites of units by name, and the forecasts of a site with their issue times (every issue, for the
point-in-time join of a training set; registry/generation.pit_join and registry/train_pv.pit_join apply the rule
`covariates_at` applies at serving)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from psycopg import sql

from core.errors import InvalidArgumentError, UnknownAssetError
from core.names import TECHNOLOGIES, check_tenant_id
from core.settings import Settings
from warehouse.covariates import COVARIATE_FORECAST_VARIABLES
from warehouse.db import connect
from warehouse.hourly import fetch

WIND = ("wind_speed", "wind_u", "wind_v")
UNIT_COLUMNS = ["asset_id", "kind", "capacity", "technology", "site_id", "latitude", "longitude"]
UNITS_SQL = ("SELECT asset_id, kind, capacity, technology, site_id, latitude, longitude FROM assets "
             "WHERE tenant_id = %s ORDER BY asset_id")
SOME_UNITS_SQL = ("SELECT asset_id, kind, capacity, technology, site_id, latitude, longitude FROM assets "
                  "WHERE tenant_id = %s AND asset_id = ANY(%s) ORDER BY asset_id")


def units(settings: Settings, tenant: str, assets: list[str] | None = None, conn=None,
          technology: str | None = None) -> pd.DataFrame:
    """The tenant's generation units (UNIT_COLUMNS) of one technology, all or `assets` (only those are read);
    `technology` None: the one the units have. One error naming an asset that is unknown or not a generation
    unit, a unit without a site (no weather), a PV unit without a position, or units of two technologies
    without `technology`. `conn`: an open connection to reuse, else a new one."""
    check_tenant_id(tenant)
    rows = fetch(settings, conn, SOME_UNITS_SQL if assets else UNITS_SQL,
                 (tenant, list(assets)) if assets else (tenant,))
    return pd.DataFrame(_checked(rows, tenant, assets, technology), columns=UNIT_COLUMNS)


def unit_and_sites(conn, tenant: str, asset: str, others: list[str]) -> tuple[tuple, dict[str, str]]:
    """units(..., [asset])'s one row as a tuple (UNIT_COLUMNS) and sites(..., others), in one read on `conn`
    (what serving a generation unit looks up)."""
    check_tenant_id(tenant)
    rows = conn.execute(SOME_UNITS_SQL, (tenant, [asset, *others])).fetchall()
    unit = _checked([r for r in rows if r[0] == asset], tenant, [asset])[0]
    found = {r[0]: r[4] for r in rows if r[4] is not None}
    return unit, {a: found[a] for a in others if a in found}


def _checked(rows: list[tuple], tenant: str, assets: list[str] | None, technology: str | None = None
             ) -> list[tuple]:
    """The generation units of one technology among the assets rows (UNIT_COLUMNS) of `assets` (None: all), with
    units()' errors."""
    if technology is not None and technology not in TECHNOLOGIES:
        raise InvalidArgumentError(f"technology={technology!r} is not known; use one of {', '.join(TECHNOLOGIES)}")
    if assets:
        unknown = sorted(set(assets) - {r[0] for r in rows})
        if unknown:
            raise UnknownAssetError(f"tenant {tenant!r} has no asset {', '.join(map(repr, unknown))}")
        rows = [r for r in rows if r[0] in set(assets)]
        other = [r for r in rows if r[1] != "generation"]
        if other:
            raise InvalidArgumentError(f"asset {other[0][0]!r} is a {other[0][1]} asset, not a generation unit; "
                                       "`ems assets set ... --kind generation --capacity C` says so")
        if technology is not None:
            named = [r for r in rows if r[3] != technology]
            if named:
                raise InvalidArgumentError(f"generation unit {named[0][0]!r} is {named[0][3]}, not {technology}; "
                                           f"name {technology} units only")
    rows = [r for r in rows if r[1] == "generation" and technology in (None, r[3])]
    if not rows:
        raise UnknownAssetError(f"tenant {tenant!r} has no {technology or 'generation'} unit; set one with "
                                f"`ems assets set --kind generation --capacity C --technology {technology or 'wind'}`")
    found = sorted({r[3] for r in rows})
    if len(found) > 1:  # one model per technology (core.names.GENERATION_NAMES): say which to train
        listed = "; ".join(f"{t}: {', '.join(r[0] for r in rows if r[3] == t)}" for t in found)
        raise InvalidArgumentError(f"tenant {tenant!r} has generation units of {len(found)} technologies ({listed}); "
                                   "a generation model forecasts one: give --technology wind or --technology pv "
                                   "(or name the units with --asset)")
    no_site = [r for r in rows if r[4] is None]
    if no_site:
        raise InvalidArgumentError(f"generation unit {no_site[0][0]!r} has no site, so no weather "
                                   "forecasts; ingest its readings with --site")
    unplaced = [r for r in rows if r[3] == "pv" and (r[5] is None or r[6] is None)]
    if unplaced:
        raise InvalidArgumentError(
            f"PV unit {unplaced[0][0]!r} of tenant {tenant!r} has no position, so no sun: set it with `ems assets set "
            f"--tenant {tenant} --asset {unplaced[0][0]} --kind generation --capacity {unplaced[0][2]:g} "
            "--technology pv --latitude LAT --longitude LON` (decimal degrees)")
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
              issued_by: datetime | None = None, variables=WIND) -> pd.DataFrame:
    """Every stored issue of `series` for the target hours in [start, end) (issued by `issued_by` if
    given): target_time, issue_time and `variables` (default the wind variables)."""
    variables = list(variables)
    unknown = [c for c in variables if c not in COVARIATE_FORECAST_VARIABLES]
    if unknown:
        raise ValueError(f"unknown forecast variable(s) {', '.join(unknown)}; known: "
                         f"{', '.join(COVARIATE_FORECAST_VARIABLES)}")
    with connect(settings) as conn:
        rows = conn.execute(sql.SQL(
            "SELECT target_time, issue_time, {cols} FROM covariate_forecasts "
            "WHERE series_id = %s AND target_time >= %s AND target_time < %s "
            "AND (%s::timestamptz IS NULL OR issue_time <= %s::timestamptz) ORDER BY target_time, issue_time"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, variables))),
            (series, start, end, issued_by, issued_by)).fetchall()
    frame = pd.DataFrame(rows, columns=["target_time", "issue_time", *variables])
    for c in ("target_time", "issue_time"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    frame[variables] = frame[variables].astype(float)
    return frame
