"""Train, evaluate, log and register a sub-hourly load forecaster (`ems train forecast --interval-minutes 30`).

Features come from the step's feature service through Feast's point-in-time join at the issue times; labels and
target-aligned lags from the step table (warehouse/steps.py). The last `holdout_days` of each asset are held
out: forecasts issued once a day at every horizon step, scored against the seasonal-naive forecasts at the same
step on the same rows (nothing is chosen on them). The version carries its interval (tag and param
`interval_minutes`), so serving picks and checks it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import EmsError
from core.names import (
    STEP_INTERVALS,
    STEP_SERVICES,
    TAG_FORECAST_TYPE,
    TAG_INTERVAL,
    TAG_VALIDATION,
    InvalidIntervalError,
    check_interval_for_step,
    check_model_name,
    step_model_name,
)
from core.settings import Settings
from registry import conformal, tracking
from registry.step_design import FEATURES, expand, naive, steps_for
from registry.step_forecaster import ALPHAS, BUCKET_EDGES_H, OUTPUTS, StepForecaster, bucket, matrix
from registry.training_data import tenant_assets
from warehouse.db import connect
from warehouse.steps import step_rows, step_series

logger = logging.getLogger(__name__)


class InsufficientStepHistoryError(EmsError, ValueError):
    """An asset has too few step rows to train and hold out."""


@dataclass(frozen=True)
class StepConfig:
    history_days: int = 365
    holdout_days: int = 14
    min_history_days: int = 21
    issue_every_h: int = 6
    dense_hours: int = 24  # horizons of the first day at every training issue time
    sampled_horizons: int = 24  # more horizons per issue time, drawn from the rest of 1..168 h
    num_boost_round: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_data_in_leaf: int = 50
    seed: int = 0
    # Split-conformal calibration of the p10-p90 band (calibrate): p10/p90 fitted once more without each asset's
    # last calibration_days of training, scored on the forecasts issued in them; 0 = the boosters' band as is.
    # Skipped when the training window is shorter than twice that.
    calibration_days: int = 14
    min_calibration_rows: int = 100  # per horizon bucket; below it the bucket takes the all-bucket figure


@dataclass
class StepTrainResult:
    model_id: str
    run_id: str
    metrics: dict[str, float]
    worst_days: list[dict] = field(default_factory=list)
    holdout: pd.DataFrame | None = field(default=None, repr=False)


def training_rows(settings: Settings, store, tenant: str, assets: list[str], step: int, cfg: StepConfig,
                  until: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.DataFrame, tuple]:
    """(training rows, held-out rows, (window start, window end)) for the step's feature service."""
    service = STEP_SERVICES[step]
    s = pd.Timedelta(minutes=step)
    with connect(settings) as conn:
        meta = dict(((a, (st, tz)) for a, st, tz in conn.execute(
            "SELECT asset_id, step_minutes, timezone FROM assets WHERE tenant_id = %s AND asset_id = ANY(%s)",
            (tenant, assets)).fetchall()))
        for a in assets:
            check_interval_for_step(step, meta[a][0], a)
        since = None if until is None else until - pd.Timedelta(days=cfg.history_days + 8)
        rows = step_rows(conn, tenant, assets, step, since, until)
    series = step_series(rows)
    rng = np.random.default_rng(cfg.seed)
    horizon_max, dense = steps_for(168, step), steps_for(cfg.dense_hours, step)
    issues, windows = [], []
    for a in assets:
        sr = series.get(a)
        if sr is None or sr.empty or (sr.index[-1] - sr.index[0]) < pd.Timedelta(days=cfg.min_history_days):
            have = 0 if sr is None or sr.empty else (sr.index[-1] - sr.index[0]) / pd.Timedelta(days=1)
            raise InsufficientStepHistoryError(f"asset {a!r} has {have:.1f} days of {step}-minute rows; training needs "
                                               f"at least {cfg.min_history_days} ({cfg.holdout_days} held out)")
        end = sr.index[-1]
        start = max(sr.index[0] + pd.Timedelta(days=7), end - pd.Timedelta(days=cfg.history_days))
        split = end - pd.Timedelta(days=cfg.holdout_days)
        windows.append((start, end))
        train_t = pd.date_range(start, split - s, freq=f"{cfg.issue_every_h}h")
        eval_t = pd.date_range(split.normalize() if split.normalize() >= split else split.normalize() + pd.Timedelta(
            days=1), end - s, freq="1D")
        issues += [(a, "train", t) for t in train_t] + [(a, "eval", t) for t in eval_t]
    entity = pd.DataFrame(issues, columns=["asset_id", "part", "event_timestamp"]).assign(tenant_id=tenant)
    feats = store.get_historical_features(entity_df=entity, features=store.get_feature_service(service)).to_df()
    feats["event_timestamp"] = pd.to_datetime(feats["event_timestamp"], utc=True)
    feats = feats.rename(columns={"event_timestamp": "issue_time"})
    parts = {"train": [], "eval": []}
    for (a, part), group in feats.groupby(["asset_id", "part"], sort=False):
        group = group.sort_values("issue_time")
        if part == "train":
            rest = np.arange(dense + 1, horizon_max + 1)
            horizons = [np.concatenate([np.arange(1, dense + 1),
                                        rng.choice(rest, size=min(cfg.sampled_horizons, len(rest)), replace=False)])
                        for _ in range(len(group))]
        else:
            horizons = np.arange(1, horizon_max + 1)
        rows_a = expand(group, series[a], horizons, step, meta[a][1])
        if part == "train":  # no held-out label in training
            split = windows[assets.index(a)][1] - pd.Timedelta(days=cfg.holdout_days)
            rows_a = rows_a[rows_a["target_time"] <= split]
        else:
            rows_a = rows_a[rows_a["target_time"] <= windows[assets.index(a)][1]]
        parts[part].append(rows_a[rows_a["y"].notna()])
    train = pd.concat(parts["train"], ignore_index=True)
    holdout = pd.concat(parts["eval"], ignore_index=True) if parts["eval"] else train.iloc[:0]
    return train, holdout, (min(w[0] for w in windows), max(w[1] for w in windows))


