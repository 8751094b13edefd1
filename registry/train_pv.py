"""Train the PV forecaster from the warehouse (`ems train forecast --type generation` for a tenant's PV units,
or `--technology pv` where it also has wind units; registry/train_generation.train hands them here): each unit's
hourly power over its capacity, its site's irradiance (`solar_irradiance`, W/m2) and `temperature` forecasts
joined by issue time (`pit_join`, the rule `covariates_at` applies at serving), the sun's position from the
unit's latitude and longitude, registry/pv.design, fit registry/pv.PVModel, score the held-out days against
same-hour persistence, log to MLflow and register `{tenant}.pv_forecaster` (core.names.GENERATION_NAMES) in
staging with the tags forecast_type=generation and technology=pv.

Training rows (registry/pv.py's convention): origins T every `origin_step` hours, T the issue time (an hour
start: readings of the hours before T are known, and forecasts issued at or before T), target hours T ... T + 47 h
(horizon 1-48), label power / capacity, recent power and its clear-sky index at T (pv.recent_power).
Split by time as the wind forecaster's (registry/train_generation.py): the held-out days are the last
`holdout_days` of origins, the p10-p90 band is calibrated on the `calibration_days` before them (daytime rows:
at night the band is 0 by construction) with boosters fitted on the rows before those, and the registered model
is fitted on every row before the held-out days. The calibration is the sub-hourly models' (registry/conformal.py,
PVModel.calibrate) over the same CALIBRATION_DAYS, 14, chosen before looking at the held-out days: the wind's 3
days before them left the band covering 67 % of the test plant's held-out daytime hours (those 3 days happened to
be covered by the boosters' own band), 14 days cover 91 % (tests/integration/test_pv_warehouse.py). A training
window under twice that calibrates on its second half.
The boosters' settings (PARAMS, ROUNDS, MIX) are not tuned: the repository holds no PV data with issued
forecasts to tune them on (the wind settings were chosen on GEFCom2012's); they are those the simulated plant's
unit test (tests/unit/registry/test_pv.py) fits with."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from core.names import (
    GENERATION_NAMES,
    check_model_name,
)
from core.settings import Settings
from registry import generation as gen
from registry import pv
from registry.train_forecast import TrainResult
from registry.train_generation import fit_and_register

Progress = Callable[[str, int, int], None]
STEPS = ("training set", "calibration fit", "fit", "evaluate", "log to MLflow")
VARIABLES = ("solar_irradiance", "temperature")  # the covariate forecast variables PV reads
PARAMS = {"num_leaves": 31, "min_data_in_leaf": 50}
ROUNDS = {"point": 200, "p10": 200, "p50": 200, "p90": 200}
MIX = {"point": 0.5, "p50": 0.5}  # no unit boosters: a tenant's PV units share the sun's physics
CALIBRATION_DAYS = 14  # registry/train_step.StepConfig.calibration_days: the same split-conformal rule


def pit_join(rows: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    """`rows` (origin, target; UTC) with each target's latest forecast issued at or before its origin from
    `issues` (target_time, issue_time, solar_irradiance, temperature: every stored issue): issue_time, ghi and
    temperature, NaN where nothing was issued by then."""
    out = rows.copy()
    out["_i"] = np.arange(len(out))
    for c in ("origin", "target"):  # one resolution on both sides: merge_asof refuses ns against us keys
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    left = out[["_i", "origin", "target"]].sort_values("origin")
    right = issues.rename(columns={"target_time": "target", "solar_irradiance": "ghi"})
    right = right.astype({"target": "datetime64[ns, UTC]", "issue_time": "datetime64[ns, UTC]"})
    right = right.sort_values("issue_time")
    got = pd.merge_asof(left, right[["target", "issue_time", "ghi", "temperature"]], left_on="origin",
                        right_on="issue_time", by="target", direction="backward", allow_exact_matches=True)
    got = got.set_index("_i").sort_index()
    for c in ("issue_time", "ghi", "temperature"):
        out[c] = got[c].to_numpy()
    return out.drop(columns="_i")


def unit_rows(power: pd.Series, issues: pd.DataFrame, unit: str, latitude: float, longitude: float,
              origin_step: int = 3, horizons: int = gen.MAX_HORIZON) -> pd.DataFrame:
    """Design inputs, label `y` and the persistence baseline `persistence` of one unit: `power` in capacity
    units indexed by hour start, `issues` every stored forecast of its site. Origins from the first day's end
    (yesterday's hour known) to the end of the last known hour, every `origin_step` hours."""
    if len(power) < 25:
        return pd.DataFrame()
    origins = pd.date_range((power.index[0] + pd.Timedelta(hours=24)).ceil(f"{origin_step}h"),
                            power.index[-1] + pd.Timedelta(hours=1), freq=f"{origin_step}h")
    o = np.repeat(origins.to_numpy(), horizons)
    h = np.tile(np.arange(horizons), len(origins))
    rows = pd.DataFrame({"unit": unit, "origin": pd.to_datetime(o, utc=True)})
    rows["target"] = rows["origin"] + pd.to_timedelta(h, unit="h")
    rows = pit_join(rows, issues)
    for k, v in pv.recent_power(power, origins, latitude, longitude).items():
        rows[k] = np.repeat(v, horizons)
    rows["y"] = power.reindex(pd.DatetimeIndex(rows["target"])).to_numpy(dtype=float)
    rows["persistence"] = pv.same_hour_persistence(power, rows["origin"], rows["target"])
    return rows


def training_rows(settings: Settings, tenant: str, units: pd.DataFrame, origin_step: int = 3) -> pd.DataFrame:
    from warehouse import generation as wg
    from warehouse import hourly

    out = []
    for u in units.itertuples():
        s = hourly.history(settings, tenant, [u.asset_id]).get(u.asset_id)
        if s is None or s.empty:
            continue
        power = pd.Series(s.to_numpy() / u.capacity, index=s.index - pd.Timedelta(hours=1))
        issues = wg.forecasts(settings, u.site_id, power.index[0], power.index[-1] + pd.Timedelta(hours=50),
                              variables=VARIABLES)
        out.append(unit_rows(power, issues, u.asset_id, u.latitude, u.longitude, origin_step))
    rows = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    if rows.empty or rows["y"].notna().sum() == 0:
        raise ValueError(f"tenant {tenant!r}: no hourly power for its PV units {', '.join(units['asset_id'])}; "
                         "ingest their readings first (and `ems refresh`)")
    return rows


def design(rows: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """pv.design of each unit's rows at its own position, in the rows' order."""
    names = list(units["asset_id"])
    parts = [pv.design(rows[rows["unit"] == u.asset_id], names, u.latitude, u.longitude)
             for u in units.itertuples() if (rows["unit"] == u.asset_id).any()]
    return pd.concat(parts).loc[rows.index]


def scores(rows: pd.DataFrame, pred: pd.DataFrame, X: pd.DataFrame) -> dict[str, float]:
    """RMSE, MAE and pinball of the model and the same-hour persistence on the rows where persistence is known
    (both on the same rows), and the p10-p90 coverage of the daytime rows (the night's band is 0 and y is 0)."""
    y, pers = rows["y"].to_numpy(), rows["persistence"].to_numpy()
    known = np.isfinite(pers)
    day = (X["clear_sky"] > 0).to_numpy()
    point = pred["point"].to_numpy()
    inside = (y >= pred["p10"].to_numpy()) & (y <= pred["p90"].to_numpy())
    rmse = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else np.nan  # noqa: E731
    return {"rmse": rmse(point[known], y[known]), "persistence_rmse": rmse(pers[known], y[known]),
            "mae": float(np.mean(np.abs(point[known] - y[known]))) if known.any() else np.nan,
            "persistence_mae": float(np.mean(np.abs(pers[known] - y[known]))) if known.any() else np.nan,
            "pinball": gen.pinball(y[known], pred[known]) if known.any() else np.nan,
            "daytime_rmse": rmse(point[known & day], y[known & day]),
            "daytime_persistence_rmse": rmse(pers[known & day], y[known & day]),
            "coverage_p10_p90": float(np.mean(inside[day])) if day.any() else np.nan,
            "rows": float(known.sum())}


def train(settings: Settings, store, tenant: str, units: pd.DataFrame, name: str | None = None,
          holdout_days: int = 3, calibration_days: int | None = None, origin_step: int = 3,
          progress: Progress | None = None) -> TrainResult:
    """Train, evaluate and register the PV forecaster of `units` (warehouse.generation.units' rows, PV,
    each with a position). `calibration_days` None: CALIBRATION_DAYS, or half the training window (before the
    held-out days) where that is shorter than twice them."""
    name = check_model_name(name or GENERATION_NAMES["pv"])
    tick = progress or (lambda *_: None)
    t0 = time.perf_counter()
    names = list(units["asset_id"])
    tick(STEPS[0], 0, len(STEPS))
    rows = training_rows(settings, tenant, units, origin_step)
    rows = rows[rows["y"].notna()].reset_index(drop=True)
    X = design(rows, units)
    if calibration_days is None:
        window = rows["target"].max() - pd.Timedelta(days=holdout_days) - rows["origin"].min()
        calibration_days = int(min(CALIBRATION_DAYS, window.days // 2))
    timings = {"training_set_s": time.perf_counter() - t0}
    return fit_and_register(
        settings, store, tenant, name, "pv", units, rows, X, lambda: pv.PVModel(names, PARAMS, ROUNDS, mix=MIX),
        scores, holdout_days=holdout_days, calibration_days=calibration_days, origin_step=origin_step,
        progress=tick, t0=t0, timings=timings, calibrate_on=(X["clear_sky"] > 0).to_numpy(),
        params={"positions": ",".join(f"{a:g}/{b:g}" for a, b in zip(units["latitude"], units["longitude"],
                                                                      strict=True)),
                "technology": "pv", "baseline": "same hour on the last known day"})
