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

WIND = ("wind_speed", "wind_u", "wind_v")


def units(settings: Settings, tenant: str, assets: list[str] | None = None) -> pd.DataFrame:
    """The tenant's generation units (asset_id, capacity, technology, site_id), all or `assets`; one error
    naming an asset that is unknown or not a generation unit, or a unit without a site (no weather)."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        rows = conn.execute("SELECT asset_id, kind, capacity, technology, site_id FROM assets WHERE tenant_id = %s "
                            "ORDER BY asset_id", (tenant,)).fetchall()
    frame = pd.DataFrame(rows, columns=["asset_id", "kind", "capacity", "technology", "site_id"])
    if assets:
        unknown = sorted(set(assets) - set(frame["asset_id"]))
        if unknown:
            raise UnknownAssetError(f"tenant {tenant!r} has no asset {', '.join(map(repr, unknown))}")
        frame = frame[frame["asset_id"].isin(assets)]
        other = frame[frame["kind"] != "generation"]
        if len(other):
            raise InvalidArgumentError(f"asset {other['asset_id'].iloc[0]!r} is a {other['kind'].iloc[0]} asset, not a "
                                       "generation unit; `ems assets set ... --kind generation --capacity C` says so")
    frame = frame[frame["kind"] == "generation"]
    if frame.empty:
        raise UnknownAssetError(f"tenant {tenant!r} has no generation unit; set one with `ems assets set "
                                "--kind generation --capacity C --technology wind`")
    no_site = frame[frame["site_id"].isna()]
    if len(no_site):
        raise InvalidArgumentError(f"generation unit {no_site['asset_id'].iloc[0]!r} has no site, so no weather "
                                   "forecasts; ingest its readings with --site")
    wind = frame[frame["technology"] != "wind"]
    if len(wind):
        raise InvalidArgumentError(f"generation unit {wind['asset_id'].iloc[0]!r} is {wind['technology'].iloc[0]}; "
                                   "the generation forecaster serves wind units only (PV is not built yet)")
    return frame.reset_index(drop=True)


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
