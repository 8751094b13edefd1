"""Weather forecasts for the target hour as forecaster inputs (issue "Forecasts that survive real feeds").

Utilities forecast load from the weather *forecast* for the hours they forecast; the weather observed before
the issue time says little about tomorrow. A feature service that holds a view keyed by `target_hour`
(feature_repo/views.py `weather_forecast`; e.g. the service `forecast_weather_ahead`) gives the model one input
per variable, `target_<variable>`, for each (issue time t, target hour) row:

- serving: the latest forecast issued at or before t for that hour (warehouse/covariates.py `covariates_at`,
  the same rule as the Feast view), or the caller's own forecast passed with the call; NaN where nothing was
  issued, with a warning;
- training: the archived forecast where the tenant has one (issued at or before the row's issue time, through
  Feast's point-in-time join on the view), otherwise the weather observed at the target hour plus a forecast
  error drawn from NOISE (`mode="forecast"`, the default: a model must not learn to trust its weather input
  more than a real forecast deserves). `mode="oracle"` uses the observed weather without error: the upper
  bound of what weather can give, for evaluations only.

NOISE: the error of a weather forecast grows with its lead time. Standard deviations at lead 0 and the growth
per day, chosen from the published verification of global models (2 m temperature RMSE about 1-1.5 K on day 1
growing to about 3 K by day 7; relative humidity about 8-12 %; 10 m wind speed about 1.5-2.5 m/s; hourly
irradiance about 25-45 % of its value under variable cloud). Half of the error is shared by all target hours of
one issue (a forecast that is too warm tends to be too warm all day), half is drawn per hour; draws are seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry.design import HOUR

PREFIX = "target_"
MODES = ("forecast", "oracle")
# variable: (sd at lead 0, sd growth per day of lead, multiplicative) — see the module docstring
NOISE = {
    "temperature": (1.0, 0.3, False),  # deg C
    "humidity": (6.0, 1.0, False),  # % RH
    "wind_speed": (1.2, 0.2, False),  # m/s
    "wind_u": (1.2, 0.2, False),
    "wind_v": (1.2, 0.2, False),
    "solar_irradiance": (0.25, 0.03, True),  # share of the value
}
BOUNDS = {"humidity": (0.0, 100.0), "wind_speed": (0.0, None), "solar_irradiance": (0.0, None)}
OBSERVED = ("temperature", "humidity", "solar_irradiance", "wind_speed")  # what the weather table observes


def model_names(variables: list[str]) -> list[str]:
    """Model input names of a service's target-hour variables."""
    return [PREFIX + v for v in variables]


def reads_target_weather(features) -> bool:
    """Whether a model with these input names reads weather forecasts for the target hours."""
    return any(f.startswith(PREFIX) for f in features)


def noise(values: np.ndarray, name: str, lead_h: np.ndarray, issue_key: np.ndarray, seed: int = 0) -> np.ndarray:
    """Observed values as a forecast made `lead_h` hours ahead: plus a seeded error whose spread grows with
    the lead (NOISE); `issue_key` groups the rows of one issue (their shared error half)."""
    sd0, growth, relative = NOISE[name]
    sd = sd0 + growth * np.asarray(lead_h, dtype=float) / 24.0
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(pd.Series(issue_key))
    shared = rng.standard_normal(len(uniques))[codes]
    own = rng.standard_normal(len(values))
    error = sd * (np.sqrt(0.5) * shared + np.sqrt(0.5) * own)
    out = values * (1.0 + error) if relative else values + error
    lo, hi = BOUNDS.get(name, (None, None))
    return np.clip(out, lo, hi)


def observed(settings, conn, tenant: str, assets: list[str], start: pd.Timestamp, end: pd.Timestamp,
             variables: list[str]) -> dict[str, pd.DataFrame]:
    """Per asset the hourly observed weather of its site (weather_hourly), indexed by hour start in [start, end)."""
    from psycopg import sql

    from warehouse import hourly

    cols = [v for v in variables if v in OBSERVED]
    query = sql.SQL("SELECT a.asset_id, w.bucket, {cols} FROM assets a JOIN weather_hourly w ON w.site_id = a.site_id "
                    "WHERE a.tenant_id = %s AND a.asset_id = ANY(%s) AND w.bucket >= %s AND w.bucket < %s "
                    "ORDER BY a.asset_id, w.bucket").format(cols=sql.SQL(", ").join(
                        sql.SQL("w.") + sql.Identifier(c) for c in cols) if cols else sql.SQL("NULL"))
    rows = hourly.fetch(settings, conn, query, (tenant, list(assets), start.to_pydatetime(), end.to_pydatetime()))
    frame = pd.DataFrame(rows, columns=["asset_id", "bucket", *(cols or ["none"])])
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    return {a: part.set_index("bucket")[cols].astype("float64") for a, part in frame.groupby("asset_id")}


