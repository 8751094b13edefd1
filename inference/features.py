"""Model inputs: the feature service recorded on the model, at the issue time, for each target hour.

Online first (Redis through Feast's get_online_features, the calendar for each target hour from the
on-demand view); when Redis is unreachable, or its rows are missing or older than the warehouse's
latest complete hour (materialization lagging), the same features come from the offline store's
point-in-time join, with a warning and `source="offline"`. A caller-supplied history computes them
in pandas (inference/history.py)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from cachetools import LRUCache

from core.errors import FeaturesUnavailableError, InvalidRangeError
from inference import history as hist
from inference.checks import time_range, utc_hour
from registry import target_weather as tw
from registry.design import HORIZON, HOUR, MAX_HORIZON, PEER, aligned, gaps, missing_hours, peer_inputs, uses_peers
from registry.gaps import gap_state, reissue_gap
from warehouse import hourly
from warehouse.store import grid_features, latest_feature_time, service_columns, service_target_columns
from warehouse.validate import WEATHER_VARIABLES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetSource:
    """One stored asset and where its inputs are read: the settings, the Feast store and (optionally) an
    open warehouse connection to reuse; without one, each read opens its own."""

    settings: object  # core.settings.Settings
    store: object  # feast.FeatureStore
    tenant: str
    asset: str
    conn: object = None  # psycopg.Connection


@dataclass
class Inputs:
    columns: dict[str, np.ndarray]  # per target hour: model features + horizon_h (float, NaN = missing)
    issue_time: pd.Timestamp  # end of the last complete hour the features describe
    values: dict[str, float | None]  # the issue-time feature values
    source: str  # online | offline | history
    warnings: list[str] = field(default_factory=list)

    @property
    def target_time(self) -> pd.DatetimeIndex:
        """End of each target hour (hour h covers [issue_time + h - 1 h, issue_time + h))."""
        return self._hours(1)

    @property
    def target_start(self) -> pd.DatetimeIndex:
        """Start of each target hour."""
        return self._hours(0)

    def _hours(self, first: int) -> pd.DatetimeIndex:
        hours = np.arange(first, first + len(self.columns[HORIZON]), dtype="int64") * HOUR.value
        return pd.DatetimeIndex(self.issue_time.value + hours, tz="UTC")  # 3x faster than date_range

    def matrix(self, features: list[str]) -> np.ndarray:
        """The model matrix, columns in `features` order."""
        return np.column_stack([self.columns[f] for f in features])

    @property
    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame(self.columns)
        out["target_time"] = self.target_time
        return out


def issue_time(src: AssetSource, as_of: datetime | None) -> pd.Timestamp:
    latest = latest_feature_time(src.settings, src.tenant, [src.asset], src.conn)[src.asset]  # UnknownAssetError
    return resolve_issue_time(latest, src.tenant, src.asset, as_of)


def resolve_issue_time(latest, tenant: str, asset: str, as_of: datetime | None) -> pd.Timestamp:
    """The issue time: the asset's latest complete hour, or `as_of` (floored to the hour, not after it)."""
    if latest is None:
        raise FeaturesUnavailableError(f"asset {asset!r} of tenant {tenant!r} has no hourly readings yet")
    latest = utc_hour(latest)
    if as_of is None:
        return latest
    t = utc_hour(as_of)
    if t > latest:
        raise InvalidRangeError(f"as_of={pd.Timestamp(as_of).isoformat()} is after the latest complete hour of "
                                f"{asset!r} ({latest.isoformat()}); use a time up to it or leave as_of out")
    return t


