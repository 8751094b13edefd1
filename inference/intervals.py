"""Forecasts at other intervals than the hour (Client.forecast(..., interval_minutes=N)).

15 and 30 minutes: the asset's step features (online from Redis, the warehouse row where Redis has none), the
step means of the last two weeks for the target-aligned lags, and the production version of
`load_forecaster_{N}min` (a version must carry `interval_minutes=N`). 1440: the hourly forecast aggregated to
the asset's local days (registry/daily.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import InvalidRangeError
from core.names import (
    STEP_SERVICES,
    TAG_INTERVAL,
    InvalidIntervalError,
    check_interval_for_step,
    step_model_name,
)
from inference.results import ForecastResult
from registry.step_design import ISSUE, expand, steps_for

HISTORY_DAYS = 15  # the target-aligned lags read up to 14 days before the issue time (7-day median, 7 days ahead)


def check_model_interval(served, interval: int) -> None:
    """One clear error when the model was trained at another interval (versions without the tag are hourly)."""
    trained = int(served.info.tags.get(TAG_INTERVAL, "60"))
    if trained != interval:
        raise InvalidIntervalError(f"model {served.info.id} forecasts at interval_minutes={trained}, not {interval}: "
                                   f"name a {interval}-minute model (default {step_model_name(interval)}) or leave "
                                   "the model out")


def forecast(client, tenant: str, asset: str, horizon: int, interval: int, quantiles: bool, model: str | None,
             as_of: datetime | None) -> ForecastResult:
    from warehouse.steps import asset_step, latest_step, step_rows

    client._state(tenant, asset)  # unknown tenant/asset: one clear error first
    info = client._read(lambda conn: asset_step(conn, tenant, asset))
    check_interval_for_step(interval, info.step, asset)
    served = client._served(tenant, model, step_model_name(interval), "forecast")
    check_model_interval(served, interval)
    s = pd.Timedelta(minutes=interval)
    latest = client._read(lambda conn: latest_step(conn, tenant, asset, interval))
    if latest is None:
        raise InvalidRangeError(f"asset {asset!r} has no {interval}-minute feature rows yet: run `ems refresh`")
    t = latest
    if as_of is not None:
        asked = _when(as_of)
        t = asked.floor(s)
        if t > latest:
            raise InvalidRangeError(f"as_of={asked:%Y-%m-%dT%H:%M:%S} is after the latest complete {interval}-minute "
                                    f"step of {asset!r} ({latest:%Y-%m-%d %H:%M} UTC)")
    rows = client._read(lambda conn: step_rows(conn, tenant, [asset], interval, t - pd.Timedelta(days=HISTORY_DAYS), t))
    series = rows.set_index("event_timestamp")["last_value"]
    issue, source, warnings = _issue_row(client, served, tenant, asset, rows, t, as_of)
    frame = expand(issue, series, np.arange(1, steps_for(horizon, interval) + 1), interval, info.timezone)
    pred = served.python_model.predict(None, frame)
    k = frame["horizon_steps"].to_numpy()
    columns = {"timestamp": pd.DatetimeIndex(frame["target_time"] - s),
               "horizon_h": np.ceil(k * interval / 60).astype(int), "horizon_steps": k,
               "point": pred["point"].to_numpy()}
    if quantiles:
        columns |= {c: pred[c].to_numpy() for c in ("p10", "p50", "p90")}
        columns |= {"lower": columns["p10"], "upper": columns["p90"]}
    now = pd.Timestamp(datetime.now(UTC))
    return ForecastResult(
        tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
        feature_service=served.feature_service, features={c: _plain(issue[c].iloc[0]) for c in ISSUE},
        feature_time=t, feature_age_seconds=(now - t).total_seconds(), source=source,
        training_metrics={k: v for k, v in served.metrics.items() if k in ("mae", "dayahead_mae", "coverage_p10_p90")},
        generated_at=now, warnings=[*served.warnings, *warnings],
        history=pd.Series(series.to_numpy(), index=series.index - s).iloc[-steps_for(168, interval):])


def _issue_row(client, served, tenant: str, asset: str, rows: pd.DataFrame, t: pd.Timestamp, as_of):
    """The step features at t: online (Redis) for the latest step, else the warehouse row (offline)."""
    stored = rows[rows["event_timestamp"] == t]
    if stored.empty:
        raise InvalidRangeError(f"asset {asset!r} has no {served.info.tags.get(TAG_INTERVAL)}-minute feature row "
                                f"ending at {t:%Y-%m-%d %H:%M} UTC")
    issue = stored[["event_timestamp", *ISSUE]].rename(columns={"event_timestamp": "issue_time"}).reset_index(drop=True)
    if as_of is not None:
        return issue, "offline", []
    service = client.store.get_feature_service(STEP_SERVICES[int(served.info.tags[TAG_INTERVAL])])
    online = client.store.get_online_features(features=service, entity_rows=[
        {"tenant_id": tenant, "asset_id": asset}]).to_dict(include_event_timestamps=True)
    stamp = online.get("last_value__ts", [None])[0]  # entity columns carry a 0 stamp
    when = _when(stamp) if stamp else None
    if when != t:
        return issue, "offline", [f"online {served.feature_service} row of {asset!r} "
                                  f"{'is missing' if when is None else f'ends at {when:%Y-%m-%d %H:%M} UTC'}; "
                                  f"read the warehouse row ending at {t:%Y-%m-%d %H:%M} UTC (run `ems materialize`)"]
    for c in ISSUE:
        issue[c] = float("nan") if online[c][0] is None else float(online[c][0])
    return issue, "online", []


def _when(value) -> pd.Timestamp:
    if isinstance(value, int | float):
        return pd.Timestamp(value, unit="s", tz=UTC)
    ts = pd.Timestamp(value)
    return ts.tz_convert(UTC) if ts.tzinfo else ts.tz_localize(UTC)


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def daily(client, hourly: ForecastResult, tenant: str, asset: str, horizon: int) -> ForecastResult:
    """The hourly forecast aggregated to the asset's complete local days (registry/daily.py): energy sums, power
    and prices average; one clear error when the horizon covers no whole day."""
    from registry.daily import aggregate, how
    from warehouse.steps import asset_step

    info = client._read(lambda conn: asset_step(conn, tenant, asset))
    zone, unit = (info.timezone, info.unit) if info else ("UTC", None)
    frame = hourly.frame
    days = aggregate(frame, zone, unit)
    if days.empty:
        first = pd.Timestamp(frame["timestamp"].iloc[0]).tz_convert(zone)
        end = (first.normalize().tz_localize(None) + pd.Timedelta(days=2)).tz_localize(zone)
        need = int(np.ceil((end - pd.Timestamp(frame["timestamp"].iloc[0])) / pd.Timedelta(hours=1)))
        raise InvalidRangeError(f"interval_minutes=1440 with horizon={horizon} covers no whole local day of asset "
                                f"{asset!r} ({zone}): the first complete day ends {need} h after the issue time; "
                                f"use horizon >= {min(need, 168)}")
    end = days["timestamp"] + pd.to_timedelta(days["hours"], unit="h")
    columns = {"timestamp": pd.DatetimeIndex(days["timestamp"]).tz_convert(UTC),
               "horizon_h": np.round((end.dt.tz_convert(UTC) - hourly.feature_time) / pd.Timedelta(hours=1)).astype(
                   int).to_numpy(), "hours": days["hours"].to_numpy(), "point": days["point"].to_numpy()}
    if "p10" in days:
        columns |= {c: days[c].to_numpy() for c in ("p10", "p50", "p90")}
        columns |= {"lower": columns["p10"], "upper": columns["p90"]}
    hourly._frame = columns
    hourly.warnings.append(f"daily {how(unit)} of the hourly forecast over {len(days)} complete local day(s) "
                           f"({zone}); the band combines the hours with within-day error correlation "
                           f"(registry/daily.py)")
    return hourly
