"""Train the generation forecaster from the warehouse (`ems train forecast --type generation`): the tenant's
wind units' hourly power over their capacity, the weather forecasts of their sites joined by issue time
(registry/generation.pit_join; each unit's rows also get the other units' forecasts by the same rule), fit,
score the held-out days against persistence, log to MLflow and register `{tenant}.generation_forecaster` in
staging with the tags forecast_type=generation and technology=wind. PV units go to registry/train_pv.py (the
same lifecycle, `{tenant}.pv_forecaster`): one model per technology.

Training rows: origins every `origin_step` hours (the start of the last complete hour; the forecast is
issued at its end), horizons 1-48. Split by time: the held-out days are the last `holdout_days` of origins;
the p10-p90 widening is calibrated on the `calibration_days` before them with boosters fitted on the rows
before those (never on the held-out days); the registered model is fitted on every row before the held-out days.
The boosters' settings are the ones chosen on GEFCom2012's training period (registry/generation.TUNED_*)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from core.names import (
    GENERATION_NAMES,
    TAG_FINGERPRINT,
    TAG_FORECAST_TYPE,
    TAG_MODEL_TYPE,
    TAG_TECHNOLOGY,
    TAG_VALIDATION,
    TAG_WINDOW_END,
    TAG_WINDOW_START,
    check_model_name,
)
from core.settings import Settings
from registry import generation as gen
from registry import tracking
from registry.train_forecast import TrainResult

Progress = Callable[[str, int, int], None]
STEPS = ("training set", "calibration fit", "fit", "evaluate", "log to MLflow")


def unit_rows(power: pd.Series, issues: pd.DataFrame, unit: str, origin_step: int = 3,
              horizons: int = gen.MAX_HORIZON, others: list[pd.DataFrame] = ()) -> pd.DataFrame:
    """Design inputs and label of one unit: `power` in capacity units indexed by hour start, `issues` every
    stored forecast of its site, `others` those of the other units' sites (registry/generation.others).
    Origins from the 6th known hour to the last, every `origin_step` hours."""
    if len(power) < 7:
        return pd.DataFrame()
    origins = pd.date_range(power.index[5].ceil(f"{origin_step}h"), power.index[-1], freq=f"{origin_step}h")
    o = np.repeat(origins.to_numpy(), horizons)
    h = np.tile(np.arange(1, horizons + 1), len(origins))
    rows = pd.DataFrame({"unit": unit, "origin": pd.to_datetime(o, utc=True)})
    rows["target"] = rows["origin"] + pd.to_timedelta(h, unit="h")
    rows["issued_by"] = rows["origin"] + pd.Timedelta(hours=1)  # the end of the last complete hour
    rows = gen.pit_join(rows, issues)
    joined = [gen.pit_join(rows[["issued_by", "target"]], other) for other in others]
    stack = [np.array([j[c].to_numpy(dtype=float) for j in joined]).reshape(len(joined), len(rows))
             for c in ("wind_speed", "wind_u", "wind_v", "ws_before", "ws_after")]
    for k, v in gen.others(*stack).items():
        rows[k] = v
    for k, v in gen.recent(power, rows["origin"]).items():
        rows[k] = v
    rows["y"] = power.reindex(pd.DatetimeIndex(rows["target"])).to_numpy(dtype=float)
    return rows


def training_rows(settings: Settings, tenant: str, units: pd.DataFrame, origin_step: int = 3) -> pd.DataFrame:
    from warehouse import generation as wg
    from warehouse import hourly

    powers = {}
    for u in units.itertuples():
        s = hourly.history(settings, tenant, [u.asset_id]).get(u.asset_id)
        if s is not None and not s.empty:
            powers[u.asset_id] = pd.Series(s.to_numpy() / u.capacity, index=s.index - pd.Timedelta(hours=1))
    out = []
    if powers:  # every unit's site's issues over the span of every unit's power (its rows read the others')
        start = min(p.index[0] for p in powers.values())
        end = max(p.index[-1] for p in powers.values()) + pd.Timedelta(hours=50)
        issues = {u.asset_id: wg.forecasts(settings, u.site_id, start, end) for u in units.itertuples()}
        for unit, power in powers.items():
            out.append(unit_rows(power, issues[unit], unit, origin_step,
                                 others=[f for other, f in issues.items() if other != unit]))
    rows = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    if rows.empty or rows["y"].notna().sum() == 0:
        raise ValueError(f"tenant {tenant!r}: no hourly power for its generation units "
                         f"{', '.join(units['asset_id'])}; ingest their readings first (and `ems refresh`)")
    return rows


def scores(rows: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    y = rows["y"].to_numpy()
    pers = rows["power_last"].to_numpy()
    known = np.isfinite(pers)
    return {"rmse": float(np.sqrt(np.mean((pred["point"].to_numpy() - y) ** 2))),
            "persistence_rmse": float(np.sqrt(np.mean((pers[known] - y[known]) ** 2))) if known.any() else np.nan,
            "mae": float(np.mean(np.abs(pred["point"].to_numpy() - y))), "pinball": gen.pinball(y, pred),
            "coverage_p10_p90": float(np.mean((y >= pred["p10"].to_numpy()) & (y <= pred["p90"].to_numpy()))),
            "rows": float(len(rows))}


def train(settings: Settings, store, tenant: str, assets: list[str] | None = None,
          name: str | None = None, holdout_days: int = 3, calibration_days: int = 3,
          origin_step: int = 3, progress: Progress | None = None, technology: str | None = None) -> TrainResult:
    """Train the forecaster of the tenant's generation units of one technology (`technology`, or the one its
    units, all or `assets`, have: two without it is one error naming them). PV units go to registry/train_pv.py;
    `name` defaults to the technology's (core.names.GENERATION_NAMES)."""
    from warehouse import generation as wg

    if name is not None:  # a bad name before any read
        check_model_name(name)
    units = wg.units(settings, tenant, assets, technology=technology)
    if units["technology"].iloc[0] == "pv":
        from registry import train_pv

        # PV's band: the sub-hourly models' calibration window (train_pv.CALIBRATION_DAYS), not `calibration_days`
        return train_pv.train(settings, store, tenant, units, name, holdout_days, origin_step=origin_step,
                              progress=progress)
    name = check_model_name(name or GENERATION_NAMES["wind"])
    tick = progress or (lambda *_: None)
    t0 = time.perf_counter()
    tick(STEPS[0], 0, len(STEPS))
    rows = training_rows(settings, tenant, units, origin_step)
    rows = rows[rows["y"].notna()].reset_index(drop=True)
    X = gen.design(rows, list(units["asset_id"]))
    timings = {"training_set_s": time.perf_counter() - t0}
    names = list(units["asset_id"])
    return fit_and_register(
        settings, store, tenant, name, "wind", units, rows, X,
        lambda: gen.GenerationModel(names, gen.TUNED_PARAMS, gen.TUNED_ROUNDS, mix=gen.POINT_MIX),
        lambda held, pred, _X: scores(held, pred), holdout_days=holdout_days, calibration_days=calibration_days,
        origin_step=origin_step, progress=tick, t0=t0, timings=timings)


