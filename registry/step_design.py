"""Direct multi-horizon design at a sub-hourly step (interval_minutes 15 or 30). Pure pandas, no I/O.

The hourly design (registry/design.py) at another clock: one row per (asset, issue time t, horizon k steps).
A row holds the feature service's values at t (the step feature row ending at t: readings before t only), the
target-aligned lags of the target step [t + (k-1)s, t + ks) read from the step means ending at or before t
(same step on the last observed day and the day before, their 7-day median, the same step a week before the
target), the target step's calendar in the asset's time zone, and k. The label is the target step's mean.
Load inputs and the label are divided by the asset's level at t (avg_7d, else avg_1d, else last_value), so one
model serves assets of any size; predictions are multiplied back.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
HORIZON_STEPS = "horizon_steps"
ISSUE = ["last_value", "lag_1d", "lag_7d", "avg_1d", "std_1d", "min_1d", "max_1d", "avg_7d", "std_7d"]
ALIGNED = ("same_step_1d", "same_step_2d", "same_step_median_7d", "same_step_7d")
CALENDAR = ("minute_of_day", "day_of_week", "is_weekend")
SCALED = (*[c for c in ISSUE], *ALIGNED)  # divided by the level
FEATURES = [*ISSUE, *ALIGNED, *CALENDAR, HORIZON_STEPS]


def steps_for(horizon_hours: int, step: int) -> int:
    """The steps that cover `horizon_hours` (1-168 h): 2 per hour at 30 minutes, 4 at 15."""
    return horizon_hours * 60 // step


def level(frame: pd.DataFrame) -> np.ndarray:
    """The scale of each row: avg_7d, else avg_1d, else last_value (NaN where none is known or it is 0)."""
    out = frame["avg_7d"].to_numpy(dtype=float).copy()
    for fallback in ("avg_1d", "last_value"):
        v = frame[fallback].to_numpy(dtype=float)
        out = np.where(np.isfinite(out) & (out != 0), out, v)
    return np.where(np.isfinite(out) & (out != 0), np.abs(out), np.nan)


def aligned(series: pd.Series, issue: pd.Series, horizon: pd.Series, step: int) -> dict[str, np.ndarray]:
    """ALIGNED columns for (issue time, horizon in steps) rows from one asset's step means indexed by step end;
    only steps ending at or before the issue time are read."""
    s = pd.Timedelta(minutes=step)
    target = pd.DatetimeIndex(issue) + pd.to_timedelta(horizon.to_numpy() * step, unit="min")  # target step end
    back = np.ceil((horizon.to_numpy() * s) / DAY).astype(int)  # days back to the last observed same step
    days = np.column_stack([series.reindex(target - pd.to_timedelta((back + k) * 24, unit="h")).to_numpy(dtype=float)
                            for k in range(7)])
    week = series.reindex(target - 7 * DAY).to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        median = np.nanmedian(days, axis=1) if len(days) else np.array([])
    return dict(zip(ALIGNED, (days[:, 0], days[:, 1], median, week), strict=True))


def calendar(target_start: pd.DatetimeIndex, timezone: str) -> dict[str, np.ndarray]:
    local = pd.DatetimeIndex(target_start).tz_convert(timezone)
    dow = local.dayofweek.to_numpy()
    return {"minute_of_day": (local.hour * 60 + local.minute).to_numpy(), "day_of_week": dow,
            "is_weekend": (dow >= 5).astype(int)}


def expand(issue_rows: pd.DataFrame, series: pd.Series, horizons: np.ndarray | list[np.ndarray], step: int,
           timezone: str) -> pd.DataFrame:
    """Rows of one asset: `issue_rows` (issue_time + ISSUE columns, one per issue) times its horizons (one array
    for all issues, or one per issue), with ALIGNED, CALENDAR, HORIZON_STEPS, target_time (step end) and y (the
    target step's mean where known)."""
    issue_rows = issue_rows.reset_index(drop=True)
    per = horizons if isinstance(horizons, list) else [np.asarray(horizons)] * len(issue_rows)
    counts = np.array([len(h) for h in per])
    rows = issue_rows.loc[np.repeat(np.arange(len(issue_rows)), counts)].reset_index(drop=True)
    rows[HORIZON_STEPS] = np.concatenate(per) if len(per) else np.array([], dtype=int)
    s = pd.Timedelta(minutes=step)
    rows["target_time"] = rows["issue_time"] + rows[HORIZON_STEPS] * s
    for name, values in aligned(series, rows["issue_time"], rows[HORIZON_STEPS], step).items():
        rows[name] = values
    for name, values in calendar(pd.DatetimeIndex(rows["target_time"] - s), timezone).items():
        rows[name] = values
    rows["y"] = series.reindex(pd.DatetimeIndex(rows["target_time"])).to_numpy(dtype=float)
    return rows


def naive(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Seasonal-naive forecasts at the step, on the same rows: the same step on the last observed day, and the
    same step one week before the target."""
    return {"naive_1d": rows["same_step_1d"].to_numpy(dtype=float),
            "naive_7d": rows["same_step_7d"].to_numpy(dtype=float)}