def _boosters(X: np.ndarray, y: np.ndarray, cfg: StepConfig, outputs=OUTPUTS) -> dict:
    import lightgbm as lgb

    boosters = {}
    for name in outputs:
        params = {"objective": "quantile", "alpha": ALPHAS[name], "learning_rate": cfg.learning_rate,
                  "num_leaves": cfg.num_leaves, "min_data_in_leaf": cfg.min_data_in_leaf, "verbose": -1,
                  "seed": cfg.seed, "deterministic": True, "force_col_wise": True, "num_threads": 2}
        boosters[name] = lgb.train(params, lgb.Dataset(X, label=y, feature_name=list(FEATURES)),
                                   num_boost_round=cfg.num_boost_round)
    return boosters


def fit(train: pd.DataFrame, step: int, cfg: StepConfig) -> StepForecaster:
    """The three boosters on every training row (targets over the level), and the band's calibration."""
    X, lvl = matrix(train)
    ok = np.isfinite(lvl)
    y = train["y"].to_numpy(dtype=float) / lvl
    return StepForecaster(step, _boosters(X[ok], y[ok], cfg), calibrate(train, X, y, ok, step, cfg))


def calibrate(train: pd.DataFrame, X: np.ndarray, y: np.ndarray, ok: np.ndarray, step: int,
              cfg: StepConfig) -> dict | None:
    """Split-conformal calibration of the p10-p90 band (registry/conformal.py, conformalized quantile regression):
    p10/p90 boosters fitted on the rows whose target is before each asset's last `calibration_days` of training,
    scored on the forecasts issued inside those days; per horizon bucket the band moves by the 80 % quantile of
    max(p10 - y, y - p90) (level units), so that 80 % of those forecasts would have fallen inside. None when the
    training window is too short to hold the calibration days out twice over."""
    if cfg.calibration_days <= 0:
        return None
    parts = conformal.split(train["issue_time"], train["target_time"], train["asset_id"], cfg.calibration_days)
    if parts is None:
        return None
    fit_rows, cal_rows = (ok & rows for rows in parts)
    if fit_rows.sum() < cfg.min_calibration_rows or cal_rows.sum() < cfg.min_calibration_rows:
        return None
    boosters = _boosters(X[fit_rows], y[fit_rows], cfg, ("p10", "p90"))
    lo, hi = (boosters[name].predict(X[cal_rows], num_threads=2) for name in ("p10", "p90"))
    found = conformal.widening(lo, hi, y[cal_rows], bucket(train["horizon_steps"].to_numpy()[cal_rows], step),
                               len(BUCKET_EDGES_H) + 1, cfg.min_calibration_rows)
    return {**found, "bucket_edges_h": list(BUCKET_EDGES_H), "days": cfg.calibration_days}