def archived(store, tenant: str, rows: pd.DataFrame, variables: list[str], view: str = "weather_forecast"
             ) -> pd.DataFrame:
    """The latest archived forecast issued at or before each row's issue time for its target hour (Feast's
    point-in-time join on the view keyed by target_hour); NaN where none. `rows`: asset_id, issue_time,
    target_time (end of the target hour)."""
    from warehouse.covariates import target_hour

    entity = pd.DataFrame({"tenant_id": tenant, "asset_id": rows["asset_id"].to_numpy(),
                           "target_hour": target_hour(rows["target_time"] - HOUR),
                           "event_timestamp": pd.to_datetime(rows["issue_time"], utc=True).to_numpy(),
                           "row": np.arange(len(rows))})
    got = store.get_historical_features(entity_df=entity, features=[f"{view}:{v}" for v in variables]).to_df()
    got = got.sort_values("row").reset_index(drop=True)
    return pd.DataFrame({v: got[v].to_numpy(dtype=float) for v in variables}, index=rows.index)


def training_columns(settings, store, tenant: str, rows: pd.DataFrame, variables: list[str], mode: str = "forecast",
                     seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """`target_<variable>` columns for training/evaluation rows (asset_id, issue_time, target_time = end of the
    target hour, horizon_h): archived forecasts first (mode "forecast"), the rest from the observed weather of
    the target hour, with forecast error (mode "forecast") or without (mode "oracle"). Returns the columns and
    how many rows came from each source."""
    if mode not in MODES:
        raise ValueError(f"target weather mode {mode!r} is not one of {', '.join(MODES)}")
    n = len(rows)
    out = {PREFIX + v: np.full(n, np.nan) for v in variables}
    counts = {"archived": 0, "observed": 0, "missing": 0}
    if n == 0:
        return out, counts
    have = np.zeros(n, dtype=bool)
    if mode == "forecast":
        got = archived(store, tenant, rows, variables)
        have = got.notna().any(axis=1).to_numpy()
        for v in variables:
            out[PREFIX + v] = got[v].to_numpy(dtype=float)
        counts["archived"] = int(have.sum())
    start = pd.Timestamp(rows["target_time"].min()) - HOUR
    end = pd.Timestamp(rows["target_time"].max())
    obs = observed(settings, None, tenant, sorted(rows["asset_id"].unique()), start, end, variables)
    target_start = pd.DatetimeIndex(pd.to_datetime(rows["target_time"], utc=True)) - HOUR
    lead = ((pd.to_datetime(rows["target_time"], utc=True) - pd.to_datetime(rows["issue_time"], utc=True))
            / HOUR).to_numpy(dtype=float)
    issue_key = rows["asset_id"].astype(str).to_numpy() + "@" + rows["issue_time"].astype(str).to_numpy()
    fill = ~have
    assets = rows["asset_id"].to_numpy()
    for k, v in enumerate(variables):
        values = np.full(n, np.nan)
        for a, frame in obs.items():
            if v in frame.columns:
                sel = assets == a
                values[sel] = frame[v].reindex(target_start[sel]).to_numpy()
        if mode == "forecast":
            values = noise(values, v, lead, issue_key, seed + k) if v in NOISE else values
        out[PREFIX + v] = np.where(fill, values, out[PREFIX + v])
    filled = fill & np.column_stack([np.isfinite(out[PREFIX + v]) for v in variables]).any(axis=1)
    counts["observed"] = int(filled.sum())
    counts["missing"] = n - counts["archived"] - counts["observed"]
    return out, counts


def serving_columns(settings, site: str | None, t: pd.Timestamp, horizon: int, variables: list[str],
                    supplied: pd.DataFrame | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """`target_<variable>` for the target hours t+1h .. t+horizon issued at t: the caller's forecast where
    given (a frame indexed by target hour start, UTC), else the latest stored forecast issued at or before t;
    and the warnings (supplied, or hours without a forecast)."""
    from warehouse.covariates import covariates_at

    starts = pd.DatetimeIndex([t + (h - 1) * HOUR for h in range(1, horizon + 1)])
    warnings = []
    if supplied is not None:
        frame = supplied.reindex(starts)
        warnings.append(f"weather forecast for the target hours supplied by the caller "
                        f"({', '.join(c for c in variables if c in supplied.columns)})")
    elif site is not None:
        frame = covariates_at(settings, site, t, starts, variables)
    else:
        frame = pd.DataFrame(index=starts, columns=variables, dtype="float64")
    out = {PREFIX + v: (frame[v].to_numpy(dtype=float) if v in frame.columns else np.full(horizon, np.nan))
           for v in variables}
    known = np.column_stack([np.isfinite(c) for c in out.values()]).any(axis=1) if out else np.ones(horizon, bool)
    if not known.all():
        why = "the asset has no site" if site is None and supplied is None else f"none issued by {t.isoformat()}"
        first = starts[~known][0]
        warnings.append(f"no weather forecast for {int((~known).sum())} of {horizon} target hours (first "
                        f"{first.isoformat()}; {why}): the model's target-hour weather inputs are missing there")
    return out, warnings


__all__ = ["MODES", "NOISE", "PREFIX", "archived", "model_names", "noise", "observed", "reads_target_weather",
           "serving_columns", "training_columns"]