def forecast_inputs(src: AssetSource, service: str, horizon: int, as_of: datetime | None = None,
                    t: pd.Timestamp | None = None, peers: bool = False,
                    weather: pd.DataFrame | None = None) -> Inputs:
    """`t`: the issue time when the caller has already looked it up (issue_time); `peers`: add the
    peer inputs (a model trained on a service tagged peer_inputs=site has them among its features);
    `weather`: the caller's weather forecast for the target hours (registry/target_weather.py), for a
    service with target-hour weather (else the stored forecasts issued by t)."""
    issue_cols, calendar_cols = service_columns(src.store, service)
    t = t if t is not None else issue_time(src, as_of)
    extra, gap = _aligned_inputs(src, t, horizon)
    back = reissue_gap(float(extra["hours_since_reading"][0]), horizon) if weather is None else None
    if back is not None:  # past the views' TTL: the forecast issued at the last reading (registry/gaps.py)
        last = t - back * HOUR
        inner = forecast_inputs(src, service, horizon + back, last.to_pydatetime(), last, peers)
        note = (f"the last reading of {src.asset!r} is {back} h before the issue time {t:%Y-%m-%d %H:%M} UTC: "
                f"forecast issued at the last reading ({last:%Y-%m-%d %H:%M} UTC) for the same target hours, "
                f"horizons {back + 1}-{back + horizon}")
        own_gap = _aligned_inputs(src, last, horizon + back)[1]  # the week before the last reading (cached)
        return Inputs({k: v[back:] for k, v in inner.columns.items()}, t, inner.values, inner.source,
                      [*([gap] if gap else []), note, *(w for w in inner.warnings if w != own_gap)])
    if peers:
        extra |= _peer_inputs(src, t, horizon)
    targets = [t + (h - 1) * HOUR for h in range(1, horizon + 1)]  # calendar of the hour starting here
    warnings: list[str] = [gap] if gap else []
    if variables := service_target_columns(src.store, service):
        columns, notes = tw.serving_columns(src.settings, _site(src), t, horizon, variables, weather)
        extra |= columns
        warnings += notes
    frame = None
    if as_of is None:
        frame, warning = _online(src, service, targets, issue_cols, t)
        if warning:
            warnings.append(warning)
    source = "online" if frame is not None else "offline"
    if frame is None:
        frame = _offline(src, service, t, targets)
    return _inputs(frame, issue_cols, calendar_cols, t, horizon, source, warnings, extra, src.asset)


# Target-aligned lags per (tenant, asset, issue time) for all 168 horizons: one warehouse read per asset
# and new hour, then served from here (the values of past hours do not change until a backfill).
_ALIGNED_CACHE_SIZE = 4096
_ALIGNED_CACHE: LRUCache = LRUCache(maxsize=_ALIGNED_CACHE_SIZE)


def _aligned_inputs(src: AssetSource, t: pd.Timestamp, horizon: int) -> tuple[dict[str, np.ndarray], str | None]:
    """ALIGNED columns (registry/design.py) for horizons 1..horizon issued at t, from the hourly means of
    the week before t (the values the feature views' lag_1h had at those hours), and the gap warning of
    that week (gap_warning)."""
    def build():
        week = hourly.series_by_end(src.settings, src.conn, src.tenant, src.asset, t - MAX_HORIZON * HOUR, t)
        return aligned_from(week, t), gap_warning(week, t, repr(src.asset))

    columns, gap = _cached(_ALIGNED_CACHE, (src.tenant, src.asset, t), build)
    return {k: v[:horizon] for k, v in columns.items()}, gap


def gap_warning(series_by_hour_end: pd.Series, t: pd.Timestamp, who: str, hours: int = MAX_HORIZON) -> str | None:
    """A sentence naming the hours without a reading among the `hours` before the issue time t, if any:
    the inputs that read them (same-hour values, lags, rolling statistics) are missing for this forecast.
    `who`: the asset as the sentence names it."""
    missing = missing_hours(series_by_hour_end, t, hours)
    if not len(missing):
        return None
    return (f"{who} has no readings for {len(missing)} of the {hours} hours before the issue time "
            f"{t:%Y-%m-%d %H:%M} UTC ({gaps(missing)}): the inputs that read those hours are missing and the "
            "forecast leans on the hours it has")


def weather_warning(data: dict[str, np.ndarray], issue_cols: list[str], asset: str | None) -> str | None:
    """A sentence when the feature service has weather inputs and every one of them is missing at the
    issue time (an asset without a weather site, or no weather ingested for its site up to then)."""
    names = [c for c in issue_cols if c in WEATHER_VARIABLES]
    if not names or any(np.isfinite(data[c][0]) for c in names):
        return None
    who = f"{asset!r}" if asset else "a supplied history"
    return (f"the model reads weather ({', '.join(names)}) but {who} has none at the issue time (no weather site, "
            "or no weather ingested for it up to that hour): the forecast runs without weather")


_CACHES = threading.Lock()  # cachetools caches are not thread-safe; the HTTP service calls from threads


def _cached(cache: LRUCache, key, build):
    """cache[key], built on a miss (the least recently used entries go beyond the cache's size)."""
    with _CACHES:
        hit = cache.get(key)
    if hit is None:
        hit = build()
        with _CACHES:
            cache[key] = hit
    return hit


_PEER_CACHE: LRUCache = LRUCache(maxsize=_ALIGNED_CACHE_SIZE)


def _peer_inputs(src: AssetSource, t: pd.Timestamp, horizon: int) -> dict[str, np.ndarray]:
    """PEER columns (registry/design.py) for horizons 1..horizon issued at t: one read of the site
    peers' hourly means of the week before t per asset and new hour, then cached."""
    hit = _cached(_PEER_CACHE, (src.tenant, src.asset, t), lambda: peer_columns(
        src, pd.Series([t] * MAX_HORIZON), pd.Series(np.arange(1, MAX_HORIZON + 1))))
    return {k: v[:horizon] for k, v in hit.items()}


