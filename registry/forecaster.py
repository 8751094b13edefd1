"""The forecaster as an MLflow pyfunc: three quantile LightGBM boosters (p10, p50, p90) over the direct
multi-horizon design (registry/design.py), in load units. The point forecast is the median (p50): the
forecast with the least expected absolute error, which is what MAE, MAPE and the skill scores judge.

Loads differ by orders of magnitude between assets (a building vs a utility zone), so the model
works on scaled values: every load-valued input is divided by the row's level (the mean absolute
value of its load inputs), and `log_level` tells the trees how large the asset is. The label is the
change from an anchor, the target hour's load on the last observed day (seasonal naive-24; the 7-day
profile where that is unknown), in the same level units: a forecast starts from the last observed day
and the trees learn how the target hour will differ from it. A tree model cannot extrapolate, so with
the load itself (over the level) as its label it carries a trend or a level shift into the forecast
days late (its leaves hold the ratios it saw in training); from the anchor it follows them within a
day (README, Evaluation, has the measurements). Models trained before the anchor (`anchored` False) keep
the plain label.
A model trained on several assets also gets the asset as a categorical input (`asset_code`, the
asset's index among the training assets; an asset it was not trained on is "missing" and takes the
shared branches), so it can learn how each asset's load behaves (one holds yesterday's level, another
returns to its weekly profile) without one model per asset. Predictions are scaled back onto the
anchor and the three quantiles sorted per row, so they never cross."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from registry.design import known_mean
from registry.gaps import LEVEL as PROFILE_LEVEL
from registry.gaps import mask_matrix, uses_gap_inputs

try:  # the pyfunc base class; keep this module importable for pure unit tests without MLflow loaded
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object

QUANTILE_OUTPUTS = ("p10", "p50", "p90")
OUTPUTS = (*QUANTILE_OUTPUTS, "point")  # output columns; point = p50
BOOSTERS = QUANTILE_OUTPUTS  # fitted boosters (versions registered before this kept a 4th, "point" (L2), booster)
ALPHAS = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
# Inputs measured in load units (lags and rolling statistics of the hourly mean load).
LOAD_FEATURE = re.compile(r"^(lag_\d+h|historical_(avg|std)_\d+h|min_\d+h|max_\d+h|range_\d+h"
                          r"|same_hour_\d+d|same_hour_(mean|median)_\d+d|profile_level)$")
LEVEL = "log_level"
ASSET = "asset_code"
ANCHOR = ("same_hour_1d", "same_hour_median_7d")  # the label's anchor: the first known of these, else the level


def load_columns(features: list[str]) -> list[str]:
    return [f for f in features if LOAD_FEATURE.match(f)]


def _level_columns(features: list[str]) -> list[int]:
    return [i for i, f in enumerate(features)
            if LOAD_FEATURE.match(f) and not f.startswith("historical_std") and not f.startswith("range_")]


def level_matrix(X: np.ndarray, features: list[str]) -> np.ndarray:
    """Row level of a model matrix (columns = `features`): the profile level (registry/gaps.py) where the
    model has it and it is known and positive, else the mean |value| of the load inputs; 1.0 where none
    is known (no scaling)."""
    cols = _level_columns(features)
    if not cols:
        return np.ones(len(X))
    out = known_mean(np.abs(X[:, cols]), axis=1)
    if PROFILE_LEVEL in features:
        profile = np.abs(X[:, features.index(PROFILE_LEVEL)])
        out = np.where(profile > 0, profile, out)  # NaN compares False
    return np.where(out > 0, out, 1.0)  # NaN (nothing known) compares False: 1.0


def has_level(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Rows with at least one known load input (a level): a row without one would be scaled by 1.0, in
    load units, and teach the boosters a change as large as the load itself."""
    cols = [features[i] for i in _level_columns(features)]
    return np.isfinite(frame[cols].to_numpy(dtype=float)).any(axis=1) if cols else np.ones(len(frame), dtype=bool)