def evaluate(holdout: pd.DataFrame, pred: pd.DataFrame, step: int) -> tuple[dict[str, float], list[dict]]:
    """MAE / RMSE / pinball / p10-p90 coverage of the model and the seasonal-naive forecasts at the step on the
    same rows (those where both baselines are known), overall and day-ahead (targets within 24 h), and the three
    worst held-out days by the model's day-ahead MAE."""
    base = naive(holdout)
    same = np.isfinite(base["naive_1d"]) & np.isfinite(base["naive_7d"])
    y = holdout["y"].to_numpy(dtype=float)
    day = (holdout["horizon_steps"].to_numpy() <= steps_for(24, step)) & same
    out = {"rows": float(same.sum()), "dayahead_rows": float(day.sum())}
    for scope, rows in (("", same), ("dayahead_", day)):
        err = np.abs(pred["p50"].to_numpy() - y)[rows]
        out[f"{scope}mae"] = float(err.mean())
        out[f"{scope}rmse"] = float(np.sqrt((err ** 2).mean()))
        for name, values in base.items():
            out[f"{scope}{name}_mae"] = float(np.abs(values - y)[rows].mean())
        out[f"{scope}skill_vs_naive_1d"] = 1 - out[f"{scope}mae"] / out[f"{scope}naive_1d_mae"]
        out[f"{scope}skill_vs_naive_7d"] = 1 - out[f"{scope}mae"] / out[f"{scope}naive_7d_mae"]
        lo, hi = pred["p10"].to_numpy()[rows], pred["p90"].to_numpy()[rows]
        out[f"{scope}coverage_p10_p90"] = float(((y[rows] >= lo) & (y[rows] <= hi)).mean())
        out[f"{scope}pinball"] = float(np.mean([np.mean(np.maximum(a * (y[rows] - q), (a - 1) * (y[rows] - q)))
                                                for a, q in ((0.1, lo), (0.5, pred["p50"].to_numpy()[rows]),
                                                             (0.9, hi))]))
    frame = pd.DataFrame({"asset_id": holdout["asset_id"].to_numpy()[day],
                          "issue_day": holdout["issue_time"].dt.strftime("%Y-%m-%d").to_numpy()[day],
                          "err": np.abs(pred["p50"].to_numpy() - y)[day],
                          "naive_1d": np.abs(base["naive_1d"] - y)[day], "naive_7d": np.abs(base["naive_7d"] - y)[day]})
    worst = (frame.groupby(["asset_id", "issue_day"]).mean().sort_values("err", ascending=False).head(3)
             .reset_index().to_dict("records"))
    return out, worst


def check_step(interval) -> int:
    """A step a sub-hourly model is trained at (15, 30); one clear error for anything else."""
    if interval not in STEP_INTERVALS:
        raise InvalidIntervalError(f"interval_minutes={interval!r}: a sub-hourly model is trained at "
                                   f"{', '.join(map(str, STEP_INTERVALS))} minutes; 60 is `ems train forecast` without "
                                   "--interval-minutes and 1440 aggregates the hourly model")
    return interval


def train(settings: Settings, store, tenant: str, interval: int, assets: list[str] | None = None,
          name: str | None = None, cfg: StepConfig | None = None, until=None) -> StepTrainResult:
    """Build the step's training set, fit, evaluate on the held-out days, log to MLflow, register a staging
    version tagged with its interval."""
    import mlflow
    from mlflow.models import infer_signature

    check_step(interval)
    name = check_model_name(name or step_model_name(interval))
    cfg = cfg or StepConfig()
    assets = tenant_assets(settings, tenant, assets)
    service = STEP_SERVICES[interval]
    t0 = time.perf_counter()
    train_rows, holdout, window = training_rows(settings, store, tenant, assets, interval, cfg,
                                                None if until is None else pd.Timestamp(until, tz="UTC"))
    with tracking.training_run(settings, store, tenant, f"forecast {name}",
                               {"model_type": "forecast", TAG_INTERVAL: str(interval)}) as run:
        t1 = time.perf_counter()
        model = fit(train_rows, interval, cfg)
        fit_s = time.perf_counter() - t1
        pred = model.predict(None, holdout)
        scores, worst = evaluate(holdout, pred, interval)
        mlflow.log_params({"feature_service": service, TAG_INTERVAL: interval, "features": ",".join(FEATURES),
                           "assets": ",".join(assets), "train_rows": len(train_rows), "holdout_rows": len(holdout),
                           **{f"step.{k}": v for k, v in vars(cfg).items()}})
        with tempfile.TemporaryDirectory() as tmp:
            paths = model.save_boosters(Path(tmp))
            example = holdout[FEATURES].head(5).astype(float)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, artifacts=paths,
                signature=infer_signature(example, model.predict(None, example)), input_example=example,
                pip_requirements=tracking.requirements("lightgbm"),
                metadata={"features": FEATURES, "service": service, TAG_INTERVAL: interval})
        tracking.log_feast_features(store, service)
        mlflow.log_metrics({**scores, "fit_s": fit_s, "total_s": time.perf_counter() - t0})
        mlflow.log_dict({"calibration": model.calibration}, "calibration.json")  # null: not calibrated
        mlflow.log_dict({"worst_days": worst}, "worst_days.json")
        tags = tracking.version_tags(store, tenant, "forecast", service, window,
                                     tracking.fingerprint(train_rows[["asset_id", "issue_time", *FEATURES, "y"]]))
        tags |= {TAG_FORECAST_TYPE: "load", TAG_INTERVAL: str(interval),
                 TAG_VALIDATION: "beats_seasonal_naive" if scores["dayahead_mae"] < min(
                     scores["dayahead_naive_1d_mae"], scores["dayahead_naive_7d_mae"]) else "worse_than_seasonal_naive"}
        version = tracking.register(settings, tenant, name, info.model_uri, run.info.run_id, tags)
    logger.info("trained %s (%d-minute): %s", version.id, interval, scores)
    return StepTrainResult(version.id, run.info.run_id, scores, worst, holdout.assign(**{
        c: pred[c].to_numpy() for c in ("p10", "p50", "p90")}))
