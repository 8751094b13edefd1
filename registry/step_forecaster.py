"""The sub-hourly load forecaster (interval_minutes 15 or 30): three LightGBM quantile boosters (p10, p50, p90)
on registry/step_design.py's rows, in level units. An MLflow pyfunc whose boosters are artifacts (text files)."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from registry.forecaster import load_boosters, save_boosters
from registry.step_design import FEATURES, HORIZON_STEPS, SCALED, level

OUTPUTS = ("p10", "p50", "p90")
ALPHAS = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
# Horizon buckets (hours) of the interval calibration: the error grows with the lead time.
BUCKET_EDGES_H = (6, 24, 72)


def bucket(horizon_steps, step: int) -> np.ndarray:
    """The calibration bucket (0..len(BUCKET_EDGES_H)) of each horizon in steps."""
    hours = np.asarray(horizon_steps, dtype=float) * step / 60.0
    return np.searchsorted(np.asarray(BUCKET_EDGES_H, dtype=float), hours, side="left")


def matrix(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The boosters' matrix (FEATURES, load inputs over the level) and the level of each row."""
    lvl = level(frame)
    X = frame[FEATURES].to_numpy(dtype=float).copy()
    for i, name in enumerate(FEATURES):
        if name in SCALED:
            X[:, i] = X[:, i] / lvl
    return X, lvl


class StepForecaster(mlflow.pyfunc.PythonModel):
    """predict(rows with FEATURES) -> p10, p50, p90, point (= p50) in the asset's unit, quantiles sorted.
    `calibration` (registry/train_step.calibrate; None = the boosters' band as it is): per horizon bucket, how
    far to move p10 down and p90 up, in level units (negative narrows a band that covered too much)."""

    def __init__(self, step: int = 30, boosters: dict | None = None, calibration: dict | None = None):
        self.step = step
        self.features = list(FEATURES)
        self.boosters = boosters or {}
        self.calibration = calibration

    def load_context(self, context) -> None:
        self.boosters = load_boosters(context.artifacts, OUTPUTS)

    def save_boosters(self, folder: Path) -> dict[str, str]:
        return save_boosters(self.boosters, folder)

    def __getstate__(self):  # the definition only; boosters come back through load_context
        return {"step": self.step, "features": self.features, "boosters": {}, "calibration": self.calibration}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"calibration": None, **state})  # versions logged before calibration existed

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        X, lvl = matrix(model_input)
        scaled = np.column_stack([self.boosters[name].predict(X, num_threads=1) for name in OUTPUTS])
        if self.calibration:
            widen = np.asarray(self.calibration["by_bucket"], dtype=float)[
                bucket(model_input[HORIZON_STEPS].to_numpy(), self.step)]
            scaled[:, 0] -= widen
            scaled[:, 2] += widen
        raw = scaled * lvl[:, None]
        q = np.sort(raw, axis=1)  # no crossing quantiles
        return pd.DataFrame({"p10": q[:, 0], "p50": q[:, 1], "p90": q[:, 2], "point": q[:, 1]},
                            index=model_input.index)
