"""Feature rows from a caller-supplied series (an asset the store does not know), computed the way
the SQL views compute them (feature_repo/sql/060, 061): hourly means, lags of whole hours, rolling
windows over the hours before the row's time; the calendar comes from Feast's registered on-demand
view. Weather is unknown (NaN), as for an asset without a site."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InvalidSeriesError

HOUR = pd.Timedelta(hours=1)
MIN_HOURS = 24


def hourly(series: pd.Series) -> pd.Series:
    """Hourly means indexed by hour START (UTC), like readings_hourly.bucket. Naive times are UTC."""
    if not isinstance(series, pd.Series) or not isinstance(series.index, pd.DatetimeIndex):
        raise InvalidSeriesError("history must be a pandas Series indexed by timestamps (DatetimeIndex)")
    values = pd.to_numeric(series, errors="coerce")
    values = values[np.isfinite(values.to_numpy(dtype=float))]
    if values.empty:
        raise InvalidSeriesError("history is empty (no finite values)")
    index = values.index.tz_localize("UTC") if values.index.tz is None else values.index.tz_convert("UTC")
    out = pd.Series(values.to_numpy(dtype=float), index=index).groupby(index.floor("h")).mean().sort_index()
    if len(out) < MIN_HOURS:
        raise InvalidSeriesError(f"history has {len(out)} hour(s) of values; at least {MIN_HOURS} are needed")
    return out


def load_features(buckets: pd.Series, times: pd.DatetimeIndex) -> pd.DataFrame:
    """load_lags + load_rolling columns at each event time E (hour end): only hours before E."""
    out = pd.DataFrame(index=times)
    last = times - HOUR  # the last complete hour's bucket
    out["lag_1h"] = buckets.reindex(last).to_numpy()
    out["lag_24h"] = buckets.reindex(last - pd.Timedelta(hours=23)).to_numpy()
    out["lag_168h"] = buckets.reindex(last - pd.Timedelta(hours=167)).to_numpy()
    for w in (24, 168):
        roll = buckets.rolling(f"{w}h")  # buckets in (b - w h, b]: the w hours ending with bucket b
        stats = pd.DataFrame({"avg": roll.mean(), "std": roll.std(), "min": roll.min(), "max": roll.max(),
                              "n": roll.count()}).reindex(last)
        out[f"historical_avg_{w}h"] = stats["avg"].to_numpy()
        out[f"historical_std_{w}h"] = stats["std"].to_numpy()
        out[f"min_{w}h"] = stats["min"].to_numpy()
        out[f"max_{w}h"] = stats["max"].to_numpy()
        out[f"range_{w}h"] = (stats["max"] - stats["min"]).to_numpy()
        out[f"hours_{w}h"] = stats["n"].to_numpy()
    # The SQL rows exist only where the last hour has readings; a missing hour gives no row at all.
    out.loc[np.isnan(out["lag_1h"].to_numpy()), :] = np.nan
    for weather in ("temperature", "humidity", "solar_irradiance", "wind_speed"):
        out[weather] = np.nan
    return out


def calendar(store, target_times, timezone: str) -> pd.DataFrame:
    """Calendar features of each target hour start, from Feast's registered on-demand view."""
    odfv = store.get_on_demand_feature_view("calendar")
    stamps = [pd.Timestamp(t).to_pydatetime() for t in target_times]
    out = odfv.transform_dict({"target_time": stamps, "timezone": [timezone] * len(stamps)})
    return pd.DataFrame({k: v for k, v in out.items() if k not in ("target_time", "timezone")})
