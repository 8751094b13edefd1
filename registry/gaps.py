"""Missing hours in the readings: what every forecast input is when hours are missing, and the gaps
injected into training so the model has seen them. Pure pandas/NumPy, no I/O.

Meter feeds lose hours (communication outages, meter swaps, head-end batch delays). Inputs over
missing hours are defined as follows, and computed from the asset's hourly means (indexed by hour
end, the hours ending at or before the issue time t) in training, backtests and serving alike:
- lags (lag_1h, lag_24h, lag_168h, the target-aligned same-hour values) are NaN where their hour is
  missing, never a neighbour's value; the 7-day same-hour median reads the observed days only;
- the issue-time state of the feature service (load_lags, load_rolling) is the one Feast's
  point-in-time join returns: the row of the last hour with readings within the views' TTL (3 h),
  else NaN (`load_state` reproduces it in pandas for gap injection and robustness tests);
- rolling statistics over too few hours are NaN, not a level: a 24 h mean over six night hours
  reads as a load collapse and a ratio to it as a surge (`mask`, MIN_OBSERVED);
- the row's level (registry/forecaster.py scales every load input by it) is `profile_level`: the
  mean over the 24 hours of the day of each hour's last observed value in the week before t, so a
  missing hour takes the same hour of the day before instead of shrinking or tilting the level;
- GAP inputs say what is missing: hours since the last reading, observed hours of the last 24 h and
  168 h.
A model trained with these inputs (GAP among its features) gets all of this; older models keep the
inputs they were trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOUR = pd.Timedelta(hours=1)
WEEK_H = 168
# The feature views' TTL in hours (feature_repo/views.py, HOURLY_TTL): Feast's point-in-time join takes
# the latest row at or before t and at or after t - TTL.
STATE_TTL_H = 3
LEVEL = "profile_level"
GAP = ("hours_since_reading", "observed_24h", "observed_168h", LEVEL)
# Rolling statistics of a window are NaN when it holds fewer observed hours than this (a day missing six
# hours still has both its peaks in most feeds; a week needs five observed days).
MIN_OBSERVED = {"24h": 18, "168h": 120}
ROLLING = {w: (f"historical_avg_{w}", f"historical_std_{w}", f"min_{w}", f"max_{w}", f"range_{w}")
           for w in MIN_OBSERVED}


def _observed(series_by_end: pd.Series) -> pd.Series:
    s = series_by_end[np.isfinite(series_by_end.to_numpy(dtype=float))]
    s = s[~s.index.duplicated(keep="last")].sort_index()
    return s.astype(float)


def gap_state(series_by_end: pd.Series, times) -> dict[str, np.ndarray]:
    """GAP inputs at each issue time (hour end): hours since the end of the last observed hour (NaN
    without one in the week before), observed hours among the 24 and 168 ending at or before t, and
    profile_level."""
    t = pd.DatetimeIndex(times)
    unique, back = np.unique(t.asi8, return_inverse=True)
    if len(unique) < len(t):  # one computation per distinct issue time
        return {k: v[back] for k, v in gap_state(series_by_end, pd.DatetimeIndex(unique, tz=t.tz)).items()}
    s = _observed(series_by_end)
    n = len(t)
    if s.empty or n == 0:
        return {"hours_since_reading": np.full(n, np.nan), "observed_24h": np.zeros(n),
                "observed_168h": np.zeros(n), LEVEL: np.full(n, np.nan)}
    ends = s.index.asi8
    ti = t.asi8
    h = HOUR.value
    upto = np.searchsorted(ends, ti, side="right")
    last = np.where(upto > 0, ends[np.clip(upto - 1, 0, None)], np.iinfo(np.int64).min)
    since = np.where(upto > 0, (ti - last) / h, np.nan)
    since = np.where(since < WEEK_H, since, np.nan)
    obs24 = upto - np.searchsorted(ends, ti - 24 * h, side="right")
    obs168 = upto - np.searchsorted(ends, ti - WEEK_H * h, side="right")
    return {"hours_since_reading": since, "observed_24h": obs24.astype(float), "observed_168h": obs168.astype(float),
            LEVEL: profile_level(s, t)}


def profile_level(series_by_end: pd.Series, times) -> np.ndarray:
    """Per issue time t: the mean over the 24 hours of the day (hours ending t - k, k mod 24) of each
    hour's most recent observed value among the 168 hours ending at t; NaN where the week has none."""
    t = pd.DatetimeIndex(times)
    s = _observed(series_by_end)
    out = np.full(len(t), np.nan)
    if s.empty or not len(t):
        return out
    values = s.reindex(pd.date_range(s.index[0], s.index[-1], freq="h"))
    grid = values.index
    v = values.to_numpy(dtype=float)
    pos = (t.asi8 - grid[0].value) // HOUR.value  # position of the hour ending at t (may be out of the grid)
    back = np.arange(24)[:, None] + 24 * np.arange(7)[None, :]  # (hour of day k, day d) -> hours back
    p = pos[:, None, None] - back[None, :, :]
    ok = (p >= 0) & (p < len(v))
    days = np.where(ok, v[np.clip(p, 0, len(v) - 1)], np.nan)  # (rows, 24, 7)
    first = np.full((len(t), 24), np.nan)
    for d in reversed(range(7)):  # the most recent observed day wins
        col = days[:, :, d]
        first = np.where(np.isfinite(col), col, first)
    known = np.isfinite(first)
    cnt = known.sum(axis=1)
    tot = np.where(known, first, 0.0).sum(axis=1)
    np.divide(tot, cnt, out=out, where=cnt > 0)
    return out


