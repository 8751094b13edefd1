"""A market zone's hourly prices and day-ahead covariates, as the price forecaster reads them.

Prices are the zone asset's hourly readings (kind `market`); the covariates are the market's day-ahead
forecasts stored under the asset's site in covariate_forecasts (112_market_covariates.sql). Point in time:
the forecast for target day d is issued at ISSUE_HOUR local time on day d-1 (before the day-ahead auction),
so each target hour of day d takes the latest covariate issued at or before that time, for training rows
and for the forecast alike.
"""

from __future__ import annotations

import pandas as pd

from core.errors import InvalidArgumentError, UnknownAssetError
from core.names import check_tenant_id
from core.settings import Settings
from warehouse.covariates import MARKET_FORECAST_VARIABLES
from warehouse.db import connect

HOUR = pd.Timedelta(hours=1)
ISSUE_HOUR = 10  # local hour of day d-1 at which day d is forecast (the NP/EPEX auctions close at noon)


def zone(settings: Settings, tenant: str, asset: str) -> dict:
    """The market zone's site and time zone; one error for an unknown asset or one of another kind."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        row = conn.execute("SELECT kind, site_id, timezone FROM assets WHERE tenant_id = %s AND asset_id = %s",
                           (tenant, asset)).fetchone()
    if row is None:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {asset!r}")
    if row[0] != "market":
        raise InvalidArgumentError(f"asset {asset!r} is a {row[0]} asset, not a market zone; `ems assets set "
                                   f"--tenant {tenant} --asset {asset} --kind market` says so")
    if row[1] is None:
        raise InvalidArgumentError(f"market zone {asset!r} has no site: its day-ahead forecasts are stored under "
                                   "a site (`ems ingest --site S`, `ems ingest-weather --site S --forecast`)")
    return {"site": row[1], "timezone": row[2] or "UTC"}


def issue_time(day: pd.Timestamp, tz: str) -> pd.Timestamp:
    """When target day `day` (a local date) is forecast: ISSUE_HOUR local on the day before, in UTC."""
    return (pd.Timestamp(day.date()) - pd.Timedelta(days=1) + pd.Timedelta(hours=ISSUE_HOUR)).tz_localize(
        tz).tz_convert("UTC")


def frame(settings: Settings, tenant: str, asset: str, site: str, tz: str, until: pd.Timestamp | None = None,
          extra_day: bool = False) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Hourly rows (timestamp = local hour start, naive; price; the market's covariates present in the store)
    of the complete local days with prices up to `until` (UTC, exclusive); with `extra_day` also the next day's
    24 hours (price NaN) when its covariates are stored. Covariates: per target day, the latest issue at or
    before `issue_time(day)`. Returns the rows and the covariate names (those with any value)."""
    from warehouse import hourly

    prices = hourly.history(settings, tenant, [asset], until).get(asset, pd.Series(dtype=float))
    if until is not None:
        prices = prices[prices.index <= until]
    start = (prices.index - HOUR).tz_convert(tz)
    names = list(MARKET_FORECAST_VARIABLES)
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT target_time, issue_time, load_forecast, wind_forecast, zonal_load_forecast FROM "
            "covariate_forecasts WHERE series_id = %s AND target_time >= %s ORDER BY target_time, issue_time",
            (site, (start.min() if len(start) else pd.Timestamp("1970-01-01", tz="UTC")).to_pydatetime())).fetchall()
    cov = pd.DataFrame(rows, columns=["target_time", "issue_time", *names])
    cov["target_time"] = pd.to_datetime(cov["target_time"], utc=True)
    cov["issue_time"] = pd.to_datetime(cov["issue_time"], utc=True)
    local_day = cov["target_time"].dt.tz_convert(tz).dt.normalize().dt.tz_localize(None)
    cutoff = pd.Series({d: issue_time(d, tz) for d in local_day.unique()})
    cov = cov[cov["issue_time"].to_numpy() <= cutoff.reindex(local_day).to_numpy()]
    cov[names] = cov[names].astype(float)
    exog = tuple(c for c in names if cov[c].notna().any())
    latest = cov.dropna(subset=list(exog), how="all").groupby("target_time")[list(exog)].last()
    out = pd.DataFrame({"price": prices.to_numpy()}, index=(prices.index - HOUR))
    if extra_day and len(out):
        last = out.index[-1].tz_convert(tz).normalize()
        nxt = pd.date_range(last + pd.Timedelta(days=1), last + pd.Timedelta(days=2), freq="h", inclusive="left",
                            tz=tz).tz_convert("UTC")
        out = pd.concat([out, pd.DataFrame({"price": float("nan")}, index=nxt)])
    out = out.join(latest, how="left")
    out.index = out.index.tz_convert(tz)
    out["day"] = out.index.tz_localize(None).normalize()
    complete = out.groupby("day").size() == 24
    out = out[out["day"].map(complete).to_numpy()]
    out = out.dropna(subset=list(exog))
    full = out.groupby("day").size() == 24
    out = out[out["day"].map(full).to_numpy()]
    out = out.reset_index(names="ts")
    out["timestamp"] = out["ts"].dt.tz_localize(None)
    return out[["timestamp", "price", *exog]].reset_index(drop=True), exog


def trailing_days(rows: pd.DataFrame) -> pd.DataFrame:
    """The last run of consecutive complete days (a gap or a DST day with 23/25 hours ends the run before it)."""
    day = rows["timestamp"].dt.normalize()
    days = day.drop_duplicates()
    breaks = days.diff() != pd.Timedelta(days=1)
    first = days[breaks].iloc[-1] if len(days) else None
    return rows[day >= first].reset_index(drop=True) if first is not None else rows
