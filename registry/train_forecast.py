"""Train the direct multi-horizon LightGBM forecaster from Feast point-in-time data, evaluate it on
the held-out days against seasonal-naive baselines, log everything to MLflow and register it."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.names import (
    DEFAULT_FORECAST_NAME,
    DEFAULT_FORECAST_SERVICE,
    TAG_FORECAST_TYPE,
    TAG_VALIDATION,
    check_model_name,
)
from core.settings import Settings
from registry import evaluation, plots, tracking, training_data
from registry.design import HORIZON
from registry.forecaster import (
    ALPHAS,
    ANCHOR,
    ASSET,
    BOOSTERS,
    HORIZON_BUCKETS,
    QuantileForecaster,
    anchor_matrix,
    has_level,
    horizon_bucket,
    prepare,
    widening,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# What the boosters learned (run parameter `label`; registry/forecaster.py): the change from the anchor, or
# (versions trained before it) the load over the level.
LABELS = {True: "change_from_anchor", False: "load_over_level"}
GLOBAL_SHAP = "shap_global.json"  # mean |SHAP| per model input on held-out rows (scaled units)
STEPS = ("training set", *BOOSTERS, "evaluate", "log to MLflow")
# Where the boosters are fitted: in this process, or with lightgbm.dask on a Dask cluster (registry/dask_training.py).
ENGINES = ("local", "dask")
TAG_ENGINE = "engine"  # version tag: the engine that fitted it
MIN_CALIBRATION_FIT_ROWS = 1000  # below it the interval is not calibrated


@dataclass(frozen=True)
class BoosterConfig:
    # Three quantile boosters (p10, p50 = the point forecast, p90); the sizes are chosen on the backtests
    # in README, Evaluation (fewer leaves or a lower rate underfit at about the same training time).
    num_boost_round: int = 300
    learning_rate: float = 0.1
    num_leaves: int = 127
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.9
    lambda_l2: float = 0.0  # LightGBM's default (no L2 penalty on leaf values); `ems tune forecast` searches it
    num_threads: int = 0  # LightGBM default: all cores
    seed: int = 0  # LightGBM's seed (feature_fraction's column draws): fixed, so a rerun fits the same boosters
    # Conformal calibration of the p10-p90 interval: p10/p90 boosters fitted once more without the last
    # calibration_days before each asset's training end, scored on those days (0 = no calibration).
    calibration_days: int = 28
    min_calibration_rows: int = 100  # per asset and horizon bucket; below it the global widening applies
    asset_input: bool = True  # the asset as a categorical input (registry/forecaster.py)

    def params(self, output: str) -> dict:
        base = {"learning_rate": self.learning_rate, "num_leaves": self.num_leaves, "verbose": -1,
                "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
                "lambda_l2": self.lambda_l2, "num_threads": self.num_threads, "seed": self.seed, "deterministic": True,
                "force_col_wise": True}
        return base | {"objective": "quantile", "alpha": ALPHAS[output]}


@dataclass
class TrainResult:
    model_id: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    per_asset: dict[str, dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    model_bytes: int = 0
    fingerprint: str = ""


def fit(ts: training_data.TrainingSet, cfg: BoosterConfig, progress: Progress | None = None,
        outputs: tuple[str, ...] = BOOSTERS) -> QuantileForecaster:
    """The boosters named in `outputs` (default all; the model search fits p50 alone) and the interval calibration."""
    import lightgbm as lgb

    ts.train = with_level(ts.train, ts.features)
    assets = sorted(ts.train["asset_id"].unique())
    assets = assets if cfg.asset_input and len(assets) > 1 else []
    X, target = model_matrix(ts.train, ts.features, assets)
    anchored = ANCHOR[0] in ts.features
    boosters = {}
    for i, name in enumerate(outputs):
        if progress:
            progress(name, 1 + i, len(STEPS))
        boosters[name] = lgb.train(cfg.params(name), _dataset(X, target), num_boost_round=cfg.num_boost_round)
    return QuantileForecaster(ts.features, boosters, calibrate(ts, cfg, X, target), assets, anchored)


def with_level(train: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The training rows with a level to scale by (registry/forecaster.py, has_level)."""
    known = has_level(train, features)
    if known.all():
        return train
    # e.g. a gap-injected copy of a row early in the window: nothing to scale by
    logger.info("%d training rows without any known load input left out", int((~known).sum()))
    return train[known].reset_index(drop=True)