def mask(columns: dict[str, np.ndarray] | pd.DataFrame) -> None:
    """In place: rolling statistics of a window with fewer than MIN_OBSERVED observed hours become NaN
    (needs the GAP counts among `columns`; columns absent are skipped)."""
    for w, names in ROLLING.items():
        count = f"observed_{w}"
        if count not in columns:
            continue
        thin = ~(np.asarray(columns[count], dtype=float) >= MIN_OBSERVED[w])
        for name in names:
            if name in columns:
                if isinstance(columns, pd.DataFrame):
                    columns.loc[thin, name] = np.nan
                else:
                    columns[name] = np.where(thin, np.nan, np.asarray(columns[name], dtype=float))


def reissue_gap(hours_since_reading: float, horizon: int, max_horizon: int = WEEK_H) -> int | None:
    """Hours g to move a forecast's issue time back when its last reading is older than the views' TTL:
    the issue-time state (lags, rolling statistics) is gone then, and the forecast issued at the last
    reading, for the same target hours (horizons g + 1 .. g + horizon), has every input complete and as
    in training. None when the last reading is within the TTL, unknown, or the moved horizons would pass
    `max_horizon`. On the validation days (Tetouan, Oct-Nov 2017, 18 origins) this took the day-ahead MAE
    after an 18 / 30 / 72 h gap from 1.46 / 1.68 / 1.86x the same origins without the gap to 1.14 / 1.33 /
    1.36x (6 h: 1.14x both; README, Evaluation)."""
    if not np.isfinite(hours_since_reading) or hours_since_reading <= STATE_TTL_H:
        return None
    g = int(hours_since_reading)
    return g if g + horizon <= max_horizon else None


def uses_gap_inputs(features) -> bool:
    return GAP[0] in features


# ---------------------------------------------------------------- the service's load state in pandas
LAGS = {"lag_1h": 0, "lag_24h": 23, "lag_168h": 167}


def load_state(series_by_end: pd.Series, times, ttl_hours: int = STATE_TTL_H) -> pd.DataFrame:
    """The load_lags and load_rolling columns (feature_repo/sql/060, 061) Feast's point-in-time join
    returns at each time t from these hourly means: the row of the latest observed hour ending at or
    before t and at or after t - ttl_hours (a row exists only for an hour with readings), else NaN."""
    s = _observed(series_by_end)
    t = pd.DatetimeIndex(times)
    ends = s.index
    rows = pd.DataFrame(index=ends)
    for name, back in LAGS.items():
        rows[name] = s.reindex(ends - back * HOUR).to_numpy()
    for w, hours in (("24h", 24), ("168h", WEEK_H)):
        roll = s.rolling(f"{hours}h")  # hour ends in (E - w, E]: hours starting in [E - w, E)
        stats = {"avg": roll.mean(), "std": roll.std(), "min": roll.min(), "max": roll.max(), "n": roll.count()}
        rows[f"historical_avg_{w}"] = stats["avg"].to_numpy()
        rows[f"historical_std_{w}"] = stats["std"].to_numpy()
        rows[f"min_{w}"] = stats["min"].to_numpy()
        rows[f"max_{w}"] = stats["max"].to_numpy()
        rows[f"range_{w}"] = (stats["max"] - stats["min"]).to_numpy()
        rows[f"hours_{w}"] = stats["n"].to_numpy()
    pos = np.searchsorted(ends.asi8, t.asi8, side="right") - 1
    fresh = (pos >= 0) & (t.asi8 - ends.asi8[np.clip(pos, 0, None)] <= ttl_hours * HOUR.value) if len(ends) else \
        np.zeros(len(t), dtype=bool)
    out = rows.iloc[np.clip(pos, 0, None)].reset_index(drop=True) if len(ends) else \
        pd.DataFrame(np.nan, index=range(len(t)), columns=rows.columns)
    out.loc[~fresh, :] = np.nan
    out.index = t
    return out