def fit_and_register(settings: Settings, store, tenant: str, name: str, technology: str, units: pd.DataFrame,
                     rows: pd.DataFrame, X: pd.DataFrame, new_model: Callable, score: Callable, *,
                     holdout_days: int, calibration_days: int, origin_step: int, progress: Progress,
                     t0: float, timings: dict, calibrate_on=None, params: dict | None = None) -> TrainResult:
    """The part the wind and the PV trainers share: split by time (held-out days last, calibration days before
    them), fit `new_model()` before the calibration days and calibrate its band on them (`calibrate_on`: a mask of
    the rows that count, e.g. PV's daytime), refit on every row before the held-out days with that band, score
    the held-out days with `score(held, pred, X_held)`, log to MLflow and register in staging tagged
    forecast_type=generation and `technology`."""
    import mlflow
    from mlflow.models import infer_signature

    cut = rows["target"].max() - pd.Timedelta(days=holdout_days)
    cal_cut = cut - pd.Timedelta(days=calibration_days)
    fit_rows, cal = (rows["target"] <= cal_cut).to_numpy(), ((rows["origin"] >= cal_cut) & (rows["target"] <= cut)
                                                             ).to_numpy()
    train_rows, holdout = (rows["target"] <= cut).to_numpy(), (rows["origin"] >= cut).to_numpy()
    if fit_rows.sum() < 500 or cal.sum() < 100 or holdout.sum() < 100:
        raise ValueError(f"too little history to train and hold out {holdout_days} + {calibration_days} days: "
                         f"{int(fit_rows.sum())} rows before the calibration days, {int(cal.sum())} in them, "
                         f"{int(holdout.sum())} held out (need 500, 100, 100)")
    if calibrate_on is not None:
        cal = cal & calibrate_on
    y = rows["y"].to_numpy()
    t1 = time.perf_counter()
    progress(STEPS[1], 1, len(STEPS))
    calibrated = new_model().fit(X[fit_rows], y[fit_rows])
    widen = calibrated.calibrate(X[cal], y[cal])
    calibration = getattr(calibrated, "calibration", None)  # PV's record (registry/conformal.widening); wind: None
    progress(STEPS[2], 2, len(STEPS))
    model = new_model().fit(X[train_rows], y[train_rows])
    model.widen = widen
    if calibration is not None:
        model.calibration = {**calibration, "days": calibration_days}
    timings["fit_s"] = time.perf_counter() - t1
    progress(STEPS[3], 3, len(STEPS))
    pred = model.predict(X[holdout])
    held, Xh = rows[holdout], X[holdout]
    metrics = score(held, pred, Xh)
    per_asset = {a: score(held[held["unit"] == a], pred[(held["unit"] == a).to_numpy()],
                          Xh[(held["unit"] == a).to_numpy()]) for a in units["asset_id"] if (held["unit"] == a).any()}
    progress(STEPS[4], 4, len(STEPS))
    with tracking.training_run(settings, store, tenant, f"forecast {name}",
                               {"model_type": "forecast", TAG_FORECAST_TYPE: "generation",
                                TAG_TECHNOLOGY: technology}) as run:
        mlflow.log_params({
            "assets": ",".join(units["asset_id"]), "capacities": ",".join(f"{c:g}" for c in units["capacity"]),
            **(params or {}), "features": ",".join(model.features), "train_rows": int(train_rows.sum()),
            "holdout_rows": int(holdout.sum()), "holdout_days": holdout_days, "calibration_days": calibration_days,
            "origin_step_h": origin_step, **{f"lgb.{k}": v for k, v in model.params.items()},
            **{f"rounds.{k}": v for k, v in model.rounds.items()}, **{f"mix.{k}": v for k, v in model.mix.items()}})
        python_model = gen.GenerationForecaster(model)
        example = Xh.head(5).astype(float)
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model,
                                       signature=infer_signature(example, python_model.predict(None, example)),
                                       input_example=example, pip_requirements=tracking.requirements("lightgbm"),
                                       metadata={"features": model.features, "forecast_type": "generation",
                                                 "technology": technology})
        tracking.log_figure(band_figure(held, pred), "forecast_band")
        timings["total_s"] = time.perf_counter() - t0
        mlflow.log_metrics({**metrics, **timings, **{f"widen_{i}": float(w) for i, w in enumerate(widen)}})
        mlflow.log_dict(per_asset, "metrics_by_asset.json")
        if calibration is not None:
            mlflow.log_dict({"calibration": model.calibration}, "calibration.json")
        train_part = rows[train_rows]
        tags = {TAG_MODEL_TYPE: "forecast", TAG_FORECAST_TYPE: "generation", TAG_TECHNOLOGY: technology,
                TAG_WINDOW_START: train_part["target"].min().isoformat(), TAG_WINDOW_END: cut.isoformat(),
                TAG_FINGERPRINT: tracking.fingerprint(train_part[["unit", "origin", "target", "y"]]),
                TAG_VALIDATION: "beats_persistence" if metrics["rmse"] < metrics["persistence_rmse"]
                else "worse_than_persistence"}
        version = tracking.register(settings, tenant, name, info.model_uri, run.info.run_id, tags)
    progress("done", len(STEPS), len(STEPS))
    return TrainResult(version.id, run.info.run_id, info.model_uri, metrics, per_asset, timings)


def band_figure(held: pd.DataFrame, pred: pd.DataFrame):
    """Day-ahead (horizons 1-24) forecasts of the held-out days, one origin a day (the first's hour), per unit."""
    import matplotlib.pyplot as plt

    units = sorted(held["unit"].unique())[:6]
    fig, axes = plt.subplots(len(units), 1, figsize=(11, 2.8 * len(units)), squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        mine = held[held["unit"] == unit]
        part = mine[(mine["origin"].dt.hour == mine["origin"].iloc[0].hour)
                    & ((mine["target"] - mine["origin"]) <= pd.Timedelta(hours=24))].sort_values("target")
        p = pred.loc[part.index] if len(part) else pred.iloc[:0]
        ax.fill_between(part["target"], p["p10"], p["p90"], color="tab:blue", alpha=0.25, label="p10–p90")
        ax.plot(part["target"], p["point"], color="tab:blue", lw=1.2, label="point")
        ax.plot(part["target"], part["y"], color="black", lw=0.9, label="actual")
        ax.set_title(f"{unit}: power / capacity, held-out days, day-ahead", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    return fig
