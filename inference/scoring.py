"""Anomaly scoring of hourly rows (features + the hour's mean `value`) with a served model: an anomaly
model's own score, or for `forecast_residual` the distance from the 1-h-ahead forecast in sigmas of its
p10-p90 band. Returns the rows the SDK shows, with a sentence each, and their summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.formats import reading
from core.names import FORECAST_RESIDUAL
from inference.models import Served
from registry.design import HORIZON, HOUR
from registry.severity import severities, threshold

P10_P90_SIGMAS = 2.563  # width of a normal's p10-p90 interval in sigmas


def score(served: Served, frame: pd.DataFrame, method: str, sensitivity: int) -> tuple[pd.DataFrame, dict]:
    """(one row per hour: timestamp, value, score, expected_*, is_anomaly, severity, explanation; summary).
    `frame` holds the model's feature service per hour start (`event_timestamp`), `value` and `asset_id`."""
    limit = threshold(sensitivity)
    if method == FORECAST_RESIDUAL:
        scored = residual_scores(served, frame, limit)
    else:
        detector = served.python_model
        out = served.model.predict(frame[["asset_id", *detector.features, "value"]].astype(
            {c: float for c in [*detector.features, "value"]}), params={"sensitivity": sensitivity})
        scored = pd.concat([out[["score"]], detector.expected(frame, limit)], axis=1)
    scored["is_anomaly"] = scored["score"].to_numpy() > limit
    scored["severity"] = [s or "" for s in severities(scored["score"].to_numpy())]
    result = pd.concat([pd.DataFrame({"timestamp": pd.to_datetime(frame["event_timestamp"], utc=True),
                                      "value": frame["value"].to_numpy()}), scored.reset_index(drop=True)], axis=1)
    result["explanation"] = [sentence(r) for r in result.itertuples()]
    flagged = result[result["is_anomaly"]]
    summary = {
        "points": len(result), "anomalies": len(flagged), "rate": len(flagged) / len(result) if len(result) else 0,
        "by_severity": {s: int((flagged["severity"] == s).sum()) for s in ("low", "medium", "high", "critical")},
        "mean_score": float(np.nanmean(result["score"])) if len(result) else float("nan"),
        "max_score": float(np.nanmax(result["score"])) if len(result) else float("nan"),
        "method": method, "sensitivity": sensitivity, "threshold_sigma": limit,
        "start": result["timestamp"].min(), "end": result["timestamp"].max() + HOUR,
    }
    return result, summary


def residual_scores(served: Served, frame: pd.DataFrame, limit: float) -> pd.DataFrame:
    """Score = |value - p50| / sigma, sigma from the 1-h-ahead forecast's p10-p90 width."""
    model = served.python_model  # our own frame, already typed: skip pyfunc's schema round trip
    design = frame.reindex(columns=model.features).astype(float)
    design[HORIZON] = 1.0
    # 1 h ahead, the target-aligned lags are the service's lags of the scored hour's start
    for name, lag in (("same_hour_1d", "lag_24h"), ("same_hour_7d", "lag_168h")):
        if name in design.columns and lag in frame.columns:
            design[name] = frame[lag].astype(float).to_numpy()
    pred = model.predict_matrix(design.to_numpy(), frame["asset_id"].to_numpy())
    sigma = np.maximum((pred["p90"] - pred["p10"]) / P10_P90_SIGMAS, 1e-9)
    mean = pred["p50"]
    return pd.DataFrame({"score": np.abs(frame["value"].to_numpy() - mean) / sigma, "expected_mean": mean,
                         "expected_std": sigma, "expected_min": mean - limit * sigma,
                         "expected_max": mean + limit * sigma})


def sentence(r) -> str:
    """One scored row in words."""
    if not np.isfinite(r.score):
        return "not scored: the 24 h context is incomplete"
    where = "above" if r.value > r.expected_mean else "below"
    if r.is_anomaly:
        return (f"{reading(r.value)} is {r.score:.1f}σ {where} the expected {reading(r.expected_mean)} ± "
                f"{reading(r.expected_std)} ({r.severity})")
    return f"{reading(r.value)} is within the expected range ({r.score:.1f}σ from {reading(r.expected_mean)})"