# ---------------------------------------------------------------- gap injection and hiding
def hide(series_by_end: pd.Series, blocks: list[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.Series:
    """The series without the hours ending in (start, end] of each block."""
    idx = series_by_end.index
    drop = np.zeros(len(idx), dtype=bool)
    for start, end in blocks:
        drop |= (idx > start) & (idx <= end)
    return series_by_end[~drop]


def random_blocks(issue_times, rng: np.random.Generator, share: float, min_h: int = 1, max_h: int = 72
                  ) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]]:
    """Gaps for training: for a seeded `share` of the issue times, one block of min_h..max_h hours
    (log-uniform length: short outages are the common ones) ending 0..48 h before the issue time.
    Returns (issue time, block start, block end) with blocks in hour ends (start, end]."""
    t = pd.DatetimeIndex(issue_times)
    n = int(round(len(t) * share))
    if n == 0:
        return []
    chosen = np.sort(rng.choice(len(t), size=n, replace=False))
    lengths = np.floor(np.exp(rng.uniform(np.log(min_h), np.log(max_h + 1), size=n))).astype(int)
    offsets = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 49, size=n))
    out = []
    for i, length, off in zip(chosen, lengths, offsets, strict=True):
        end = t[i] - int(off) * HOUR
        out.append((t[i], end - int(length) * HOUR, end))
    return out


def mask_matrix(X: np.ndarray, features: list[str]) -> np.ndarray:
    """`mask` on a model matrix (columns = `features`): a copy where a thin window's statistics are NaN."""
    out = X.copy()
    for w, names in ROLLING.items():
        count = f"observed_{w}"
        if count not in features:
            continue
        thin = ~(out[:, features.index(count)] >= MIN_OBSERVED[w])
        for name in names:
            if name in features:
                out[thin, features.index(name)] = np.nan
    return out


def recompute(rows: pd.DataFrame, series_by_end: pd.Series, columns: list[str]) -> pd.DataFrame:
    """A copy of design rows of one asset (issue_time, horizon_h, ...) with every input among `columns`
    that is computed from the load recomputed from `series_by_end` (a history with hours hidden or
    changed): the service's load state (load_state), the target-aligned lags and the GAP inputs. Other
    inputs (calendar, weather, peers) and the labels are kept."""
    from registry.design import ALIGNED, HORIZON, aligned

    out = rows.copy()
    issue = out["issue_time"].reset_index(drop=True)
    times = pd.DatetimeIndex(issue.unique())
    state = [c for c in columns if c in LOAD_STATE_COLUMNS]
    if state:
        values = load_state(series_by_end, times)
        for c in state:
            out[c] = values[c].reindex(issue).to_numpy()
    if any(c in columns for c in ALIGNED):
        lags = aligned(series_by_end, issue, out[HORIZON].reset_index(drop=True))
        for c in ALIGNED:
            if c in columns:
                out[c] = lags[c]
    if any(c in columns for c in GAP):
        g = gap_state(series_by_end, times)
        for c in GAP:
            if c in columns:
                out[c] = pd.Series(g[c], index=times).reindex(issue).to_numpy()
    return out


LOAD_STATE_COLUMNS = (*LAGS, *(f"{s}_{w}" for w in MIN_OBSERVED for s in (
    "historical_avg", "historical_std", "min", "max", "range", "hours")))


def inject(rows: pd.DataFrame, series: dict[str, pd.Series], columns: list[str], rng: np.random.Generator,
           share: float) -> pd.DataFrame:
    """Training rows as they would have been with readings missing: for a seeded `share` of each asset's
    issue times one random block (random_blocks) is hidden from its history and the rows issued then are
    recomputed (recompute; labels kept). Returns only the new rows (the caller appends them).

    Blocks are spread over layers whose issue times lie at least two weeks apart, so one recomputation
    over the whole series per layer hides every block of the layer without any issue time reading
    another's block (inputs read at most the 168 h before their issue time, blocks end within 48 h)."""
    return _layered(rows, series, columns, share, lambda _asset, times: random_blocks(times, rng, share),
                    lambda s, layer: hide(s, [(b0, b1) for _, b0, b1 in layer]))