def peer_columns(src: AssetSource, issue: pd.Series, horizon: pd.Series) -> dict[str, np.ndarray]:
    """PEER columns for (issue time, horizon) rows of `asset`: its site peers' hourly means of the week
    before the first issue time up to the last, one read."""
    peers = hourly.site_peers(src.conn, src.tenant, [src.asset], src.settings)[src.asset]
    series = hourly.series(src.settings, src.conn, src.tenant, peers, issue.min() - MAX_HORIZON * HOUR,
                           issue.max()) if peers else {}
    return peer_inputs(list(series.values()), issue, horizon)


def aligned_from(series_by_hour_end: pd.Series, t: pd.Timestamp) -> dict[str, np.ndarray]:
    """ALIGNED columns for horizons 1..168 issued at t, and the GAP inputs (registry/gaps.py) of t."""
    horizons = pd.Series(np.arange(1, MAX_HORIZON + 1))
    out = aligned(series_by_hour_end, pd.Series([t] * MAX_HORIZON), horizons)
    return out | {k: np.repeat(v, MAX_HORIZON) for k, v in gap_state(series_by_hour_end, [t]).items()}


def _site(src: AssetSource) -> str | None:
    """The asset's weather site (None without one)."""
    row = hourly.fetch(src.settings, src.conn, "SELECT site_id FROM assets WHERE tenant_id = %s AND asset_id = %s",
                       (src.tenant, src.asset))
    return row[0][0] if row else None


def _inputs(frame, issue_cols, calendar_cols, t, horizon, source, warnings, extra=None, asset=None) -> Inputs:
    """`frame`: columns (a DataFrame or a dict of lists) holding the issue-time and calendar features;
    `extra`: further model inputs per target hour (the target-aligned lags)."""
    data = {c: np.asarray(frame[c], dtype=float) for c in [*issue_cols, *calendar_cols]}
    data |= {c: np.asarray(v, dtype=float) for c, v in (extra or {}).items()}
    data[HORIZON] = np.arange(1, horizon + 1, dtype=float)
    values = {c: (None if np.isnan(data[c][0]) else float(data[c][0])) for c in issue_cols}
    if weather := weather_warning(data, issue_cols, asset):
        warnings = [*warnings, weather]
    return Inputs(data, t, values, source, warnings)


def _online(src: AssetSource, service: str, targets, issue_cols, t) -> tuple[dict | None, str | None]:
    import redis

    from inference.online import online_reader

    try:
        data = online_reader(src.store).read(service, src.tenant, [src.asset] * len(targets),
                                         {"target_time": [x.to_pydatetime() for x in targets]}, event_timestamps=True)
    except (redis.RedisError, ConnectionError, OSError) as e:
        return None, f"online store unreachable ({type(e).__name__}); features computed from the offline store"
    online_time = max((data[f"{c}__ts"][0] for c in issue_cols), default=0)
    if online_time < t.timestamp():
        seen = pd.Timestamp(online_time, unit="s", tz="UTC").isoformat() if online_time else "never"
        return None, (f"online features of {src.asset!r} are from {seen}, the warehouse has {t.isoformat()} "
                      "(materialize is behind); features computed from the offline store")
    return {k: v for k, v in data.items() if not k.endswith("__ts")}, None


def _offline(src: AssetSource, service: str, t, targets) -> pd.DataFrame:
    grid = grid_features(src.store, service)
    entity_df = pd.DataFrame({"tenant_id": src.tenant, "asset_id": src.asset, "event_timestamp": [t] * len(targets),
                              "target_time": targets})
    return src.store.get_historical_features(entity_df=entity_df, features=grid).to_df()


