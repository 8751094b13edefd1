"""Fit an anomaly detector on `anomaly_detection` point-in-time features, log it to MLflow and
register it. Unlabelled data: the held-out days report how much each sensitivity level flags."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from core.names import DEFAULT_ANOMALY_SERVICE, check_anomaly_method, check_model_name
from core.settings import Settings
from registry import anomaly_model, plots, severity, tracking, training_data
from registry.design import HOUR

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
STEPS = ("training set", "fit", "evaluate", "log to MLflow")
MAX_FIT_ROWS = {"local_outlier_factor": 20_000}  # LOF is quadratic-ish in rows


@dataclass
class AnomalyResult:
    model_id: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


def dataset(store, p: training_data.Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows): features at E and the value of the hour [E, E+1h)."""
    hourly = training_data.point_in_time_features(store, p.service, p.tenant, p.windows)
    hourly[anomaly_model.VALUE] = training_data.labels(p.series).reindex(
        pd.MultiIndex.from_arrays([hourly["asset_id"], hourly["event_timestamp"] + HOUR])).to_numpy()
    hourly = hourly[hourly[anomaly_model.VALUE].notna() & hourly["historical_avg_24h"].notna()]
    split = hourly["asset_id"].map({w.asset_id: w.split for w in p.windows})
    train = hourly[hourly["event_timestamp"] + HOUR <= split].reset_index(drop=True)
    holdout = hourly[hourly["event_timestamp"] >= split].reset_index(drop=True)
    return train, holdout


def train(settings: Settings, store, tenant: str, method: str, assets: list[str] | None = None,
          service: str = DEFAULT_ANOMALY_SERVICE, name: str | None = None,
          split: training_data.SplitConfig | None = None, until: datetime | None = None,
          progress: Progress | None = None) -> AnomalyResult:
    import mlflow
    from mlflow.models import infer_signature

    check_anomaly_method(method)
    name = check_model_name(name or f"anomaly_{method}")
    plan = training_data.plan(settings, store, tenant, assets, service, split, until)
    split, windows, features = plan.cfg, plan.windows, plan.features
    tick = progress or (lambda *_: None)
    t0 = time.perf_counter()
    tick(STEPS[0], 0, len(STEPS))
    with tracking.training_run(settings, store, tenant, f"anomaly {name}", {"model_type": "anomaly"}) as run:
        train_rows, holdout = dataset(store, plan)
        tick(STEPS[1], 1, len(STEPS))
        t1 = time.perf_counter()
        fit_rows = train_rows
        if len(train_rows) > MAX_FIT_ROWS.get(method, len(train_rows)):
            fit_rows = train_rows.sample(MAX_FIT_ROWS[method], random_state=split.seed)
        model = anomaly_model.fit(method, fit_rows, features, seed=split.seed)
        fit_s = time.perf_counter() - t1
        tick(STEPS[2], 2, len(STEPS))
        scores = model.scores(holdout)
        metrics = {f"flagged_share_s{s}": float(np.mean(scores > severity.threshold(s)))
                   for s in severity.SENSITIVITY_THRESHOLDS}
        metrics |= {f"score_p{q}": float(np.nanpercentile(scores, q)) for q in (50, 90, 99)}
        metrics |= {"train_rows": float(len(train_rows)), "holdout_rows": float(len(holdout)), "fit_s": fit_s}
        tick(STEPS[3], 3, len(STEPS))
        mlflow.log_params({"method": method, "feature_service": service, "features": ",".join(features),
                           "assets": ",".join(w.asset_id for w in windows),
                           "severity_bands": ",".join(f"{b}>={lo}" for b, lo in severity.BANDS),
                           **{f"split.{k}": v for k, v in vars(split).items()}, **_parameters(model)})
        if model.statistics is not None:
            mlflow.log_dict(model.statistics, "statistics.json")  # the fitted z-score / IQR parameters
        example = holdout[["asset_id", *features, anomaly_model.VALUE]].head(5)
        example = example.astype({c: float for c in [*features, anomaly_model.VALUE]})  # inputs may be NaN
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model, input_example=example,
            signature=infer_signature(example, model.predict(None, example), params={"sensitivity": 3}),
            pip_requirements=tracking.requirements("scikit-learn"),
            metadata={"features": features, "service": service, "method": method},
        )
        scored = holdout.assign(score=scores)
        tracking.log_figure(plots.anomaly_scores(scored, severity.threshold(severity.DEFAULT_SENSITIVITY),
                                                 f"{method} score on held-out days"), "anomaly_scores")
        tracking.log_feast_features(store, service)
        metrics["total_s"] = time.perf_counter() - t0
        mlflow.log_metrics(metrics)
        window = (min(w.start for w in windows), max(w.end for w in windows))
        fingerprint = tracking.fingerprint(
            train_rows[["asset_id", "event_timestamp", *features, anomaly_model.VALUE]])
        tags = tracking.version_tags(store, tenant, "anomaly", service, window, fingerprint) | {"method": method}
        version = tracking.register(settings, tenant, name, info.model_uri, run.info.run_id, tags)
    tick("done", len(STEPS), len(STEPS))
    return AnomalyResult(version.id, run.info.run_id, info.model_uri, metrics, {"fit_s": fit_s,
                                                                              "total_s": metrics["total_s"]})


def _parameters(model: anomaly_model.AnomalyDetector) -> dict:
    """The fitted parameters that fit in MLflow params (the full tables are in statistics.json)."""
    if model.statistics is not None:
        g = model.statistics["global"]
        return {"stat.global_center": round(g["center"], 6), "stat.global_sigma": round(g["sigma"], 6),
                "stat.asset_hour_cells": len(model.statistics["asset_hour"])}
    return {"calibration.median": round(model.calibration[0], 6), "calibration.sigma": round(model.calibration[1], 6)}