def level(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return level_matrix(frame[features].to_numpy(dtype=float), features)


def anchor_matrix(X: np.ndarray, features: list[str], lvl: np.ndarray) -> np.ndarray:
    """Per row of X (columns = `features`): the first known ANCHOR input, else the row's level."""
    out = np.asarray(lvl, dtype=float).copy()
    for name in reversed(ANCHOR):
        if name in features:
            v = X[:, features.index(name)]
            out = np.where(np.isfinite(v), v, out)
    return out


def prepare_matrix(X: np.ndarray, features: list[str], codes: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Model matrix (load inputs scaled by level, then a column log_level and, where `codes` is given,
    a column asset_code) and the level per row."""
    if uses_gap_inputs(features):  # rolling statistics over too few hours are missing, not a level
        X = mask_matrix(X, features)
    lvl = level_matrix(X, features)
    extra = 1 if codes is None else 2
    out = np.empty((X.shape[0], X.shape[1] + extra))
    out[:, :X.shape[1]] = X
    load = [i for i, f in enumerate(features) if LOAD_FEATURE.match(f)]
    out[:, load] /= lvl[:, None]
    out[:, X.shape[1]] = np.log(lvl)
    if codes is not None:
        out[:, -1] = codes
    return out, lvl


def asset_index(assets: list[str]) -> dict[str, float]:
    """asset id -> asset_code (its index among the training assets)."""
    return {a: float(i) for i, a in enumerate(assets)}


def asset_codes(assets: list[str] | dict[str, float], asset, n: int) -> np.ndarray | None:
    """asset_code per row: the index of `asset` (one id or one per row) in the model's training assets
    (a list, or its asset_index), NaN for an asset it was not trained on; None for a model without the input."""
    if not assets:
        return None
    index = assets if isinstance(assets, dict) else asset_index(assets)
    if asset is None or isinstance(asset, str):
        return np.full(n, index.get(asset, np.nan))
    return np.array([index.get(a, np.nan) for a in np.asarray(asset, dtype=object)], dtype=float)


def input_columns(features: list[str], assets: list[str] | None = None) -> list[str]:
    """Columns of prepare_matrix's output: the features, log_level[, asset_code when `assets`]."""
    return [*features, LEVEL, *([ASSET] if assets else [])]


def prepare(frame: pd.DataFrame, features: list[str], assets: list[str] | None = None
            ) -> tuple[pd.DataFrame, np.ndarray]:
    """prepare_matrix of a design frame (training, SHAP plots) as a frame with named columns; `assets`:
    the model's training assets (adds asset_code from the frame's asset_id)."""
    codes = asset_codes(assets, frame["asset_id"].to_numpy(), len(frame)) if assets else None
    X, lvl = prepare_matrix(frame[features].to_numpy(dtype=float), features, codes)
    return pd.DataFrame(X, columns=input_columns(features, assets), index=frame.index), lvl


def no_crossing(pred: np.ndarray) -> np.ndarray:
    """Sort each row's quantile columns (p10 <= p50 <= p90)."""
    return np.sort(pred, axis=1)


# Conformal widening of the p10-p90 interval per horizon bucket (upper bounds of the buckets).
HORIZON_BUCKETS = (6, 24, 72, 168)


def widening(e: np.ndarray, coverage: float = 0.8) -> float:
    """Conformalized quantile regression: the (coverage)(1 + 1/n) quantile of the nonconformity
    scores e = max(p10 - y, y - p90) (in level units); negative narrows an interval that is too wide."""
    e = e[np.isfinite(e)]
    return float(np.quantile(e, min(1.0, coverage * (1 + 1 / len(e))))) if len(e) else 0.0


def horizon_bucket(horizon: np.ndarray) -> np.ndarray:
    return np.searchsorted(HORIZON_BUCKETS, horizon, side="left").clip(0, len(HORIZON_BUCKETS) - 1)


# Recent-residual calibration: at an issue time t, the p10-p90 widening per horizon bucket comes from the
# model's own forecasts issued at t - 24 h, ..., t - RECENT_DAYS x 24 h whose target hours have ended by t
# (split-conformal on the latest out-of-sample errors, so intervals follow a change of regime); a bucket
# with fewer than MIN_RECENT_ROWS such rows keeps the widening fitted at training time.
RECENT_DAYS = 14
MIN_RECENT_ROWS = 24


def recent_origins(t: pd.Timestamp, days: int = RECENT_DAYS) -> list[tuple[pd.Timestamp, int]]:
    """(issue time, horizons scored by t) of the recent forecasts behind the calibration at t."""
    return [(t - pd.Timedelta(hours=24 * k), min(24 * k, HORIZON_BUCKETS[-1])) for k in range(1, days + 1)]


def recent_widths(horizon: np.ndarray, e: np.ndarray, coverage: float = 0.8,
                  min_rows: int = MIN_RECENT_ROWS) -> list[float | None]:
    """Widening per horizon bucket (level units) from the nonconformity scores `e` of recent forecasts
    (QuantileForecaster.nonconformity); None for a bucket with fewer than `min_rows` scored rows."""
    known = np.isfinite(e)
    bucket = horizon_bucket(np.asarray(horizon))
    out: list[float | None] = []
    for b in range(len(HORIZON_BUCKETS)):
        rows = known & (bucket == b)
        out.append(widening(e[rows], coverage) if rows.sum() >= min_rows else None)
    return out



def save_boosters(boosters: dict, folder: Path) -> dict[str, str]:
    """Each booster as a LightGBM text file `<name>.txt` in folder: the artifacts MLflow logs, by name."""
    paths = {}
    for name, booster in boosters.items():
        paths[name] = str(folder / f"{name}.txt")
        booster.save_model(paths[name])
    return paths


def load_boosters(artifacts: dict[str, str], names) -> dict:
    """The boosters of those names that the artifacts have, parsed side by side (LightGBM's parser runs in C
    without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import lightgbm as lgb

    found = [name for name in names if name in artifacts]
    if not found:
        return {}
    with ThreadPoolExecutor(len(found)) as pool:
        return dict(zip(found, pool.map(lambda name: lgb.Booster(model_file=artifacts[name]), found), strict=True))

class QuantileForecaster(PythonModel):
    """pyfunc: input = the design columns (feature service at issue time, target-aligned lags,
    calendar of the target hour, horizon_h; optionally asset_id for per-asset interval calibration);
    output = p10, p50, p90, point (= p50) in the asset's load units.

    calibration: {"global": [w per bucket], "assets": {asset: [w per bucket]}} widens p10/p90 by
    w x level (HORIZON_BUCKETS); fitted on days the boosters did not train on (train_forecast.fit).
    anchored: the boosters predict the change from the anchor (anchor_matrix) in level units, not
    the load over the level."""

    def __init__(self, features: list[str] | None = None, boosters: dict | None = None,
                 calibration: dict | None = None, assets: list[str] | None = None, anchored: bool = False):
        self.features = list(features or [])
        self.boosters = boosters or {}
        self.calibration = calibration or {}
        self.assets = list(assets or [])  # training assets (asset_code = index); empty: no asset input
        self.anchored = anchored

    # MLflow: boosters are artifacts (LightGBM text files), not pickled.
    def load_context(self, context) -> None:
        self.boosters = load_boosters(context.artifacts, OUTPUTS)

    @property
    def point_booster(self):
        """The booster behind the point forecast (what explanations attribute)."""
        return self.boosters.get("point") or self.boosters["p50"]

    def save_boosters(self, folder: Path) -> dict[str, str]:
        return save_boosters(self.boosters, folder)

    def __getstate__(self):  # pickle the definition only; boosters come back through load_context
        return {"features": self.features, "boosters": {}, "calibration": self.calibration, "assets": self.assets,
                "anchored": self.anchored}

    def __setstate__(self, state):
        self.__dict__.update({"calibration": {}, "assets": [], "anchored": False, **state})

    @property
    def inputs(self) -> list[str]:
        """Columns of the boosters' matrix (matrix()): the features, log_level[, asset_code]."""
        return input_columns(self.features, self.assets)

    def matrix(self, X: np.ndarray, asset=None) -> tuple[np.ndarray, np.ndarray]:
        """The boosters' matrix for rows of `features` of one asset id or one per row, and the level."""
        index = self.__dict__.get("_asset_index")
        if index is None or len(index) != len(self.assets):  # built once per loaded model (hot path)
            index = self.__dict__["_asset_index"] = asset_index(self.assets)
        return prepare_matrix(X, self.features, asset_codes(index, asset, len(X)))

    def anchor(self, X: np.ndarray, lvl: np.ndarray) -> np.ndarray:
        """What the boosters' output (x level) is added to per row of `features`: the anchor, or 0."""
        return anchor_matrix(X, self.features, lvl) if self.anchored else np.zeros(len(X))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        missing = [f for f in self.features if f not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks column(s) {', '.join(missing)}; expected {', '.join(self.features)}")
        assets = model_input["asset_id"].to_numpy() if "asset_id" in model_input.columns else None
        out = self.predict_matrix(model_input[self.features].to_numpy(dtype=float), assets)
        return pd.DataFrame(out, index=model_input.index)

    def predict_matrix(self, X: np.ndarray, asset=None, recent: list[float | None] | None = None,
                       calibrated: bool = True) -> dict[str, np.ndarray]:
        """The hot path: X holds `features` in order (float, NaN = missing); p10/p50/p90/point. `asset`:
        one asset id or one per row (per-asset interval calibration where known); `recent`: widening
        per horizon bucket from recent residuals (recent_widths), None entries keep the trained ones;
        calibrated=False: the boosters' own quantiles (what recent residuals are measured on)."""
        Xs, lvl = self.matrix(X, asset)
        origin = self.anchor(X, lvl)
        raw = {name: origin + booster.predict(Xs, num_threads=1) * lvl for name, booster in self.boosters.items()}
        if calibrated and (self.calibration or recent) and "horizon_h" in self.features:
            w = self.widths(X[:, self.features.index("horizon_h")], asset, recent) * lvl
            raw["p10"], raw["p90"] = raw["p10"] - w, raw["p90"] + w
        quantiles = no_crossing(np.column_stack([raw[q] for q in QUANTILE_OUTPUTS]))
        out = {q: quantiles[:, i] for i, q in enumerate(QUANTILE_OUTPUTS)}
        out["point"] = raw["point"] if "point" in raw else out["p50"]
        return out

    def nonconformity(self, X: np.ndarray, y: np.ndarray, asset=None) -> np.ndarray:
        """max(p10 - y, y - p90) of the boosters' own interval, in level units, per row of X (NaN where
        y is unknown): what recent_widths calibrates on."""
        raw = self.predict_matrix(X, asset, calibrated=False)
        return np.maximum(raw["p10"] - y, y - raw["p90"]) / level_matrix(X, self.features)

    def widths(self, horizon: np.ndarray, asset=None, recent: list[float | None] | None = None) -> np.ndarray:
        """Calibrated widening (level units) per row: recent residuals where given, else trained."""
        bucket = horizon_bucket(horizon)
        table = np.asarray(self.calibration.get("global", [0.0] * len(HORIZON_BUCKETS)), dtype=float)
        per_asset = self.calibration.get("assets", {})
        if asset is None or not per_asset:
            out = table[bucket]
        else:
            assets = np.broadcast_to(np.asarray(asset, dtype=object), bucket.shape)
            rows = np.array([per_asset.get(a, table) for a in assets], dtype=float).reshape(len(bucket), -1)
            out = rows[np.arange(len(bucket)), bucket]
        if recent:
            override = np.array([np.nan if w is None else w for w in recent], dtype=float)[bucket]
            out = np.where(np.isfinite(override), override, out)
        return out
