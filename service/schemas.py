"""The AI Hub API's request and response bodies (pydantic), so that the OpenAPI document states what
each endpoint takes and returns, errors included. Response shapes follow the SDK's result objects'
`to_dict()` (inference/results.py) and `registry.lifecycle.ModelInfo.as_dict()`; a value the SDK may
write as null (a non-finite number, a missing time) is Optional here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.names import (
    ASSET_KINDS,
    DETECT_METHODS,
    FORECAST_TYPES,
    INTERVALS,
    TECHNOLOGIES,
    InvalidIntervalError,
    check_interval,
)

MAX_BATCH = 1000  # assets in one batch forecast or feature read


# ------------------------------------------------------------------ requests
def _forecast_type(value: str) -> str:
    """load | generation | price; whether the asset and its model have it is the SDK's check (422)."""
    if value not in FORECAST_TYPES:
        raise ValueError(f"forecast_type {value!r} is not a forecast type; use one of {', '.join(FORECAST_TYPES)}")
    return value


def _interval_minutes(value: int) -> int:
    """15 | 30 | 60 | 1440 (core.names.INTERVALS); whether the asset's data is that fine is the SDK's check (422)."""
    try:
        return check_interval(value)
    except InvalidIntervalError as e:
        raise ValueError(str(e)) from None


def _asset_ids(value: list[str]) -> list[str]:
    if not 1 <= len(value) <= MAX_BATCH:
        raise ValueError(f"asset_ids holds {len(value)} assets; allowed 1..{MAX_BATCH}")
    return value


class Reading(BaseModel):
    timestamp: datetime
    value: float


class WeatherHour(BaseModel):
    timestamp: datetime = Field(description="start of the target hour, ISO 8601 with a UTC offset")
    temperature: float | None = Field(None, description="deg C")
    humidity: float | None = Field(None, description="% relative humidity")
    solar_irradiance: float | None = Field(None, description="W/m2")
    wind_speed: float | None = Field(None, description="m/s")


class ForecastRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_id": "zone1", "forecast_type": "load", "horizon_hours": 24,
         "interval_minutes": 60, "include_quantiles": True}]})
    tenant_id: str
    asset_id: str
    forecast_type: str = "load"
    horizon_hours: int = Field(24, description="1-168")
    interval_minutes: int = Field(60, description=" | ".join(map(str, INTERVALS)) + ": 15/30 for assets whose "
                                  "readings are that fine (their own model), 1440 the hourly forecast per local day")
    include_quantiles: bool = True
    model_name: str | None = Field(None, description="model name (its production version) or id tenant:name:version")
    historical_data: list[Reading] | None = Field(None, description="history of an asset the store does not know")
    timezone: str = Field("UTC", description="IANA zone of historical_data's calendar")
    features: dict[str, float] | None = Field(
        None, description="overrides of inputs the model reads at issue time (lags, rolling statistics, the weather "
                          "observed at issue time, profile values), name -> number, applied to every target hour; "
                          "calendar inputs follow from each target hour and cannot be overridden. The response "
                          "names each override in its warnings. A weather forecast for the target hours goes in "
                          "weather_forecast.",
        examples=[{"temperature": 31.5}])
    weather_forecast: list[WeatherHour] | None = Field(
        None, description="your weather forecast for the target hours, one entry per hour (variables left out stay "
                          "as stored), for a model whose feature service reads target-hour weather "
                          "(forecast_weather_ahead); replaces the stored forecasts and is named in the warnings. "
                          "A model without such inputs answers 422.",
        examples=[[{"timestamp": "2017-12-31T00:00:00Z", "temperature": 14.2}]])
    log: bool = Field(False, description="also write the forecast to the forecast log (live accuracy: `ems monitor` "
                                         "joins it with the actuals as they arrive); idempotent per model, issue "
                                         "time and target hour")

    _type = field_validator("forecast_type")(lambda value: _forecast_type(value))
    _interval = field_validator("interval_minutes")(lambda value: _interval_minutes(value))


class AnomalyRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_id": "zone1", "method": "z_score", "sensitivity": 3, "lookback_hours": 168}]})
    tenant_id: str
    asset_id: str
    method: str = Field("z_score", description=" | ".join(DETECT_METHODS))
    sensitivity: int = Field(3, description="1 (fewest flags) .. 5 (most)")
    start: datetime | None = None
    end: datetime | None = None
    lookback_hours: int = 168
    series: list[Reading] | None = None
    timezone: str = "UTC"


class ExplainRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_id": "zone1", "horizon_hours": 1}]})
    tenant_id: str
    asset_id: str
    horizon_hours: int = Field(1, description="1-168")
    model_name: str | None = None


class GlobalExplainRequest(BaseModel):
    model_id: str


class BatchForecastRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_ids": ["zone1", "zone2", "zone3"], "horizon_hours": 24},
        {"tenant_id": "demo", "asset_ids": ["zone1", "zone2"], "horizon_hours": 24, "interval_minutes": 30}]})
    tenant_id: str
    asset_ids: list[str] = Field(description=f"1..{MAX_BATCH} assets")
    forecast_type: str = "load"
    horizon_hours: int = Field(24, description="1-168")
    interval_minutes: int = Field(60, description=" | ".join(map(str, INTERVALS)) + ": as in /ai/forecast, per "
                                  "asset; an asset whose readings are coarser than the interval is listed in errors "
                                  "(code invalid_interval), the others still forecast")
    include_quantiles: bool = True
    model_name: str | None = None
    log: bool = Field(False, description="also write the forecasts to the forecast log (live accuracy: `ems monitor` "
                                         "joins it with the actuals as they arrive); idempotent per model, issue "
                                         "time and target hour; hourly forecasts only (interval_minutes 60: the "
                                         "log holds hourly rows), another interval with log is a 422")

    _type = field_validator("forecast_type")(lambda value: _forecast_type(value))
    _interval = field_validator("interval_minutes")(lambda value: _interval_minutes(value))
    _assets = field_validator("asset_ids")(lambda value: _asset_ids(value))


class FeaturesRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_ids": ["zone1"], "feature_service": "forecast_advanced"}]})
    tenant_id: str
    asset_ids: list[str] = Field(description=f"1..{MAX_BATCH} assets")
    feature_service: str = "forecast_advanced"
    timestamp: datetime | None = Field(None, description="absent: the online values now; a time (ISO 8601 with "
                                                          "offset): the values as they were then (point in time)")

    _assets = field_validator("asset_ids")(lambda value: _asset_ids(value))


