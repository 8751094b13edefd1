"""Anomaly detectors as one MLflow pyfunc: z-score, IQR, isolation forest and LOF over the
`anomaly_detection` features plus the value being judged, all scoring in sigma units (severity.py).

A row judges the hourly mean `value` of the hour starting at its event time E against the context
the feature service gives at E (the 24 h before E) and the calendar of that hour."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.names import STATISTICAL_METHODS
from registry import severity

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object

VALUE = "value"
MIN_GROUP = 20  # fewer rows than this for an (asset, hour) group: use the asset's, then global stats
# Inputs of isolation forest / LOF: the value against its 24 h context, and the hour (cyclic).
DERIVED = ["ratio", "z_24h", "position_24h", "hour_sin", "hour_cos"]


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale-free description of a value in its 24 h context (works across assets of any size)."""
    value = frame[VALUE].to_numpy(dtype=float)
    avg = np.abs(frame["historical_avg_24h"].to_numpy(dtype=float))
    std = frame["historical_std_24h"].to_numpy(dtype=float)
    lo, rng = frame["min_24h"].to_numpy(dtype=float), frame["range_24h"].to_numpy(dtype=float)
    hour = frame["hour_of_day"].to_numpy(dtype=float)
    mean = frame["historical_avg_24h"].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        out = pd.DataFrame({
            "ratio": np.where(avg > 0, value / avg, np.nan),
            "z_24h": np.clip(np.where(std > 0, (value - mean) / std, 0), -20, 20),
            "position_24h": np.clip(np.where(rng > 0, (value - lo) / rng, 0.5), -5, 6),
            "hour_sin": np.sin(2 * np.pi * hour / 24), "hour_cos": np.cos(2 * np.pi * hour / 24),
        }, index=frame.index)
    return out


def group_statistics(frame: pd.DataFrame, method: str) -> dict:
    """Fitted statistics of the value/level ratio per (asset, hour of day), per asset and overall:
    mean/std for z_score, q1/median/q3 for iqr."""
    data = pd.DataFrame({"asset_id": frame["asset_id"].to_numpy(), "hour": frame["hour_of_day"].to_numpy(),
                         "ratio": derive(frame)["ratio"].to_numpy()}).dropna()

    def stats(r: pd.Series) -> dict:
        if method == "z_score":
            return {"center": float(r.mean()), "sigma": float(r.std(ddof=1)) or 1e-9, "n": int(len(r))}
        q1, med, q3 = (float(v) for v in r.quantile([0.25, 0.5, 0.75]))
        return {"center": med, "sigma": (q3 - q1) / severity.IQR_TO_SIGMA or 1e-9, "q1": q1, "q3": q3,
                "n": int(len(r))}

    out = {"global": stats(data["ratio"]), "asset": {}, "asset_hour": {}}
    for asset, part in data.groupby("asset_id"):
        out["asset"][asset] = stats(part["ratio"])
        for hour, cell in part.groupby("hour"):
            if len(cell) >= MIN_GROUP:
                out["asset_hour"][f"{asset}|{int(hour)}"] = stats(cell["ratio"])
    return out


class AnomalyDetector(PythonModel):
    """pyfunc: input = asset_id, the anomaly_detection features and `value`; params sensitivity
    1..5; output = score (sigma units), severity (band or empty), is_anomaly."""

    def __init__(self, method: str, features: list[str], statistics: dict | None = None, estimator=None,
                 calibration: tuple[float, float] | None = None, scaler=None):
        self.method = method
        self.features = features
        self.statistics = statistics
        self.estimator = estimator
        self.calibration = calibration
        self.scaler = scaler

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        derived = derive(frame)
        if self.method in STATISTICAL_METHODS:
            cells = self._cells(frame)
            center = np.array([c["center"] for c in cells])
            sigma = np.array([c["sigma"] for c in cells])
            return np.abs(derived["ratio"].to_numpy() - center) / sigma
        raw = self.raw_scores(derived)
        median, sigma = self.calibration
        return np.maximum(0.0, (raw - median) / sigma)

    def expected(self, frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
        """Expected value of each row in load units: mean, std and the range [mean - t*std, mean + t*std]
        outside which it is flagged (z-score/IQR: the fitted ratio statistics times the 24 h level;
        isolation forest/LOF: the 24 h context itself)."""
        level = np.abs(frame["historical_avg_24h"].to_numpy(dtype=float))
        if self.method in STATISTICAL_METHODS:
            cells = self._cells(frame)
            mean = np.array([c["center"] for c in cells]) * level
            std = np.array([c["sigma"] for c in cells]) * level
        else:
            mean = frame["historical_avg_24h"].to_numpy(dtype=float)
            std = frame["historical_std_24h"].to_numpy(dtype=float)
        return pd.DataFrame({"expected_mean": mean, "expected_std": std, "expected_min": mean - threshold * std,
                             "expected_max": mean + threshold * std}, index=frame.index)

    def _cells(self, frame: pd.DataFrame) -> list[dict]:
        st = self.statistics
        return [st["asset_hour"].get(f"{a}|{int(h)}") or st["asset"].get(a) or st["global"]
                for a, h in zip(frame["asset_id"], frame["hour_of_day"].fillna(0), strict=True)]

    def raw_scores(self, derived: pd.DataFrame) -> np.ndarray:
        X = derived[DERIVED].fillna(0.0).to_numpy()
        if self.scaler is not None:
            X = self.scaler.transform(X)
        return -self.estimator.score_samples(X)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        missing = [c for c in ("asset_id", *self.features, VALUE) if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks column(s) {', '.join(missing)}")
        sensitivity = severity.check_sensitivity(int((params or {}).get("sensitivity", severity.DEFAULT_SENSITIVITY)))
        s = self.scores(model_input)
        return pd.DataFrame({"score": s, "severity": [b or "" for b in severity.severities(s)],
                             "is_anomaly": s > severity.threshold(sensitivity)}, index=model_input.index)


def fit(method: str, frame: pd.DataFrame, features: list[str], seed: int = 0) -> AnomalyDetector:
    if method in STATISTICAL_METHODS:
        return AnomalyDetector(method, features, statistics=group_statistics(frame, method))
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.preprocessing import StandardScaler

    derived = derive(frame)
    X = derived[DERIVED].fillna(0.0).to_numpy()
    if method == "isolation_forest":
        forest = IsolationForest(n_estimators=200, max_samples=1024, random_state=seed).fit(X)
        model = AnomalyDetector(method, features, estimator=forest)
    elif method == "local_outlier_factor":
        scaler = StandardScaler().fit(X)
        lof = LocalOutlierFactor(n_neighbors=35, novelty=True).fit(scaler.transform(X))
        model = AnomalyDetector(method, features, estimator=lof, scaler=scaler)
    else:
        raise ValueError(f"anomaly method {method!r} is not one of z_score, iqr, isolation_forest, "
                         "local_outlier_factor")
    model.calibration = severity.tail_scale(model.raw_scores(derived))
    return model
