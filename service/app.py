"""The AI Hub API: a thin HTTP layer over the SDK (inference.Client) and the registry's lifecycle.

`create_app(settings, verifier)` builds the FastAPI app; `ems serve` runs it on uvicorn. Every error
is JSON `{"code": ..., "message": ...}` with a stable code (the error's class, snake case) and the
message the SDK gives (it names the bad value); no stack trace leaves the service.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

import pandas as pd
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import EmsError
from core.names import DETECT_METHODS, parse_model_id
from service.auth import ANONYMOUS, AuthError, Principal, TokenVerifier

logger = logging.getLogger("ems.api")
SERVICE = "ems-ai-hub"
FORECAST_TYPES = ("load",)  # generation and price come with their forecasters
INTERVALS = (60,)  # minutes; 15 and 30 come with sub-hourly features


# ------------------------------------------------------------------ requests
class Reading(BaseModel):
    timestamp: datetime
    value: float


class ForecastRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "asset_id": "zone1", "forecast_type": "load", "horizon_hours": 24,
         "interval_minutes": 60, "include_quantiles": True}]})
    tenant_id: str
    asset_id: str
    forecast_type: str = "load"
    horizon_hours: int = Field(24, description="1-168")
    interval_minutes: int = 60
    include_quantiles: bool = True
    model_name: str | None = Field(None, description="model name (its production version) or id tenant:name:version")
    historical_data: list[Reading] | None = Field(None, description="history of an asset the store does not know")
    timezone: str = Field("UTC", description="IANA zone of historical_data's calendar")

    @field_validator("forecast_type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in FORECAST_TYPES:
            raise ValueError(f"forecast_type {value!r} is not supported yet; supported: {', '.join(FORECAST_TYPES)}")
        return value

    @field_validator("interval_minutes")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value not in INTERVALS:
            raise ValueError(f"interval_minutes {value} is not supported yet; supported: "
                             f"{', '.join(map(str, INTERVALS))}")
        return value


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


class PromoteRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"to": "production", "reason": "beats v3"}]})
    to: str = Field(description="staging | production | archived")
    reason: str | None = None
    force: bool = False


def _series(readings: list[Reading] | None) -> pd.Series | None:
    if readings is None:
        return None
    return pd.Series([r.value for r in readings], index=pd.DatetimeIndex([r.timestamp for r in readings]))


# ------------------------------------------------------------------ errors
STATUS = ((PermissionError, 403), (LookupError, 404), (ValueError, 422))
UNAVAILABLE = ("ModelUnavailableError", "FeaturesUnavailableError")


def _code(e: Exception) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__.removesuffix("Error")).lower() or "error"


def _status(e: EmsError) -> int:
    if isinstance(e, AuthError):
        return e.status
    if type(e).__name__ in UNAVAILABLE:
        return 503
    return next((status for kind, status in STATUS if isinstance(e, kind)), 400)


# ------------------------------------------------------------------ app
def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller named by the bearer token (ANONYMOUS with auth off)."""
    verifier = request.app.state.verifier
    return ANONYMOUS if verifier is None else verifier.principal(authorization)


Caller = Annotated[Principal, Depends(principal)]


