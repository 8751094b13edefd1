"""Serving the generation forecaster (Client.forecast with forecast_type="generation"; a PV model's forecasts:
inference/pv.py): the wind unit's recent
hourly power and the weather forecasts of its site for the target hours, each the latest issued by the issue
time (warehouse.covariates.covariates_at), and those of the sites of the model's other training units (the
same rule), through the same design as training (registry/generation.py).
Results in the unit's capacity units, bounded to [0, capacity]. A target hour with no weather forecast issued
by then keeps NaN inputs (never zeros) and the result says so in a warning."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError, InvalidHorizonError
from inference.results import ForecastResult
from registry import generation as gen
from warehouse.covariates import latest_issues
from warehouse.db import connect

HOUR = pd.Timedelta(hours=1)
WIND = ["wind_speed", "wind_u", "wind_v"]


def check_horizon(horizon: int) -> int:
    if not 1 <= horizon <= gen.MAX_HORIZON:
        raise InvalidHorizonError(f"horizon={horizon} is out of range for a generation forecast: 1..{gen.MAX_HORIZON} "
                                  "hours (the weather forecasts it reads reach 48 h ahead)")
    return horizon


def inputs(settings, conn, tenant: str, asset: str, site: str, capacity: float, t: pd.Timestamp, horizon: int,
           other_sites: list[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Design rows of the target hours [t, t + horizon h) issued at `t` (the end of the last complete hour);
    `other_sites` are the sites of the model's other units (none: their inputs are NaN). Two reads on `conn`
    (None: on one new connection): the unit's recent power, and the weather forecasts of every site at once
    (covariates_at's rule, with the issue before the latest for ws_prev)."""
    if conn is None:
        with connect(settings) as conn:
            return inputs(settings, conn, tenant, asset, site, capacity, t, horizon, other_sites)
    columns, warnings = _columns(settings, conn, tenant, asset, site, capacity, t, horizon, other_sites)
    return pd.DataFrame(columns), warnings


def _columns(settings, conn, tenant: str, asset: str, site: str, capacity: float, t: pd.Timestamp, horizon: int,
             other_sites: list[str]) -> tuple[dict, list[str]]:
    """inputs() as columns (name -> array): what `design` reads, without a frame."""
    from warehouse import hourly

    origin = t - HOUR  # the start of the last complete hour (registry/generation: horizon = target - origin)
    targets = pd.date_range(t, periods=horizon, freq="h")
    power = hourly.series_by_end(settings, conn, tenant, asset, t - 7 * HOUR, t)
    power = pd.Series(power.to_numpy() / capacity, index=power.index - HOUR, dtype=float)
    reach = max(gen.SHIFTS)  # the own site's hours t - reach .. t + horizon - 1 + reach (the others' t-1 .. t+1)
    first = t - reach * HOUR
    n = horizon + 2 * reach
    found = latest_issues(conn, [site, *other_sites], t, first, first + (n - 1) * HOUR, WIND, depth=2)
    # per site, per hour first + i: the latest issue's time and variables (rank 1), the speed of the one before
    latest = {s: np.full((n, len(WIND)), np.nan) for s in (site, *other_sites)}
    issued, before = [None] * n, np.full(n, np.nan)
    start, hour = first.to_pydatetime(), HOUR.to_pytimedelta()
    for series, target, rank, issue, *values in found:
        i, off = divmod(target - start, hour)
        if off:  # not an hour start: no target hour's forecast
            continue
        if rank == 1:
            latest[series][i] = np.array(values, dtype=float)
            if series == site:
                issued[i] = issue
        elif series == site:
            before[i] = np.nan if values[0] is None else values[0]
    own = latest[site]
    now = slice(reach, reach + horizon)  # the target hours
    columns = {"unit": np.full(horizon, asset, dtype=object), "origin": pd.DatetimeIndex([origin] * horizon),
               "target": targets, "issue_time": pd.to_datetime(issued[now], utc=True),
               **{c: own[now, j] for j, c in enumerate(WIND)},
               **{name: own[reach + k:reach + k + horizon, 0] for k, name in gen.SHIFTS.items()},
               "ws_prev": before[now]}
    per = [latest[s] for s in other_sites]
    shape = (len(per), horizon)
    stack = [np.array([f[reach + k:reach + k + horizon, j] for f in per], dtype=float).reshape(shape)
             for j, k in ((0, 0), (1, 0), (2, 0), (0, -1), (0, 1))]
    columns |= gen.others(*stack)
    # every target hour has the same origin: its recent power, once
    columns |= {k: np.repeat(v, horizon) for k, v in gen.recent(power, pd.Series([origin])).items()}
    warnings = []
    missing = np.isnan(columns["wind_speed"])
    if missing.any():
        first_missing = targets[missing][0]
        warnings.append(f"no weather forecast of site {site!r} issued by {t.isoformat()} for {int(missing.sum())} of "
                        f"{horizon} target hours (first {first_missing.isoformat()}): their weather inputs are missing "
                        "(NaN)")
    if np.isnan(columns["power_last"][0]):
        warnings.append(f"no reading of {asset!r} in the hour before {t.isoformat()}: recent-power inputs missing")
    return columns, warnings


