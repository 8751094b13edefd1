"""The API's response models against what the SDK's result objects write: every key of `to_dict()` /
`as_dict()` is declared (a response model drops what it does not declare), and the values the SDK
writes as null (non-finite numbers, missing times) validate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.results import AnomalyResult, Explanation, ForecastResult, GlobalExplanation
from registry.lifecycle import ModelInfo
from service import schemas

T0 = pd.Timestamp("2017-06-28T23:00:00Z")


def _forecast(quantiles: bool) -> ForecastResult:
    columns = {"timestamp": pd.date_range(T0, periods=2, freq="h"), "horizon_h": np.arange(1, 3),
               "point": np.array([310.5, np.nan])}
    if quantiles:
        columns.update(p10=np.array([300.0, 301.0]), p50=np.array([310.0, 311.0]), p90=np.array([320.0, np.inf]),
                       lower=np.array([300.0, 301.0]), upper=np.array([320.0, 321.0]))
    return ForecastResult(tenant="demo", asset="zone1", _frame=columns, model_id="demo:load_forecaster:3",
                          stage="production", feature_service="forecast_weather",
                          features={"lag_1h": 305.0, "temperature": None}, feature_time=T0,
                          feature_age_seconds=12.5, source="online", training_metrics={"mae": 4.2, "mape": np.nan},
                          generated_at=T0, warnings=["stale"])


def _anomaly(rows: int) -> AnomalyResult:
    frame = pd.DataFrame({"timestamp": pd.date_range(T0, periods=rows, freq="h"), "value": [300.0] * rows,
                          "score": [np.nan] * rows, "expected_mean": [1.0] * rows, "expected_std": [0.5] * rows,
                          "expected_min": [0.0] * rows, "expected_max": [2.0] * rows, "is_anomaly": [False] * rows,
                          "severity": [""] * rows, "explanation": ["not scored"] * rows})
    summary = {"points": rows, "anomalies": 0, "rate": 0, "by_severity": {"low": 0}, "mean_score": np.nan,
               "max_score": np.nan, "method": "z_score", "sensitivity": 3, "threshold_sigma": 2.5,
               "start": frame["timestamp"].min(), "end": frame["timestamp"].max()}  # NaT when empty
    return AnomalyResult("demo", "zone1", frame, summary, None, "history", [])


def _explanation() -> Explanation:
    contributions = pd.DataFrame({"feature": ["lag_1h", "asset_id"], "value": [305.0, "zone1"],
                                  "contribution": [12.0, -1.5]})
    return Explanation(model_id="demo:load_forecaster:3", target_time=T0, prediction=320.0, base_value=309.5,
                       _contributions=contributions, summary="up", warnings=[])


def _model_info() -> ModelInfo:
    return ModelInfo(id="demo:load_forecaster:3", tenant="demo", name="load_forecaster", version=3,
                     stage="production", model_type=None, run_id=None, created=1_700_000_000_000,
                     tags={"tenant_id": "demo"}, aliases=["production"], serving=True,
                     metrics={"mae": 4.2, "rmse": float("nan")})


def _declared(model: type, doc: dict) -> None:
    """`doc` validates against `model` and holds no key the model would drop."""
    model.model_validate(doc)
    assert set(doc) <= set(model.model_fields), set(doc) - set(model.model_fields)


@pytest.mark.parametrize("quantiles", [True, False])
def test_a_forecast_validates_with_every_key_declared(quantiles):
    doc = _forecast(quantiles).to_dict()
    _declared(schemas.ForecastResponse, {"forecast_id": "f", "forecast_type": "load", "interval_minutes": 60, **doc})
    for row in doc["forecast"]:
        _declared(schemas.ForecastPoint, row)
    assert schemas.Forecast.model_validate(doc).forecast[1].point is None  # a NaN point is null


@pytest.mark.parametrize("rows", [3, 0])
def test_an_anomaly_result_validates_with_every_key_declared(rows):
    doc = _anomaly(rows).to_dict()
    _declared(schemas.AnomalyResponse, doc)
    assert (doc["summary"]["start"] is None) == (rows == 0)
    _declared(schemas.AnomalySummary, doc["summary"])
    for row in doc["points"]:
        _declared(schemas.AnomalyPoint, row)


def test_an_explanation_validates_with_every_key_declared():
    doc = _explanation().to_dict()
    _declared(schemas.ExplainResponse, doc)
    for step in doc["waterfall"]:
        _declared(schemas.WaterfallStep, step)
    assert schemas.ExplainResponse.model_validate(doc).contributions[1].value == "zone1"  # the asset input
    importance = pd.DataFrame({"feature": ["lag_1h"], "mean_abs_shap": [0.4], "share": [1.0]})
    _declared(schemas.GlobalExplainResponse, GlobalExplanation("demo:load_forecaster:3", importance).to_dict())


def test_a_model_version_validates_with_every_key_declared():
    doc = _model_info().as_dict()
    assert set(schemas.ModelInfo.model_fields) == set(doc)
    assert schemas.ModelInfo.model_validate(doc).model_dump_json().count('"rmse":null') == 1  # JSON has no NaN