def create_app(settings, verifier: TokenVerifier | None = None, client=None) -> FastAPI:
    """The API over `settings`' stack; `verifier` None = auth off (only `ems serve` on loopback allows it)."""
    from inference.client import Client
    from registry import lifecycle

    app = FastAPI(title="EMS AI Hub API", version=_version(),
                  description="Forecast, anomaly and explanation calls over the feature store and the model "
                              "registry. Bearer JWTs (RS256) name the tenant and roles.")
    sdk = client or Client(settings, model_ttl_seconds=settings.api_model_ttl_seconds)
    registry = lifecycle.client(settings.mlflow_tracking_uri)
    metrics = CollectorRegistry()
    requests_total = Counter("ems_api_requests", "HTTP requests", ["route", "method", "status"], registry=metrics)
    latency = Histogram("ems_api_request_seconds", "HTTP request latency", ["route", "method"], registry=metrics,
                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    errors_total = Counter("ems_api_errors", "errors by code", ["code"], registry=metrics)
    feature_source = Counter("ems_api_feature_source", "forecasts by feature source", ["source"], registry=metrics)

    app.state.verifier = verifier
    @app.middleware("http")
    async def observe(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - t0
        requests_total.labels(route, request.method, str(response.status_code)).inc()
        latency.labels(route, request.method).observe(elapsed)
        response.headers["x-request-id"] = request_id
        logger.info(json.dumps({"request_id": request_id, "method": request.method, "route": route,
                                "status": response.status_code, "ms": round(elapsed * 1000, 2)}))
        return response

    @app.exception_handler(EmsError)
    async def ems_error(request: Request, e: EmsError):
        errors_total.labels(_code(e)).inc()
        return JSONResponse({"code": _code(e), "message": str(e)}, status_code=_status(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors_total.labels("invalid_request").inc()
        parts = [f"{'.'.join(str(x) for x in err['loc'][1:]) or 'body'}: {err['msg'].removeprefix('Value error, ')}"
                 + (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else "")
                 for err in e.errors()]
        return JSONResponse({"code": "invalid_request", "message": "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        errors_total.labels("internal").inc()
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"code": "internal", "message": f"unexpected {type(e).__name__}; see the service log"},
                            status_code=500)

    # -------------------------------------------------------------- health
    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness and the health of every dependency with its latency (no auth)."""
        checks = {name: _probe(fn) for name, fn in _probes(settings).items()}
        return {"status": "ok" if all(c["healthy"] for c in checks.values()) else "degraded",
                "service": SERVICE, "version": _version(), "timestamp": datetime.now(UTC).isoformat(),
                "environment": settings.environment, "dependencies": checks}

    @app.get("/ready", tags=["service"])
    def ready():
        """200 once Postgres, Redis and MLflow answer; 503 otherwise (for orchestrators)."""
        probes = _probes(settings)
        down = [name for name in ("postgres", "redis", "mlflow") if not _probe(probes[name])["healthy"]]
        body = {"ready": not down, "down": down}
        return JSONResponse(body, status_code=503 if down else 200)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        """Prometheus metrics; with several workers (PROMETHEUS_MULTIPROC_DIR, set by `ems serve`) summed
        over all of them."""
        shown = metrics
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            shown = CollectorRegistry()
            multiprocess.MultiProcessCollector(shown)
        return PlainTextResponse(generate_latest(shown).decode(), media_type=CONTENT_TYPE_LATEST)

    # -------------------------------------------------------------- inference
    @app.post("/ai/forecast", tags=["inference"])
    def forecast(body: ForecastRequest, caller: Caller) -> dict:
        """Hourly point and p10/p50/p90 forecasts of one asset's load, with the model and features used."""
        caller.require("forecaster", body.tenant_id)
        result = sdk.forecast(body.tenant_id, body.asset_id, horizon=body.horizon_hours,
                              quantiles=body.include_quantiles, model=body.model_name,
                              history=_series(body.historical_data), timezone=body.timezone)
        feature_source.labels(result.source).inc()
        return {"forecast_id": uuid.uuid4().hex, "forecast_type": body.forecast_type,
                "interval_minutes": body.interval_minutes, **result.to_dict()}

    @app.post("/ai/anomaly", tags=["inference"])
    def anomaly(body: AnomalyRequest, caller: Caller) -> dict:
        """Hours scored by the tenant's production anomaly model (or a caller-supplied series)."""
        caller.require("anomaly_analyst", body.tenant_id)
        result = sdk.detect_anomalies(body.tenant_id, body.asset_id, start=body.start, end=body.end,
                                      series=_series(body.series), method=body.method, sensitivity=body.sensitivity,
                                      lookback_hours=body.lookback_hours, timezone=body.timezone)
        return result.to_dict()

    @app.post("/ai/explain", tags=["inference"])
    def explain(body: ExplainRequest, caller: Caller) -> dict:
        """SHAP contributions to one forecast hour, with the sentence the SDK writes."""
        caller.require("forecaster", body.tenant_id)
        return sdk.explain(body.tenant_id, body.asset_id, horizon=body.horizon_hours, model=body.model_name).to_dict()

    @app.post("/ai/explain/global", tags=["inference"])
    def explain_global(body: GlobalExplainRequest, caller: Caller) -> dict:
        """A model's global feature ranking (mean |SHAP| on its training holdout)."""
        caller.require("forecaster", parse_model_id(body.model_id).tenant)
        return sdk.explain_global(body.model_id).to_dict()

    # -------------------------------------------------------------- models
    @app.get("/ai/models", tags=["models"])
    def models(caller: Caller, tenant_id: str | None = None, name: str | None = None,
               stage: str | None = None) -> list[dict]:
        """Versions of a tenant's models: whether each serves, stage and aliases, validation, metrics."""
        tenant = tenant_id or caller.tenant
        caller.require("ai_user", tenant)
        found = lifecycle.list_models(registry, tenant)
        return [m.as_dict() for m in found if (name is None or m.name == name) and (stage is None or m.stage == stage)]

    @app.get("/ai/models/{model_id}", tags=["models"])
    def model(model_id: str, caller: Caller) -> dict:
        caller.require("ai_user", parse_model_id(model_id).tenant)
        return lifecycle.show(registry, model_id).as_dict()

    @app.put("/ai/models/{model_id}/promote", tags=["models"])
    def promote(model_id: str, body: PromoteRequest, caller: Caller) -> dict:
        """The same lifecycle rules as `ems models promote` (alias and stage together, --force, audit tags)."""
        caller.require("model_admin", parse_model_id(model_id).tenant)
        return lifecycle.promote(registry, model_id, body.to, force=body.force,
                                 reason=body.reason or f"via the API by {caller.subject}").as_dict()

    @app.delete("/ai/models/{model_id}", tags=["models"])
    def delete(model_id: str, caller: Caller, force: Annotated[bool, Query()] = False) -> dict:
        caller.require("model_admin", parse_model_id(model_id).tenant)
        return lifecycle.delete(registry, model_id, force=force).as_dict()

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ems-ai-hub")
    except PackageNotFoundError:
        return "0+unknown"


def _probes(settings) -> dict:
    def postgres():
        from warehouse.db import connect

        with connect(settings) as conn:
            conn.execute("SELECT 1")

    def redis():
        import redis as redis_lib

        address = settings.redis
        redis_lib.Redis(host=address.host, port=address.port, password=address.password, socket_timeout=2,
                        socket_connect_timeout=2).ping()

    def s3():
        import boto3
        from botocore.config import Config

        boto3.client("s3", endpoint_url=settings.s3_endpoint_url, aws_access_key_id=settings.s3_access_key,
                     aws_secret_access_key=settings.s3_secret_key, region_name=settings.s3_region,
                     config=Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
                     ).head_bucket(Bucket=settings.s3_bucket)

    def mlflow():
        import requests

        requests.get(f"{settings.mlflow_tracking_uri.rstrip('/')}/health", timeout=2).raise_for_status()

    return {"postgres": postgres, "redis": redis, "s3": s3, "mlflow": mlflow}


def _probe(fn) -> dict:
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as e:  # a probe reports any failure as unhealthy, with its kind
        return {"healthy": False, "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
                "error": f"{type(e).__name__}: {str(e)[:200]}"}
    return {"healthy": True, "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}


def app_from_environment() -> FastAPI:
    """uvicorn's factory for `ems serve` (each worker builds its app from the same environment)."""
    from core.settings import Settings

    settings = Settings()
    verifier = TokenVerifier(settings.api_jwks_url, settings.api_audience, settings.api_issuer) \
        if settings.api_jwks_url else None
    return create_app(settings, verifier)