def forecast(client, served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp
             ) -> ForecastResult:
    """The forecast of a generation unit with a generation model `served` issued at `t`."""
    from registry.pv import PVModel
    from warehouse import generation as wg

    check_horizon(horizon)
    model = served.python_model
    if not isinstance(getattr(model, "model", None), gen.GenerationModel):
        raise InvalidArgumentError(f"model {served.info.id} is tagged forecast_type=generation but is not a "
                                   "generation forecaster; train one with `ems train forecast --type generation`")
    if isinstance(model.model, PVModel):  # a PV unit's inputs: irradiance, the sun (inference/pv.py)
        from inference import pv

        return pv.forecast(client, served, tenant, asset, horizon, quantiles, t)

    def read(conn):  # the unit, the other units' sites and the inputs, on the client's connection
        unit, others = wg.unit_and_sites(conn, tenant, asset, [u for u in model.model.units if u != asset])
        _, _, capacity, technology, site = unit[:5]
        if technology != "wind":
            raise InvalidArgumentError(f"model {served.info.id} forecasts wind units; {asset!r} is a {technology} "
                                       "unit: name a PV model (pv_forecaster) or leave the model out")
        return (float(capacity), *_columns(client.settings, conn, tenant, asset, site, float(capacity), t, horizon,
                                           list(others.values())))

    capacity, given, warnings = client._read(read)
    return result(served, tenant, asset, horizon, quantiles, t, given, gen.design(given, model.model.units), capacity,
                  warnings)


def result(served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp, given: pd.DataFrame,
           X: pd.DataFrame, capacity: float, warnings: list[str]) -> ForecastResult:
    """The ForecastResult of a generation model (wind or PV, inference/pv.py) on its design rows `X` of the target
    hours `given`: outputs in the unit's capacity units, bounded to [0, capacity]."""
    model = served.python_model.model
    pred = (model.predict_matrix(model.matrix(X), X["horizon"].to_numpy()) * capacity).clip(0, capacity)
    columns = {"timestamp": given["target"].to_numpy(), "horizon_h": np.arange(1, horizon + 1), "point": pred[:, 3]}
    if quantiles:
        columns |= {q: pred[:, i] for i, q in enumerate(("p10", "p50", "p90"))}
        columns |= {"lower": pred[:, 0], "upper": pred[:, 2]}
    now = pd.Timestamp(datetime.now(UTC))
    return ForecastResult(
        tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
        feature_service="covariate_forecasts", features={k: (None if pd.isna(v) else float(v)) for k, v in
                                                         X.iloc[0].items()},
        feature_time=t, feature_age_seconds=(now - t).total_seconds(), source="warehouse",
        training_metrics={k: served.metrics[k] for k in ("rmse", "persistence_rmse", "coverage_p10_p90")
                          if k in served.metrics},
        generated_at=now, warnings=[*served.warnings, *warnings])
