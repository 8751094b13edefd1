"""Direct multi-horizon design: one row per (asset, issue time t, horizon h). Pure pandas, no I/O.

A row holds the feature service's values at the issue time t (known when the forecast is made; the
feature row at t uses readings before t only), the calendar of the target hour [t+h-1h, t+h) and
the horizon h. Its label is the hourly mean of that target hour. Training and inference build rows
the same way, so the model never sees a value it would not have when forecasting.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

HOUR = pd.Timedelta(hours=1)
MAX_HORIZON = 168
HORIZON = "horizon_h"
META = ["asset_id", "issue_time", "target_time"]
# Target-aligned lags: the load of the target's hour of day on the last and second-to-last days observed
# at the issue time, the median of that hour over the last seven observed days (the daily profile), and
# the same hour one week before the target (the two seasonal-naive forecasts are same_hour_1d and
# same_hour_7d). The feature service's lags are relative to the issue time; these follow the target hour.
# All of them read the 168 hours before the issue time only.
# The profile is a median, not a mean: a few atypical days (a load that ran for three days and stopped,
# a holiday) move a mean by a third of their excess for a whole week after they end, and the forecaster
# leans on the profile more than on any other input; the median ignores them while they are a minority.
# (Measurements: README, Evaluation.) Models trained before this read the mean, which `aligned` still
# returns.
ALIGNED = ("same_hour_1d", "same_hour_2d", "same_hour_median_7d", "same_hour_7d")
PROFILE_MEAN = "same_hour_mean_7d"
PROFILE_DAYS = 7


def _same_hour(series: pd.Series, target: pd.Series, days_back: np.ndarray) -> np.ndarray:
    return series.reindex(target - pd.to_timedelta(days_back * 24, unit="h")).to_numpy()


def naive_forecasts(series: pd.Series, issue: pd.Series, horizon: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal-naive forecasts for target t+h made at t: the last observed same hour of day
    (t+h-24*ceil(h/24)) and the same hour one week before (t+h-168h). `series` is indexed by hour end."""
    lags = aligned(series, issue, horizon)
    return lags["same_hour_1d"], lags["same_hour_7d"]


# Seasonal-naive baselines where their own hour is missing (a gap in the readings): each falls back to
# the other seasonal forecast, then to the last value observed at the issue time, so a baseline is known
# on every row the model is scored on and both are scored on the same rows. The source of each row's
# baseline value is kept (BASELINE_SOURCES[name][k], k = 0 its own) and reports count the fallbacks.
LAST_VALUE = "last_value"
BASELINE_SOURCES = {"naive_24": ("naive_24", "naive_168", LAST_VALUE),
                    "naive_168": ("naive_168", "naive_24", LAST_VALUE)}


def last_value(series: pd.Series, issue: pd.Series) -> np.ndarray:
    """The last known hourly mean of `series` (indexed by hour end) ending at or before each issue time."""
    s = series.dropna().sort_index()
    t = pd.DatetimeIndex(issue)
    if s.empty:
        return np.full(len(t), np.nan)
    pos = s.index.searchsorted(t, side="right") - 1
    return np.where(pos >= 0, s.to_numpy(dtype=float)[np.clip(pos, 0, None)], np.nan)


def baselines(series: pd.Series, issue: pd.Series, horizon: pd.Series) -> dict[str, np.ndarray]:
    """naive_24 and naive_168 with their fallbacks (BASELINE_SOURCES), and `{name}_source`: the index
    of the source each row used (0 = its own; -1 where even the last value is unknown)."""
    lags = aligned(series, issue, horizon)
    known = {"naive_24": lags["same_hour_1d"], "naive_168": lags["same_hour_7d"],
             LAST_VALUE: last_value(series, issue)}
    out = {}
    for name, chain in BASELINE_SOURCES.items():
        value, source = np.full(len(issue), np.nan), np.full(len(issue), -1, dtype=np.int64)
        for k in reversed(range(len(chain))):
            v = np.asarray(known[chain[k]], dtype=float)
            ok = np.isfinite(v)
            value, source = np.where(ok, v, value), np.where(ok, k, source)
        out[name], out[f"{name}_source"] = value, source
    return out