def model_matrix(train: pd.DataFrame, features: list[str], assets: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The boosters' inputs (prepare) and label of design rows: the change from the anchor in level units
    (registry/forecaster.py); the same for the whole set in process and for one partition on a Dask worker."""
    X, lvl = prepare(train, features, assets)
    cols = [f for f in ANCHOR if f in features]  # the anchor's columns only, not a copy of the whole design
    origin = anchor_matrix(train[cols].to_numpy(dtype=float), cols, lvl) if ANCHOR[0] in features else 0.0
    return X, (train["y"].to_numpy() - origin) / lvl


def _dataset(X: pd.DataFrame, target: np.ndarray):
    import lightgbm as lgb

    return lgb.Dataset(X, label=target, free_raw_data=False,
                       categorical_feature=[ASSET] if ASSET in X.columns else "auto")


def calibrate(ts: training_data.TrainingSet, cfg: BoosterConfig, X: pd.DataFrame, target: np.ndarray) -> dict:
    """Split-conformal widths for the p10-p90 interval (CQR): p10/p90 boosters fitted on training rows
    whose labels end before each asset's calibration window, scored on the rows issued inside it; one
    width per horizon bucket, globally and per asset (level units)."""
    import lightgbm as lgb

    if not cfg.calibration_days:
        return {}
    fit_rows, calib = calibration_cut(ts.train, ts.windows, cfg.calibration_days)
    if fit_rows.sum() < MIN_CALIBRATION_FIT_ROWS or calib.sum() < cfg.min_calibration_rows:
        logger.info("too few rows to calibrate the interval (%d fit, %d calibration)", fit_rows.sum(), calib.sum())
        return {}
    bounds = {}
    for name in ("p10", "p90"):
        bounds[name] = lgb.train(cfg.params(name), _dataset(X[fit_rows], target[fit_rows]),
                                 num_boost_round=cfg.num_boost_round).predict(X[calib])
    e = nonconformity(bounds["p10"], bounds["p90"], target[calib])
    return calibration_widths(e, ts.train[HORIZON].to_numpy()[calib], ts.train["asset_id"].to_numpy()[calib], cfg)


def calibration_cut(train: pd.DataFrame, windows: list[training_data.AssetWindow], days: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Rows the calibration boosters fit on (labels before each asset's calibration window) and the rows
    they are scored on (issued inside it)."""
    cut = train["asset_id"].map({w.asset_id: w.fit_end - pd.Timedelta(days=days) for w in windows})
    return (train["target_time"] <= cut).to_numpy(), (train["issue_time"] >= cut).to_numpy()


def nonconformity(p10: np.ndarray, p90: np.ndarray, target: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(p10, p90), np.maximum(p10, p90)
    return np.maximum(lo - target, target - hi)


def calibration_widths(e: np.ndarray, horizon: np.ndarray, assets: np.ndarray, cfg: BoosterConfig) -> dict:
    """The calibration table from the calibration rows' nonconformity scores (level units)."""
    bucket = horizon_bucket(horizon)
    glob = [widening(e[bucket == b]) for b in range(len(HORIZON_BUCKETS))]
    per_asset = {}
    for a in np.unique(assets):
        per_asset[str(a)] = [widening(e[(assets == a) & (bucket == b)])
                             if ((assets == a) & (bucket == b)).sum() >= cfg.min_calibration_rows else glob[b]
                             for b in range(len(HORIZON_BUCKETS))]
    return {"global": glob, "assets": per_asset, "days": cfg.calibration_days, "coverage": 0.8}


def train(settings: Settings, store, tenant: str, assets: list[str] | None = None,
          service: str = DEFAULT_FORECAST_SERVICE, name: str = DEFAULT_FORECAST_NAME,
          split: training_data.SplitConfig | None = None, boosting: BoosterConfig | None = None,
          until: datetime | None = None, progress: Progress | None = None, run_tags: dict | None = None,
          version_tags: dict | None = None, engine: str = "local", dask=None) -> TrainResult:
    """Build the training set, fit, evaluate, log and register a new staging version. run_tags/version_tags:
    extra tags on the MLflow run and the version (`ems tune forecast`: the search's id). engine "dask": the
    boosters are fitted with lightgbm.dask on the cluster of `dask` (a dask_training.DaskConfig; default a
    2-worker LocalCluster) from the Parquet training set; evaluation, logging and registration are the same."""
    import mlflow
    from mlflow.models import infer_signature

    check_model_name(name)
    dask = check_engine(engine, dask)
    split, boosting = split or training_data.SplitConfig(), boosting or BoosterConfig()
    timings, t0 = {}, time.perf_counter()
    tick = progress or (lambda *_: None)
    tick(STEPS[0], 0, len(STEPS))
    plan = training_data.plan(settings, store, tenant, assets, service, split, until)
    if dask is not None and dask.training_set:
        from registry import dask_training

        dask_training.check_export(settings, store, plan, dask.training_set)
    with _engine_client(dask) as client, tracking.training_run(
            settings, store, tenant, f"forecast {name}",
            {"model_type": "forecast", TAG_ENGINE: engine, **(run_tags or {})}) as run:
        if client is None:
            ts = training_data.build(store, plan)
            timings["training_set_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            model = fit(ts, boosting, progress)
            timings["fit_s"] = time.perf_counter() - t1
            train_rows, data_fingerprint, engine_params = len(ts.train), ts.fingerprint(), {}
        else:
            from registry import dask_training

            key = f"training-sets/{tenant}/{service}/{run.info.run_id}.parquet"
            model, out = dask_training.fit(settings, store, client, plan, boosting, dask, key, progress, STEPS)
            ts, train_rows, data_fingerprint = out["ts"], out["rows"], out["fingerprint"]
            timings |= {"training_set_s": out["timings"]["export_s"] + out["timings"]["design_s"],
                        "export_s": out["timings"]["export_s"], "design_s": out["timings"]["design_s"],
                        "fit_s": time.perf_counter() - t0 - out["timings"]["export_s"] - out["timings"]["design_s"]}
            engine_params = {"dask.workers": dask_training.workers(client), "dask.scheduler": dask.scheduler or "local",
                             "dask.training_set": out["uri"]}
        tick(STEPS[-2], len(STEPS) - 2, len(STEPS))
        pred = model.predict(None, ts.holdout)
        scores, per_asset = evaluation.report(ts.holdout, pred, ts.scales)
        tick(STEPS[-1], len(STEPS) - 1, len(STEPS))
        mlflow.log_params({
            "feature_service": service, "features": ",".join(ts.features), "assets": ",".join(w.asset_id for w in
                                                                                            ts.windows),
            "train_rows": train_rows, "holdout_rows": len(ts.holdout), "label": LABELS[model.anchored],
            **prefixed("split", split),
            **prefixed("lgb", boosting),
            "engine": engine, **engine_params,
        })
        with tempfile.TemporaryDirectory() as tmp:
            paths = model.save_boosters(Path(tmp))
            model_bytes = sum(Path(p).stat().st_size for p in paths.values())
            example = ts.holdout[ts.features].head(5).astype(float)  # doubles: inputs may be NaN
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, artifacts=paths,
                signature=infer_signature(example, model.predict(None, example)), input_example=example,
                pip_requirements=tracking.requirements("lightgbm"),
                metadata={"features": ts.features, "service": service},
            )
        _log_figures(model, ts, pred)
        tracking.log_feast_features(store, service)
        timings["total_s"] = time.perf_counter() - t0
        mlflow.log_metrics({**scores, "model_bytes": float(model_bytes), **timings})
        mlflow.log_dict(per_asset, "metrics_by_asset.json")
        tags = tracking.version_tags(store, tenant, "forecast", service, ts.window, data_fingerprint) | {
            TAG_FORECAST_TYPE: "load", TAG_ENGINE: engine}
        tags[TAG_VALIDATION] = _validation(scores)
        tags |= version_tags or {}
        version = tracking.register(settings, tenant, name, info.model_uri, run.info.run_id, tags)
    tick("done", len(STEPS), len(STEPS))
    return TrainResult(version.id, run.info.run_id, info.model_uri, scores, per_asset, timings, model_bytes,
                       tags["data_fingerprint"])


def check_engine(engine: str, dask):
    """The engine's options, checked before anything runs: one error naming the bad value and the allowed ones."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "local":
        if dask is not None:
            raise ValueError(f"Dask options ({dask}) need engine='dask', not engine='local'")
        return None
    from registry.dask_training import DaskConfig

    return (dask or DaskConfig()).check()


@contextmanager
def _engine_client(dask):
    """None in process; a distributed.Client for engine dask (connected before the MLflow run starts)."""
    if dask is None:
        yield None
        return
    from registry import dask_training

    with dask_training.cluster(dask) as client:
        yield client


def _validation(scores: dict[str, float]) -> str:
    """Day-ahead quality gate recorded on the version (promotion stays a human decision)."""
    beats = scores["dayahead_mase_168"] < scores["dayahead_naive_168_mase"]
    return "beats_seasonal_naive" if beats else "worse_than_seasonal_naive"


def _log_figures(model: QuantileForecaster, ts: training_data.TrainingSet, pred: pd.DataFrame) -> None:
    import mlflow
    import shap

    tracking.log_figure(plots.forecast_band(ts.holdout, pred), "forecast_band")
    tracking.log_figure(plots.error_by_horizon(evaluation.by_horizon(ts.holdout, pred)), "error_by_horizon")
    tracking.log_figure(plots.feature_importance(model.point_booster), "feature_importance")
    X, _ = prepare(ts.holdout, ts.features, model.assets)
    sample = X.sample(min(len(X), 2000), random_state=0)
    values = shap.TreeExplainer(model.point_booster).shap_values(sample)
    tracking.log_figure(plots.shap_summary(values, sample), "shap_summary")
    mean_abs = dict(zip(sample.columns, map(float, abs(values).mean(axis=0)), strict=True))
    mlflow.log_dict(mean_abs, GLOBAL_SHAP)  # explain_global reads this


def prefixed(prefix: str, cfg) -> dict:
    """A config dataclass as MLflow params (`lgb.num_leaves`, ...)."""
    return {f"{prefix}.{k}": v for k, v in vars(cfg).items()}


__all__ = ["BoosterConfig", "TrainResult", "fit", "train"]
