"""Scores of a forecast over held-out rows, against the seasonal-naive baselines on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry import metrics
from registry.design import HORIZON

DAY_AHEAD = 24  # day-ahead = horizons 1..24 of a forecast issued once a day


def score(rows: pd.DataFrame, pred: pd.DataFrame, scales: dict[str, dict[str, float]]) -> dict[str, float]:
    """rows: y, naive_24, naive_168, asset_id; pred: p10, p50, p90, point (same index). Every metric is
    computed on the same rows: those where the actual, the forecast and both baselines are known (the
    held-out baselines carry their fallbacks, registry/design.py baselines, so none is dropped unless an
    asset had no reading before an issue time)."""
    keep = np.logical_and.reduce([np.isfinite(np.asarray(c, dtype=float)) for c in (
        rows["y"], rows["naive_24"], rows["naive_168"], pred["p10"], pred["p50"], pred["p90"], pred["point"])])
    rows, pred = rows[keep], pred[keep]
    y = rows["y"].to_numpy()
    point = pred["point"].to_numpy()
    out = {
        "mae": metrics.mae(y, point), "rmse": metrics.rmse(y, point), "mape": metrics.mape(y, point),
        "smape": metrics.smape(y, point),
        "coverage_p10_p90": metrics.coverage(y, pred["p10"], pred["p90"]),
        "rows": float(len(rows)),
    }
    for season in (24, 168):
        scale = rows["asset_id"].map({a: s[f"naive_{season}"] for a, s in scales.items()}).to_numpy()
        naive = rows[f"naive_{season}"].to_numpy()
        out[f"mase_{season}"] = metrics.mase(y, point, scale)
        out[f"naive_{season}_mase"] = metrics.mase(y, naive, scale)
        out[f"naive_{season}_mae"] = metrics.mae(y, naive)
        # Relative MAE on the same rows (< 1: the model beats the baseline where both exist).
        both = np.isfinite(naive) & np.isfinite(point)
        out[f"relmae_{season}"] = metrics.mae(y[both], point[both]) / metrics.mae(y[both], naive[both]) \
            if both.any() and metrics.mae(y[both], naive[both]) > 0 else float("nan")
    for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
        out[f"pinball_{name}"] = metrics.pinball(y, pred[name], q)
    out["pinball_mean"] = float(np.mean([out["pinball_p10"], out["pinball_p50"], out["pinball_p90"]]))
    return out


def report(rows: pd.DataFrame, pred: pd.DataFrame, scales) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metrics for MLflow: all horizons + `dayahead_*`, per-asset day-ahead scores)."""
    overall = score(rows, pred, scales)
    day = rows[HORIZON] <= DAY_AHEAD
    overall |= {f"dayahead_{k}": v for k, v in score(rows[day], pred[day], scales).items()}
    per_asset = {}
    for asset, part in rows[day].groupby("asset_id", sort=True):
        s = score(part, pred.loc[part.index], scales)
        per_asset[asset] = {k: s[k] for k in ("mae", "mape", "mase_168", "naive_168_mase", "relmae_168",
                                              "coverage_p10_p90", "pinball_p50", "rows")}
    return overall, per_asset


def by_horizon(rows: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """MAE per horizon for the model and both baselines (for the error-by-horizon plot)."""
    frame = pd.DataFrame({HORIZON: rows[HORIZON], "model": (pred["point"] - rows["y"]).abs(),
                          "naive_24": (rows["naive_24"] - rows["y"]).abs(),
                          "naive_168": (rows["naive_168"] - rows["y"]).abs()})
    return frame.groupby(HORIZON).mean()