class AssetUpdate(BaseModel):
    """What `ems assets set` takes; the checks and their messages are `warehouse.assets.set_kind`'s."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "kind": "generation", "capacity": 2.5, "technology": "pv", "latitude": 35.57,
         "longitude": -5.37},
        {"tenant_id": "demo", "kind": "consumption"}]})
    tenant_id: str
    kind: str = Field(description=" | ".join(ASSET_KINDS) + ": load, generation or price forecasts")
    capacity: float | None = Field(None, description="generation units only: > 0, in the unit of the readings")
    technology: str | None = Field(None, description="generation units only: " + " | ".join(TECHNOLOGIES))
    latitude: float | None = Field(None, description="decimal degrees in [-90, 90], with longitude; both absent: "
                                                     "the stored position is kept")
    longitude: float | None = Field(None, description="decimal degrees in [-180, 180], with latitude")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"to": "production", "reason": "beats v3"}]})
    to: str = Field(description="staging | production | archived")
    reason: str | None = None
    force: bool = False


# ------------------------------------------------------------------ errors
class ErrorBody(BaseModel):
    """Every error: a stable code (the error's class in snake case) and a message naming the bad value."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"code": "invalid_horizon", "message": "horizon=200 is out of range 1..168 (hours)"}]})
    code: str
    message: str


ERROR_MEANING = {
    400: "a domain error without a more specific status",
    401: "no valid bearer token",
    403: "the token lacks the role, or acts for another tenant",
    404: "unknown tenant, asset, model or feature service",
    413: "request body over the size limit",
    422: "invalid request (the message names the field and value)",
    429: "rate limit exceeded (see retry-after)",
    503: "the model or the features cannot be served now",
}
LIMITS = (413, 429)  # any request, before it reaches an endpoint
SDK_CALL = (400, 401, 403, 404, 422, 503, *LIMITS)  # an authenticated call into the SDK or the registry


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of an endpoint that may answer with these error statuses."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANING[status]} for status in sorted(statuses)}


# ------------------------------------------------------------------ service
class Probe(BaseModel):
    healthy: bool
    latency_ms: float
    error: str | None = Field(None, description="the failure's kind and message, when unhealthy")


class Health(BaseModel):
    status: str = Field(description="ok | degraded")
    service: str
    version: str
    timestamp: datetime
    environment: str
    dependencies: dict[str, Probe]


class Readiness(BaseModel):
    ready: bool
    down: list[str] = Field(description="dependencies that do not answer")


# ------------------------------------------------------------------ inference
class ForecastPoint(BaseModel):
    timestamp: datetime = Field(description="start of the target hour, step (15/30) or local day (1440), UTC")
    horizon_h: int = Field(description="the hour after the issue time the target falls in (1440: its end)")
    horizon_steps: int | None = Field(None, description="interval_minutes 15/30: steps after the issue time")
    hours: int | None = Field(None, description="interval_minutes 1440: the local day's hours (23-25)")
    point: float | None
    p10: float | None = None  # the quantiles only with include_quantiles
    p50: float | None = None
    p90: float | None = None
    lower: float | None = None
    upper: float | None = None


class Forecast(BaseModel):
    """`ForecastResult.to_dict()`."""
    tenant: str
    asset: str
    model_id: str
    version: int
    stage: str
    feature_service: str
    features: dict[str, float | None] = Field(description="issue-time feature values the model used")
    feature_time: datetime = Field(description="end of the last complete hour the features describe")
    feature_age_seconds: float | None
    source: str = Field(description="online | offline | history")
    fallback: bool
    training_metrics: dict[str, float | None]
    generated_at: datetime
    warnings: list[str]
    forecast: list[ForecastPoint]


class ForecastResponse(Forecast):
    forecast_id: str
    forecast_type: str
    interval_minutes: int


class AssetError(BaseModel):
    asset_id: str
    code: str
    message: str


class BatchForecastResponse(BaseModel):
    forecast_id: str
    forecast_type: str
    interval_minutes: int
    forecasts: list[Forecast]
    errors: list[AssetError] = Field(description="assets that failed, each with its code and message")


class AnomalySummary(BaseModel):
    points: int
    anomalies: int
    rate: float | None
    by_severity: dict[str, int]
    mean_score: float | None
    max_score: float | None
    method: str
    sensitivity: int
    threshold_sigma: float | None
    start: datetime | None
    end: datetime | None


class AnomalyPoint(BaseModel):
    timestamp: datetime = Field(description="start of the hour (UTC)")
    value: float | None
    score: float | None
    expected_mean: float | None
    expected_std: float | None
    expected_min: float | None
    expected_max: float | None
    is_anomaly: bool
    severity: str = Field(description="low | medium | high | critical, or empty")
    explanation: str


class AnomalyResponse(BaseModel):
    """`AnomalyResult.to_dict()`."""
    tenant: str
    asset: str
    model_id: str | None
    source: str = Field(description="offline | history")
    warnings: list[str]
    summary: AnomalySummary
    points: list[AnomalyPoint]


class Contribution(BaseModel):
    feature: str
    value: float | str | None = Field(description="the input's value (the asset input: its id)")
    contribution: float | None


class WaterfallStep(Contribution):
    start: float | None
    end: float | None


class ExplainResponse(BaseModel):
    """`Explanation.to_dict()`."""
    model_id: str
    target_time: datetime | None
    prediction: float | None
    base_value: float | None
    summary: str
    contributions: list[Contribution]
    waterfall: list[WaterfallStep]
    warnings: list[str]


class Importance(BaseModel):
    feature: str
    mean_abs_shap: float | None
    share: float | None


class GlobalExplainResponse(BaseModel):
    """`GlobalExplanation.to_dict()`."""
    model_id: str
    importance: list[Importance]


# ------------------------------------------------------------------ features
class FeaturesResponse(BaseModel):
    feature_service: str
    source: str
    rows: list[dict[str, Any]] = Field(description="one per asset: asset_id, tenant_id and the service's features")
    warnings: list[str]


class FeatureField(BaseModel):
    view: str
    feature: str
    description: str


class FeatureSet(BaseModel):
    name: str
    description: str
    tags: dict[str, str]
    features: list[FeatureField]


# ------------------------------------------------------------------ assets
class AssetInfo(BaseModel):
    """`warehouse.assets.get_asset()`: what an asset is, where, and its readings' native step."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_id": "zone1", "kind": "consumption", "capacity": None, "technology": None,
         "site_id": "tetouan", "timezone": "Africa/Casablanca", "latitude": None, "longitude": None,
         "step_minutes": 10}]})
    tenant_id: str
    asset_id: str
    kind: str = Field(description=" | ".join(ASSET_KINDS))
    capacity: float | None = Field(description="generation units: > 0, in the unit of the readings")
    technology: str | None = Field(description=" | ".join(TECHNOLOGIES) + " (generation units)")
    site_id: str | None = Field(description="the weather site")
    timezone: str = Field(description="IANA zone of the asset's calendar")
    latitude: float | None = Field(description="decimal degrees")
    longitude: float | None = Field(description="decimal degrees")
    step_minutes: int | None = Field(description="native step: minutes between readings, recorded by ingest (the "
                                                 "finest interval_minutes the asset forecasts at rolls up from it)")


# ------------------------------------------------------------------ models
class ModelInfo(BaseModel):
    """`registry.lifecycle.ModelInfo.as_dict()`."""
    id: str = Field(description="tenant:name:version")
    tenant: str
    name: str
    version: int
    stage: str = Field(description="none | staging | production | archived")
    model_type: str | None
    run_id: str | None
    created: int = Field(description="epoch ms")
    tags: dict[str, str]
    aliases: list[str]
    serving: bool = Field(description="what forecast/anomaly load now for tenant:name")
    validation: str | None
    metrics: dict[str, float | None]
    disagreement: str | None = Field(description="alias and stage tell different stories")
    updated: int | None = Field(description="epoch ms of MLflow's last update of the version")
