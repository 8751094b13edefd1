"""A market zone's hourly prices and day-ahead covariates, as the price forecaster reads them.

Prices are the zone asset's hourly readings (kind `market`); the covariates are the market's day-ahead
forecasts stored under the asset's site in covariate_forecasts (112_market_covariates.sql). Point in time:
the forecast for target day d is issued at ISSUE_HOUR local time on day d-1 (before the day-ahead auction),
so each target hour of day d takes the latest covariate issued at or before that time, for training rows
and for the forecast alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from psycopg import sql

from core.errors import FeaturesUnavailableError, InvalidArgumentError, UnknownAssetError
from core.names import check_tenant_id
from core.settings import Settings
from warehouse.covariates import MARKET_FORECAST_VARIABLES
from warehouse.db import connect

HOUR = pd.Timedelta(hours=1)
ISSUE_HOUR = 10  # local hour of day d-1 at which day d is forecast (the NP/EPEX auctions close at noon)
HOURS = 24

# The days a forecast issued at %(until)s reads, in one statement: the zone's site and time zone; the target day
# (the local day after the zone's last price hour ending by `until`) and the %(past)s days before it; per hour of
# those days its price (none on the target day) and, per covariate, the latest value issued by ISSUE_HOUR local on
# the day before the hour's local day (frame's rule: `last()` of the issues by then, per column). Each hour comes
# with its local day and hour. No prices: the zone's row alone (hour NULL); an unknown zone: no row.
WINDOW_SQL = sql.SQL("""
WITH z AS (
    SELECT site_id, coalesce(timezone, 'UTC') AS tz FROM assets WHERE tenant_id = %(tenant)s AND asset_id = %(asset)s
), w AS (
    SELECT z.site_id, z.tz, (d - make_interval(days => %(past)s)) AT TIME ZONE z.tz AS first,
           d AT TIME ZONE z.tz AS target, (d + interval '1 day') AT TIME ZONE z.tz AS stop
    FROM z, LATERAL (
        SELECT date_trunc('day', max(bucket) AT TIME ZONE z.tz) + interval '1 day' AS d FROM readings_hourly
        WHERE tenant_id = %(tenant)s AND asset_id = %(asset)s AND bucket <= %(until)s - interval '1 hour') last
), hours AS (
    SELECT r.bucket AS hour, r.avg_value AS price FROM w JOIN readings_hourly r
        ON r.tenant_id = %(tenant)s AND r.asset_id = %(asset)s AND r.bucket >= w.first
       AND r.bucket <= %(until)s - interval '1 hour'
    UNION ALL
    SELECT generate_series(w.target, w.stop - interval '1 hour', interval '1 hour'), NULL FROM w
), cov AS (
    SELECT f.target_time, {latest} FROM w JOIN covariate_forecasts f
        ON f.series_id = w.site_id AND f.target_time >= w.first AND f.target_time < w.stop
       AND f.issue_time <= (date_trunc('day', f.target_time AT TIME ZONE w.tz) - interval '1 day'
                            + make_interval(hours => %(issue_hour)s)) AT TIME ZONE w.tz
    GROUP BY f.target_time
)
SELECT z.site_id, z.tz, h.hour, (h.hour AT TIME ZONE z.tz)::date, extract(hour FROM h.hour AT TIME ZONE z.tz)::int,
       h.price, {values}
FROM z LEFT JOIN (hours h LEFT JOIN cov c ON c.target_time = h.hour) ON true
ORDER BY h.hour""")


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


@dataclass(frozen=True)
class Window:
    """What a price forecast reads: the target day and the days before it, complete and consecutive."""

    site: str
    timezone: str
    dates: pd.DatetimeIndex  # the local days, the target day last
    price: np.ndarray  # (days, 24); the target day's NaN
    exog: np.ndarray  # (days, covariates, 24)
    target: pd.DatetimeIndex  # the target day's hours (start, UTC)


def forecast_window(conn, tenant: str, asset: str, until: pd.Timestamp, past_days: int,
                    exog: tuple[str, ...]) -> Window:
    """The rows `frame(..., until, extra_day=True)` then `trailing_days` give for a forecast at `until` (UTC), of
    the target day and the `past_days` before it only, in one query on `conn` (an open autocommit connection).
    One clear error when the zone has no site, a covariate is not a market one or has no value in those days,
    or a day is incomplete (a gap, a DST day with 23/25 hours, no covariates issued for the target day)."""
    unknown = [c for c in exog if c not in MARKET_FORECAST_VARIABLES]
    if unknown:
        raise InvalidArgumentError(f"covariate(s) {', '.join(unknown)} are not market forecasts; the store has "
                                   f"{', '.join(MARKET_FORECAST_VARIABLES)}")
    latest = sql.SQL(", ").join(
        sql.SQL("(array_agg({c} ORDER BY f.issue_time DESC) FILTER (WHERE {c} IS NOT NULL))[1] AS {c}").format(
            c=sql.Identifier(c)) for c in exog)
    values = sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(c)) for c in exog)
    rows = conn.execute(WINDOW_SQL.format(latest=latest, values=values),
                        {"tenant": tenant, "asset": asset, "until": until.to_pydatetime(), "past": past_days,
                         "issue_hour": ISSUE_HOUR}).fetchall()
    if not rows:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {asset!r}")
    site, tz = rows[0][0], rows[0][1]
    if site is None:
        raise InvalidArgumentError(f"market zone {asset!r} has no site: its day-ahead forecasts are stored under "
                                   "a site (`ems ingest --site S`, `ems ingest-weather --site S --forecast`)")
    if rows[0][2] is None:  # no price by `until`
        rows = []
    days = past_days + 1
    v = np.array([r[5:] for r in rows], dtype=float).reshape(len(rows), 1 + len(exog))
    empty = [c for c, col in zip(exog, v[:, 1:].T, strict=True) if np.isnan(col).all()]
    if rows and empty:
        raise FeaturesUnavailableError(f"no {', '.join(empty)} stored for site {site!r} in the {days} days up to "
                                       f"the target day of {asset!r}'s forecast at {until.isoformat()}")
    dates = [rows[-1][3] - timedelta(days=k) for k in range(past_days, -1, -1)] if rows else []
    # every day of the window complete (hours 0..23 of consecutive local days) with every covariate, the target
    # day without prices: the rows the training frame's day filters and trailing_days would keep
    if not (len(rows) == days * HOURS and [r[3] for r in rows] == [d for d in dates for _ in range(HOURS)]
            and [r[4] for r in rows] == list(range(HOURS)) * days and not np.isnan(v[:, 1:]).any()
            and np.isnan(v[-HOURS:, 0]).all()):
        raise FeaturesUnavailableError(
            f"no day-ahead covariates of site {site!r} issued for the day after {asset!r}'s last complete day "
            f"of prices (or fewer than {past_days} days of prices before it): nothing to forecast at "
            f"{until.isoformat()}")
    gap = np.flatnonzero(np.isnan(v[:-HOURS, 0]))
    if len(gap):
        raise FeaturesUnavailableError(f"{asset!r} has an empty price at {rows[gap[0]][2].isoformat()}")
    v = v.reshape(days, HOURS, 1 + len(exog))
    return Window(site, tz, pd.DatetimeIndex(dates), v[:, :, 0], np.moveaxis(v[:, :, 1:], 2, 1),
                  pd.DatetimeIndex([r[2] for r in rows[-HOURS:]]).tz_convert("UTC"))