def recent_forecast_rows(src: AssetSource, service: str, features: list[str], t: pd.Timestamp,
                         origins: list[tuple[pd.Timestamp, int]]) -> tuple[np.ndarray, ...]:
    """(model matrix, horizons, actuals) of the forecasts issued at each (issue time, horizons 1..H) of
    `origins` whose target hours have ended by t, built as the backtest builds held-out rows: the
    service's point-in-time features at the issue time (one offline read for all of them), the calendar
    of the target hour, target-aligned lags and the hourly mean as the actual (registry/forecaster.py,
    recent-residual calibration)."""
    issue_cols, calendar_cols = service_columns(src.store, service)
    first = min(o for o, _ in origins)
    series = hourly.series_by_end(src.settings, src.conn, src.tenant, src.asset, first - MAX_HORIZON * HOUR, t)
    issue = pd.Series([o for o, h in origins for _ in range(h)])
    horizon = pd.Series([k for _, h in origins for k in range(1, h + 1)])
    target = issue + horizon * HOUR
    entity_df = pd.DataFrame({"tenant_id": src.tenant, "asset_id": src.asset, "event_timestamp": issue,
                              "target_time": target - HOUR, "row": np.arange(len(issue))})
    frame = src.store.get_historical_features(entity_df=entity_df,
                                              features=grid_features(src.store, service)).to_df()
    frame = frame.sort_values("row").reset_index(drop=True)
    columns = {c: frame[c].to_numpy(dtype=float) for c in [*issue_cols, *calendar_cols]}
    columns |= aligned(series, issue, horizon)
    columns |= gap_state(series, issue)
    if variables := service_target_columns(src.store, service):
        rows = pd.DataFrame({"asset_id": src.asset, "issue_time": issue, "target_time": target})
        columns |= tw.training_columns(src.settings, src.store, src.tenant, rows, variables)[0]
    if uses_peers(features):
        columns |= peer_columns(src, issue, horizon)
    columns[HORIZON] = horizon.to_numpy(dtype=float)
    y = series.reindex(target).to_numpy()
    keep = np.isfinite(y)
    return np.column_stack([columns[f] for f in features])[keep], horizon.to_numpy()[keep], y[keep]


def history_forecast_inputs(store, service: str, series: pd.Series, horizon: int, timezone: str,
                            weather: pd.DataFrame | None = None) -> Inputs:
    """Inputs from a caller-supplied series: issue time = end of its last hour; target-hour weather from the
    caller's `weather` only."""
    issue_cols, calendar_cols = service_columns(store, service)
    buckets = hist.hourly(series)
    t = buckets.index[-1] + HOUR
    load = hist.load_features(buckets, pd.DatetimeIndex([t]))
    targets = [t + (h - 1) * HOUR for h in range(1, horizon + 1)]
    frame = hist.calendar(store, targets, timezone)
    for c in issue_cols:
        frame[c] = load[c].iloc[0] if c in load.columns else np.nan
    by_end = pd.Series(buckets.to_numpy(), index=buckets.index + HOUR)
    extra = {k: v[:horizon] for k, v in aligned_from(by_end, t).items()}
    extra |= {name: np.full(horizon, np.nan) for name in PEER}  # a supplied series has no site peers
    span = int((t - by_end.index[0]) / HOUR) + 1  # hours from the history's first to its issue time
    gap = gap_warning(by_end, t, "the supplied history", min(MAX_HORIZON, span))
    warnings = [gap] if gap else []
    if variables := service_target_columns(store, service):
        columns, notes = tw.serving_columns(None, None, t, horizon, variables, weather)
        extra |= columns
        warnings += notes
    return _inputs(frame, issue_cols, calendar_cols, t, horizon, "history", warnings, extra)


def anomaly_frame(src: AssetSource, service: str, start, end) -> pd.DataFrame:
    """Features at each hour start E in [start, end) and the hourly mean `value` of [E, E+1h) of a
    known asset (the caller has checked it with issue_time)."""
    start, end = time_range(start, end)
    by_end = hourly.series_by_end(src.settings, src.conn, src.tenant, src.asset, start, end)
    values = pd.Series(by_end.to_numpy(), index=by_end.index - HOUR)  # by hour start
    if values.empty:
        raise FeaturesUnavailableError(f"asset {src.asset!r} has no hourly readings in [{start.isoformat()}, "
                                       f"{end.isoformat()})")
    entity_df = pd.DataFrame({"tenant_id": src.tenant, "asset_id": src.asset, "event_timestamp": values.index,
                              "target_time": values.index})
    frame = src.store.get_historical_features(entity_df=entity_df,
                                              features=grid_features(src.store, service)).to_df()
    frame = frame.sort_values("event_timestamp").reset_index(drop=True)
    frame["value"] = values.reindex(pd.to_datetime(frame["event_timestamp"], utc=True)).to_numpy()
    return frame


def history_anomaly_frame(store, series: pd.Series, timezone: str, start=None, end=None) -> pd.DataFrame:
    buckets = hist.hourly(series)
    times = buckets.index
    if start is not None or end is not None:
        s, e = time_range(start or times[0], end or times[-1] + HOUR)
        times = times[(times >= s) & (times < e)]
    load = hist.load_features(buckets, times)
    frame = pd.concat([load.reset_index(drop=True), hist.calendar(store, times, timezone)], axis=1)
    frame.insert(0, "event_timestamp", times)
    frame["value"] = buckets.reindex(times).to_numpy()
    return frame

