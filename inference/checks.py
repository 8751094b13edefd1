"""Argument checks at the SDK boundary: each bad value gets one error naming it and the allowed range,
before anything is read or loaded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from core.errors import (
    InvalidArgumentError,
    InvalidHorizonError,
    InvalidRangeError,
    InvalidSeriesError,
    ModelNotFoundError,
)
from core.names import FORECAST_TYPES, check_model_name, parse_model_id
from registry.design import HOUR, MAX_HORIZON

MAX_RANGE_HOURS = 24 * 92  # longest [start, end) an anomaly call reads


def horizon(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidHorizonError(f"horizon={value!r} is not a whole number of hours; use 1..{MAX_HORIZON}")
    if not 1 <= value <= MAX_HORIZON:
        raise InvalidHorizonError(f"horizon={value!r} is out of range 1..{MAX_HORIZON} (hours)")
    return int(value)


def forecast_type(value) -> str:
    if value not in FORECAST_TYPES:
        raise InvalidArgumentError(f"forecast_type={value!r} is not a forecast type; use one of "
                                   f"{', '.join(FORECAST_TYPES)}")
    return value


def model(value, tenant: str) -> str | None:
    """None (the production default), a model name (its production version) or an id tenant:name:version
    of one of the tenant's models (another tenant's is refused before anything of it is loaded)."""
    if isinstance(value, str) and ":" in value:
        owner = parse_model_id(value).tenant
        if owner != tenant:
            raise ModelNotFoundError(f"model {value} belongs to tenant {owner!r}, not {tenant!r}")
    elif value is not None:
        check_model_name(value)
    return value


def time(value, name: str):
    """A time argument: None, a datetime/Timestamp or ISO 8601 text (naive means UTC)."""
    if value is None:
        return None
    try:
        ok = isinstance(value, str | date | np.datetime64) and not pd.isna(pd.Timestamp(value))
    except ValueError:  # unparseable text, or outside pandas' time range
        ok = False
    if not ok:
        raise InvalidArgumentError(f"{name}={value!r} is not a time; use a datetime or ISO 8601 text, "
                                   "e.g. 2024-01-31T12:00:00Z")
    return value


def timezone(value) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise InvalidArgumentError(f"timezone={value!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from e
    return value


def series(value, name: str) -> None:
    """None or a pandas Series on a DatetimeIndex (its values are checked where they are used)."""
    if value is not None and not (isinstance(value, pd.Series) and isinstance(value.index, pd.DatetimeIndex)):
        raise InvalidSeriesError(f"{name} must be a pandas Series indexed by timestamps (DatetimeIndex), "
                                 f"not {type(value).__name__}")


def lookback_hours(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RANGE_HOURS:
        raise InvalidRangeError(f"lookback_hours={value!r} is out of range 1..{MAX_RANGE_HOURS}")
    return value


def flag(value, name: str, meaning: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidArgumentError(f"{name}={value!r} must be True or False ({meaning})")
    return bool(value)


def feature_values(features, names: list[str]) -> np.ndarray:
    """A one-row model matrix from caller-supplied `features` (name -> number or None), in `names` order."""
    from core.errors import FeaturesUnavailableError

    if not isinstance(features, Mapping):
        raise InvalidArgumentError(f"features must be a dict of feature name -> value, not {type(features).__name__}")
    missing = [f for f in names if f not in features]
    if missing:
        raise FeaturesUnavailableError(f"features lack {', '.join(missing)}; the model takes {', '.join(names)}")
    return np.array([[_number(features, f) for f in names]])


def overrides(values, allowed: list[str], derived: list[str]) -> dict[str, float]:
    """Caller-supplied issue-time inputs (name -> finite number), each one the model takes at issue time
    (`allowed`); calendar inputs (`derived`) follow from the target hour and are refused."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidArgumentError(f"features must be a dict of input name -> number, not {type(values).__name__}")
    out = {}
    for name in values:
        if name in derived:
            raise InvalidArgumentError(f"input {name!r} is derived from each target hour and cannot be overridden; "
                                       f"overridable: {', '.join(allowed)}")
        if name not in allowed:
            raise InvalidArgumentError(f"input {name!r} is not one the model takes at issue time; overridable: "
                                       f"{', '.join(allowed)}")
        value = _number(values, name)
        if not np.isfinite(value):
            raise InvalidArgumentError(f"input {name}={values[name]!r} must be a finite number")
        out[name] = value
    return out


