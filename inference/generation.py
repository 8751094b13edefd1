"""Serving the generation forecaster (Client.forecast with forecast_type="generation"): the unit's recent
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
from warehouse.covariates import covariates_at

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
    `other_sites` are the sites of the model's other units (none: their inputs are NaN)."""
    from warehouse import hourly

    origin = t - HOUR  # the start of the last complete hour (registry/generation: horizon = target - origin)
    targets = pd.date_range(t, periods=horizon, freq="h")
    power = hourly.series_by_end(settings, conn, tenant, asset, t - 7 * HOUR, t)
    power = pd.Series(power.to_numpy() / capacity, index=power.index - HOUR, dtype=float)
    reach = max(gen.SHIFTS)
    wanted = pd.date_range(targets[0] - reach * HOUR, targets[-1] + reach * HOUR, freq="h")
    latest = covariates_at(settings, site, t, wanted, WIND)
    rows = pd.DataFrame({"unit": asset, "origin": origin, "target": targets})
    now = latest.reindex(targets)
    rows["issue_time"] = now["issue_time"].to_numpy()
    for c in WIND:
        rows[c] = now[c].to_numpy()
    for k, name in gen.SHIFTS.items():
        rows[name] = latest["wind_speed"].reindex(targets + k * HOUR).to_numpy()
    rows["ws_prev"] = np.nan
    for issued, part in now.dropna(subset=["issue_time"]).groupby("issue_time"):
        before = covariates_at(settings, site, issued - pd.Timedelta(microseconds=1), part.index, ["wind_speed"])
        rows.loc[rows["target"].isin(part.index).to_numpy(), "ws_prev"] = before["wind_speed"].reindex(
            rows.loc[rows["target"].isin(part.index).to_numpy(), "target"]).to_numpy()
    near = targets.union(pd.DatetimeIndex([targets[0] - HOUR, targets[-1] + HOUR]))
    per = [covariates_at(settings, s, t, near, WIND) for s in other_sites]
    stack = [[f[c].reindex(targets + k * HOUR).to_numpy() for f in per]
             for c, k in (("wind_speed", 0), ("wind_u", 0), ("wind_v", 0), ("wind_speed", -1), ("wind_speed", 1))]
    for k, v in gen.others(*(np.array(a, dtype=float).reshape(len(per), horizon) for a in stack)).items():
        rows[k] = v
    for k, v in gen.recent(power, rows["origin"]).items():
        rows[k] = v
    warnings = []
    missing = rows["wind_speed"].isna()
    if missing.any():
        first = rows.loc[missing, "target"].iloc[0]
        warnings.append(f"no weather forecast of site {site!r} issued by {t.isoformat()} for {int(missing.sum())} of "
                        f"{horizon} target hours (first {first.isoformat()}): their weather inputs are missing (NaN)")
    if np.isnan(rows["power_last"].iloc[0]):
        warnings.append(f"no reading of {asset!r} in the hour before {t.isoformat()}: recent-power inputs missing")
    return rows, warnings


def forecast(client, served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp
             ) -> ForecastResult:
    """The forecast of a generation unit with a generation model `served` issued at `t`."""
    from warehouse import generation as wg

    check_horizon(horizon)
    unit = wg.units(client.settings, tenant, [asset]).iloc[0]
    model = served.python_model
    if not isinstance(getattr(model, "model", None), gen.GenerationModel):
        raise InvalidArgumentError(f"model {served.info.id} is tagged forecast_type=generation but is not a "
                                   "generation forecaster; train one with `ems train forecast --type generation`")
    others = wg.sites(client.settings, tenant, [u for u in model.model.units if u != asset])
    rows, warnings = inputs(client.settings, client._conn(), tenant, asset, unit.site_id, float(unit.capacity), t,
                            horizon, list(others.values()))
    X = gen.design(rows, model.model.units)
    pred = model.model.predict(X) * float(unit.capacity)
    pred = pred.clip(0, float(unit.capacity))
    columns = {"timestamp": rows["target"].to_numpy(), "horizon_h": np.arange(1, horizon + 1),
               "point": pred["point"].to_numpy()}
    if quantiles:
        columns |= {q: pred[q].to_numpy() for q in ("p10", "p50", "p90")}
        columns |= {"lower": pred["p10"].to_numpy(), "upper": pred["p90"].to_numpy()}
    now = pd.Timestamp(datetime.now(UTC))
    first = X.iloc[0]
    return ForecastResult(
        tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
        feature_service="covariate_forecasts", features={k: (None if pd.isna(v) else float(v)) for k, v in
                                                         first.items()},
        feature_time=t, feature_age_seconds=(now - t).total_seconds(), source="warehouse",
        training_metrics={k: served.metrics[k] for k in ("rmse", "persistence_rmse", "coverage_p10_p90")
                          if k in served.metrics},
        generated_at=now, warnings=[*served.warnings, *warnings])