# Level shifts injected into training: a load that steps to another level (a tenant moves in, a process
# line starts, a feeder is switched) must reach the forecast within days, not read as a spike that
# reverts. Factors are log-uniform in SHIFT_FACTORS (either direction), the step SHIFT_MIN_H..SHIFT_MAX_H
# hours before the issue time: a level held for at least a day (a step in the last hours would teach the
# model that a one-hour spike is the new level), and after a week the whole input window sits at the new
# level: an ordinary row.
SHIFT_FACTORS = (1.25, 2.5)
SHIFT_MIN_H = 24
SHIFT_MAX_H = WEEK_H


def random_shifts(issue_times, rng: np.random.Generator, share: float
                  ) -> list[tuple[pd.Timestamp, pd.Timestamp, float]]:
    """Level shifts for training: for a seeded `share` of the issue times, (issue time, step time, factor):
    the load of the hours ending after the step time (and the labels) is moved by the factor (rescale_after)."""
    t = pd.DatetimeIndex(issue_times)
    n = int(round(len(t) * share))
    if n == 0:
        return []
    chosen = np.sort(rng.choice(len(t), size=n, replace=False))
    back = rng.integers(SHIFT_MIN_H, SHIFT_MAX_H + 1, size=n)
    lo, hi = np.log(SHIFT_FACTORS)
    factors = np.exp(rng.uniform(lo, hi, size=n) * np.where(rng.random(n) < 0.5, -1.0, 1.0))
    return [(t[i], t[i] - int(b) * HOUR, float(f)) for i, b, f in zip(chosen, back, factors, strict=True)]


def rescale_after(series_by_end: pd.Series, steps: list[tuple[pd.Timestamp, pd.Timestamp, float]]) -> pd.Series:
    """The series with the hours from each step to its issue time (hour ends in (step, issue]) multiplied
    by the step's factor: the load moved to another level at the step (the labels are moved by the caller)."""
    idx = series_by_end.index
    scale = np.ones(len(idx))
    for t, step, f in steps:
        scale[(idx > step) & (idx <= t)] *= f
    return series_by_end * scale


def inject_shifts(rows: pd.DataFrame, series: dict[str, pd.Series], columns: list[str], rng: np.random.Generator,
                  share: float) -> pd.DataFrame:
    """Training rows as they would have been after a level shift (random_shifts): the load from the step on
    is multiplied by the factor, every input read from the load recomputed and the labels (after the step)
    multiplied too. Returns only the new rows; layered like `inject`."""
    factors: dict[tuple[str, pd.Timestamp], float] = {}

    def draw(asset, issue_times):
        steps = random_shifts(issue_times, rng, share)
        factors.update({(asset, t): f for t, _, f in steps})
        return steps

    out = _layered(rows, series, columns, share, draw, rescale_after)
    if len(out):
        out["y"] = out["y"].to_numpy() * np.array([factors[(a, t)] for a, t in zip(out["asset_id"], out["issue_time"],
                                                                                   strict=True)])
    return out


def _layered(rows, series, columns, share, draw, transform) -> pd.DataFrame:
    """draw(asset, issue times) -> [(issue time, ...)] in issue-time order; transform(series, layer) -> the
    series as the layer's issue times saw it."""
    if share <= 0 or rows.empty:
        return rows.iloc[:0]
    apart = pd.Timedelta(hours=2 * WEEK_H).value
    out = []
    for asset, part in rows.groupby("asset_id", sort=True):
        blocks = draw(asset, part["issue_time"].drop_duplicates().sort_values())
        layers: list[list] = []
        for block in blocks:  # in issue-time order: first layer whose last issue time is far enough back
            for layer in layers:
                if block[0].value - layer[-1][0].value >= apart:
                    layer.append(block)
                    break
            else:
                layers.append([block])
        for layer in layers:
            changed = transform(series[asset], layer)
            mine = part[part["issue_time"].isin(pd.DatetimeIndex([t for t, _, _ in layer]))]
            if len(mine):
                out.append(recompute(mine, changed, columns))
    return pd.concat(out, ignore_index=True) if out else rows.iloc[:0]