def _number(features: Mapping, name: str) -> float:
    value = features[name]
    if value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"feature {name}={value!r} is not a number") from e


def utc_hour(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("h")


def time_range(start, end) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start floored to the hour, end) in UTC, at most MAX_RANGE_HOURS long."""
    s, e = utc_hour(start), pd.Timestamp(end)
    e = e.tz_localize("UTC") if e.tzinfo is None else e.tz_convert("UTC")
    if e <= s:
        raise InvalidRangeError(f"start {s.isoformat()} is not before end {e.isoformat()}")
    if (e - s) > MAX_RANGE_HOURS * HOUR:
        raise InvalidRangeError(f"range {s.isoformat()} .. {e.isoformat()} spans {(e - s) / HOUR:.0f} h; "
                                f"the limit is {MAX_RANGE_HOURS} h (92 days)")
    return s, e


def weather_forecast(value, horizon: int, t: pd.Timestamp | None) -> pd.DataFrame | None:
    """A caller's weather forecast for the target hours, as a frame indexed by target-hour start (UTC) with
    known variables in their physical range (warehouse/covariates.py): a DataFrame indexed by time, or a
    mapping variable -> `horizon` values (one per target hour after the issue time `t`; with a supplied
    history `t` is its end)."""
    from warehouse.covariates import WEATHER_FORECAST_VARIABLES as RANGES

    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        index = value.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            got = f"{type(index).__name__}{' without a time zone' if index.dtype.kind == 'M' else ''}"
            raise InvalidArgumentError("weather_forecast: index it by the target hours' start as time-zone aware "
                                       f"timestamps (got {got})")
        frame = value.copy()
        frame.index = index.tz_convert("UTC")
    elif isinstance(value, Mapping):
        if t is None:
            raise InvalidArgumentError("weather_forecast as per-hour lists needs an issue time; pass a DataFrame "
                                       "indexed by the target hours")
        frame = pd.DataFrame(index=pd.DatetimeIndex([t + (h - 1) * HOUR for h in range(1, horizon + 1)]))
        for name, values in value.items():
            seq = np.atleast_1d(np.asarray(values, dtype=object))
            if len(seq) != horizon:
                raise InvalidArgumentError(f"weather_forecast[{name!r}] has {len(seq)} values; give one per target "
                                           f"hour ({horizon})")
            frame[name] = list(seq)
    else:
        raise InvalidArgumentError(f"weather_forecast={type(value).__name__} is not a DataFrame or a mapping of "
                                   "variable -> one value per target hour")
    unknown = [c for c in frame.columns if c not in RANGES]
    if unknown:
        raise InvalidArgumentError(f"weather_forecast: unknown variable(s) {', '.join(map(repr, unknown))}; known: "
                                   f"{', '.join(RANGES)}")
    for name in frame.columns:
        numbers = pd.to_numeric(frame[name], errors="coerce")
        bad = frame[name][numbers.isna() & frame[name].notna()]
        if len(bad):
            raise InvalidArgumentError(f"weather_forecast[{name!r}] value {bad.iloc[0]!r} is not a number")
        lo, hi = RANGES[name]
        out = numbers[(numbers < lo) | (numbers > hi)]
        if len(out):
            raise InvalidArgumentError(f"weather_forecast[{name!r}] value {out.iloc[0]:g} at {out.index[0]} is out of "
                                       f"range {lo:g}..{hi:g}")
        frame[name] = numbers.astype("float64")
    return frame