def aligned(series: pd.Series, issue: pd.Series, horizon: pd.Series) -> dict[str, np.ndarray]:
    """ALIGNED columns (and PROFILE_MEAN) for (issue time, horizon) rows from the asset's hourly means
    indexed by hour end (only hours ending at or before the issue time are read)."""
    target = issue + horizon * HOUR
    back = np.ceil(horizon.to_numpy() / 24).astype(int)
    days = np.column_stack([_same_hour(series, target, back + k) for k in range(PROFILE_DAYS)])
    week = _same_hour(series, target, np.full(len(target), 7))
    out = dict(zip(ALIGNED, (days[:, 0], days[:, 1], known_median(days, axis=1), week), strict=True))
    out[PROFILE_MEAN] = known_mean(days, axis=1)
    return out


def missing_hours(series: pd.Series, t: pd.Timestamp, hours: int = MAX_HORIZON) -> pd.DatetimeIndex:
    """The hours (by hour end) among the `hours` ending at or before `t` without a known value in
    `series` (hourly means indexed by hour end)."""
    ends = pd.date_range(t - (hours - 1) * HOUR, t, freq="h")
    known = series.index[np.isfinite(series.to_numpy(dtype=float))] if len(series) else series.index
    return ends[~ends.isin(known)]


def gaps(missing: pd.DatetimeIndex) -> str:
    """Missing hours (by hour end) as runs: '2024-03-01 06:00–24:00 (18 h)', each run from the start of
    its first hour to the end of its last; '' when nothing is missing."""
    if len(missing) == 0:
        return ""
    ends = pd.DatetimeIndex(missing).sort_values()
    breaks = np.flatnonzero(np.diff(ends.asi8) != HOUR.value) + 1
    runs = []
    for run in np.split(np.arange(len(ends)), breaks):
        start, end = ends[run[0]] - HOUR, ends[run[-1]]
        last = "24:00" if end.hour == 0 and end.normalize() > start.normalize() and end - start <= pd.Timedelta(
            days=1) else f"{end:%H:%M}" if end.normalize() == start.normalize() else f"{end:%Y-%m-%d %H:%M}"
        runs.append(f"{start:%Y-%m-%d %H:%M}–{last} ({len(run)} h)")
    return "; ".join(runs)



