"""SHAP explanations of a served forecaster: the contributions to one target hour's point forecast
(LightGBM's own TreeSHAP) with a sentence, and the mean |SHAP| ranking recorded at training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import ModelNotFoundError
from core.formats import reading
from inference.models import Served
from inference.results import Explanation, GlobalExplanation, shown_value


def explain_row(served: Served, row: np.ndarray, target, asset: str | None) -> Explanation:
    """TreeSHAP of the point booster: LightGBM's own implementation (what shap.TreeExplainer calls
    for LightGBM models), single-threaded: one row does not pay OpenMP's start-up and contention."""
    model = served.python_model
    X, level = model.matrix(row, asset)
    contributions = model.point_booster.predict(X, pred_contrib=True, num_threads=1)[0]
    values = contributions[:-1] * level[0]  # back to load units
    # the base: the trees' expected output, from the anchor (same hour, last observed day) if anchored
    anchor = float(model.anchor(row, level)[0]) if model.anchored else None
    base = (anchor or 0.0) + float(contributions[-1] * level[0])
    names = model.inputs
    raw = [*(None if np.isnan(v) else float(v) for v in row[0]), float(X[0, len(model.features)]),
           *([asset] if model.assets else [])]  # asset_code shows the asset id
    order = np.argsort(-np.abs(values), kind="stable")
    feature, value = [names[i] for i in order], [raw[i] for i in order]
    contributions = values[order]

    def contrib() -> pd.DataFrame:
        return pd.DataFrame({"feature": feature, "value": value, "contribution": contributions})

    prediction = base + float(values.sum())
    text = sentence(prediction, base, zip(feature[:3], value[:3], contributions[:3], strict=True), target, anchor)
    return Explanation(served.info.id, target, prediction, base, contrib, text)


def sentence(prediction: float, base: float, top, target, anchor: float | None = None) -> str:
    """`top`: (feature, value, contribution) of the largest contributions, largest first; `anchor`: what
    an anchored model's base starts from (registry/forecaster.py)."""
    parts = []
    for feature, value, contribution in top:
        verb = "raises" if contribution >= 0 else "lowers"
        parts.append(f"{feature} ({shown_value(value)}) {verb} it by {reading(abs(contribution))}")
    when = f" for the hour starting {target:%Y-%m-%d %H:%M} UTC" if target is not None else ""
    start = f"base {reading(base)}"
    if anchor is not None:
        start += (f" = same hour on the last observed day {reading(anchor)} {'+' if base >= anchor else '-'} "
                  f"average change {reading(abs(base - anchor))}")
    return f"Forecast {reading(prediction)}{when} ({start}): " + "; ".join(parts) + "."


def global_explanation(served: Served, tracking_uri: str) -> GlobalExplanation:
    """Mean |SHAP| per model input on the model's held-out rows, from the run's artifact (read from
    `tracking_uri`'s server, not MLflow's global URI)."""
    import json
    import tempfile

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from registry.train_forecast import GLOBAL_SHAP

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = download_artifacts(run_id=served.info.run_id, artifact_path=GLOBAL_SHAP, dst_path=tmp,
                                      tracking_uri=tracking_uri)
            with open(path) as f:
                values = json.load(f)
    except (MlflowException, OSError) as e:  # the artifact is absent for this version
        raise ModelNotFoundError(f"{served.info.id} has no {GLOBAL_SHAP} (trained before global SHAP was "
                                 "recorded); retrain it with `ems train forecast`") from e
    frame = pd.DataFrame({"feature": list(values), "mean_abs_shap": list(values.values())})
    frame = frame.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
    frame["share"] = frame["mean_abs_shap"] / frame["mean_abs_shap"].sum()
    return GlobalExplanation(served.info.id, frame)