def known_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite values along `axis`; NaN where none is (no warning for empty slices)."""
    known = np.isfinite(values)
    count = known.sum(axis=axis)
    total = np.where(known, values, 0.0).sum(axis=axis)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)


def known_median(values: np.ndarray, axis: int) -> np.ndarray:
    """Median of the finite values along `axis`; NaN where none is (no warning for empty slices)."""
    if values.size == 0 or values.shape[axis] == 0:
        return np.full(np.delete(values.shape, axis), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice encountered"
        return np.nanmedian(values, axis=axis)


def expand(
    hourly: pd.DataFrame,
    issue_features: list[str],
    calendar_features: list[str],
    pairs: pd.DataFrame,
) -> pd.DataFrame:
    """Rows for (asset_id, issue_time, horizon_h) pairs.

    `hourly` has one row per asset and hour boundary E (columns asset_id, event_timestamp and the
    feature service's columns) where the calendar columns describe the hour starting at E. A pair
    takes the issue features from E = issue_time and the calendar from E = target start."""
    pairs = pairs.reset_index(drop=True)
    target = pairs["issue_time"] + pairs[HORIZON] * HOUR
    keyed = hourly.set_index(["asset_id", "event_timestamp"])
    at_issue = keyed[issue_features].reindex(pd.MultiIndex.from_arrays([pairs["asset_id"], pairs["issue_time"]]))
    at_target = keyed[calendar_features].reindex(pd.MultiIndex.from_arrays([pairs["asset_id"], target - HOUR]))
    out = pd.concat([at_issue.reset_index(drop=True), at_target.reset_index(drop=True)], axis=1)
    out[HORIZON] = pairs[HORIZON].astype("int64")
    out.insert(0, "target_time", target)
    out.insert(0, "issue_time", pairs["issue_time"])
    out.insert(0, "asset_id", pairs["asset_id"].to_numpy())
    return out


def sample_pairs(
    issues: pd.DataFrame, horizons_per_issue: int, rng: np.random.Generator, max_horizon: int = MAX_HORIZON,
    dense: int = 0,
) -> pd.DataFrame:
    """(asset_id, issue_time) rows x horizons: every horizon 1..`dense` at every issue time, plus
    `horizons_per_issue` of dense+1..max_horizon (all of them, or a seeded sample per issue time: keeps
    training sets small while every sampled horizon is seen equally often)."""
    n = len(issues)
    dense = min(max(dense, 0), max_horizon)
    rest = max_horizon - dense
    k = min(horizons_per_issue, rest)
    if k == rest:
        sampled = np.tile(np.arange(dense + 1, max_horizon + 1), n)
    else:
        sampled = np.concatenate([rng.choice(rest, size=k, replace=False) + dense + 1 for _ in range(n)]) if n else \
            np.array([], dtype=int)
    per_issue = dense + k
    horizons = np.concatenate([np.tile(np.arange(1, dense + 1), (n, 1)), sampled.reshape(n, k)], axis=1).ravel() \
        if n else np.array([], dtype=int)
    out = issues[["asset_id", "issue_time"]].loc[issues.index.repeat(per_issue)].reset_index(drop=True)
    out[HORIZON] = horizons.astype("int64")
    return out


def days(delta: pd.Timedelta) -> float:
    return math.floor(delta / pd.Timedelta(hours=1)) / 24


# Peer inputs: how the asset's site peers (the tenant's other assets at the same site, which share its
# weather) are loading right now relative to their own last week, averaged over the peers. A weather
# change shows in every load of a region, and not always at the same time (a front crosses the west of
# a grid hours before its east), so the peers' recent deviation tells a forecaster what is coming. Ratios
# (unitless), read from the peers' hourly means before the issue time only; NaN without peers.
PEER = ("peer_lag_1h_ratio", "peer_avg_24h_ratio", "peer_max_24h_ratio", "peer_same_hour_1d_ratio")


def peer_state(series: pd.Series, issue: pd.Series) -> np.ndarray:
    """(rows x 3): last hour, mean of the last 24 h and max of the last 24 h of `series` (hourly means
    indexed by hour end), each over the mean of its last 168 h, at each issue time."""
    s = series.sort_index()
    s = s[~s.index.duplicated()].asfreq("h") if len(s) else s
    week = s.rolling(MAX_HORIZON, min_periods=24).mean()
    day = s.rolling(24, min_periods=6)
    state = pd.DataFrame({"lag": s / week, "avg": day.mean() / week, "max": day.max() / week})
    return state.reindex(pd.DatetimeIndex(issue)).to_numpy(dtype=float)


def peer_inputs(peers: list[pd.Series], issue: pd.Series, horizon: pd.Series) -> dict[str, np.ndarray]:
    """PEER columns for (issue time, horizon) rows: the mean over `peers` (hourly means indexed by hour
    end) of their state at the issue time and of their same-hour-yesterday over same-hour-7-day-mean
    ratio at the target hour; NaN where no peer is known."""
    n = len(issue)
    if not peers:
        return {name: np.full(n, np.nan) for name in PEER}
    stacked = []
    for s in peers:
        lags = aligned(s, issue, horizon)
        with np.errstate(divide="ignore", invalid="ignore"):
            same_hour = lags["same_hour_1d"] / lags[PROFILE_MEAN]
        stacked.append(np.column_stack([peer_state(s, issue), same_hour]))
    return dict(zip(PEER, known_mean(np.stack(stacked), axis=0).T, strict=True))  # peers x rows x 4 -> rows x 4


def uses_peers(features) -> bool:
    """Whether a model with these inputs reads peer inputs (trained on a peer_inputs=site service)."""
    return PEER[0] in features
