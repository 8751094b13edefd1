"""The AI Hub API: a thin HTTP layer over the SDK (inference.Client) and the registry's lifecycle.

`create_app(settings, verifier)` builds the FastAPI app; `ems serve` runs it on uvicorn. Every error
is JSON `{"code": ..., "message": ...}` with a stable code (the error's class, snake case) and the
message the SDK gives (it names the bad value); no stack trace leaves the service.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Annotated

import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from core.errors import (
    EmsError,
    FeaturesUnavailableError,
    InvalidArgumentError,
    InvalidSeriesError,
    TooManyJobsError,
    error_code,
)
from core.names import parse_model_id
from inference.accuracy import log_forecast
from inference.batch import check_loggable
from service import telemetry
from service.auth import AuthError, Caller, TokenVerifier
from service.schemas import (
    LIMITS,
    SDK_CALL,
    AnomalyRequest,
    AnomalyResponse,
    AssetInfo,
    AssetUpdate,
    BatchForecastRequest,
    BatchForecastResponse,
    ExplainRequest,
    ExplainResponse,
    FeatureSet,
    FeaturesRequest,
    FeaturesResponse,
    ForecastRequest,
    ForecastResponse,
    GlobalExplainRequest,
    GlobalExplainResponse,
    Health,
    ModelInfo,
    PromoteRequest,
    Readiness,
    Reading,
    errors,
)

logger = logging.getLogger("ems.api")
SERVICE = "ems-ai-hub"


def _series(readings: list[Reading] | None, name: str) -> pd.Series | None:
    if readings is None:
        return None
    stamps = [r.timestamp for r in readings]
    try:
        index = pd.DatetimeIndex(stamps)
    except ValueError as e:  # outside pandas' time range, or times with and without a UTC offset mixed
        reason, _, position = str(e).partition(", at position ")
        at = f" ({name}[{position}].timestamp = {stamps[int(position)].isoformat()})" if position.isdigit() else ""
        raise InvalidSeriesError(f"{name} is not a time series{at}: {reason}; use times between 1677 and 2262, "
                                 "all with a UTC offset or all without") from None
    return pd.Series([r.value for r in readings], index=index)


def _weather(hours) -> pd.DataFrame | None:
    """weather_forecast entries as a frame indexed by target hour (the SDK checks names, ranges and zones)."""
    if hours is None:
        return None
    frame = pd.DataFrame([h.model_dump(exclude_none=True) for h in hours])
    if frame.empty:
        return None
    stamps = frame.pop("timestamp")
    if any(t.tzinfo is None for t in stamps):
        raise InvalidArgumentError("weather_forecast: every timestamp needs a UTC offset (e.g. 2017-12-31T00:00:00Z)")
    frame.index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    return frame


# ------------------------------------------------------------------ errors
STATUS = ((PermissionError, 403), (LookupError, 404), (ValueError, 422))
UNAVAILABLE = ("ModelUnavailableError", "FeaturesUnavailableError", "DatabaseUnavailableError")


def _status(e: EmsError) -> int:
    if isinstance(e, AuthError):
        return e.status
    if type(e).__name__ in UNAVAILABLE:
        return 503
    if isinstance(e, TooManyJobsError):
        return 429
    return next((status for kind, status in STATUS if isinstance(e, kind)), 400)


# ------------------------------------------------------------------ app
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
    feature_age = Histogram("ems_api_feature_age_seconds", "age of a forecast's features (now - their hour's end)",
                            ["source"], registry=metrics,
                            buckets=(300, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400))
    model_cache = Counter("ems_api_model_cache", "model cache lookups by result (hit | miss)", ["result"],
                          registry=metrics)
    model_loads = Histogram("ems_api_model_load_seconds", "model loads from the registry (cache misses)",
                            registry=metrics, buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60))

    def cache_event(event: str, seconds: float) -> None:
        if event == "load":
            model_loads.observe(seconds)
        else:
            model_cache.labels(event).inc()

    if getattr(sdk, "models", None) is not None:
        sdk.models.observer = cache_event

    app.state.verifier = verifier
    bucket = _RateLimit(settings.api_rate_per_second, settings.api_rate_burst)

    def refused(code: str, message: str, status: int, headers: dict | None = None) -> JSONResponse:
        errors_total.labels(code).inc()
        return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)

    def limited(headers: dict[bytes, bytes], client) -> JSONResponse | None:
        """Request size and per-token rate limits (per worker), before any work is done."""
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > settings.api_max_body_bytes:
            return refused("request_too_large", f"request body of {length} bytes exceeds the limit of "
                           f"{settings.api_max_body_bytes} bytes", 413)
        caller = headers.get(b"authorization") or (client[0] if client else "-")
        wait = bucket.take(caller)
        if wait:
            return refused("rate_limited", f"more than {settings.api_rate_per_second:g} requests/s (burst "
                           f"{settings.api_rate_burst}) for this caller; retry in {wait:.2f} s", 429,
                           {"retry-after": str(max(1, round(wait)))})
        return None

    class Edge:
        """The service's edge as one plain ASGI middleware (a BaseHTTPMiddleware per concern costs a task
        and a stream copy per request each): request id, limits, metrics and the request's log line."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            headers = dict(scope["headers"])
            request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
            telemetry.start_request(request_id)
            t0, status = time.perf_counter(), [500]

            async def sending(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                await send(message)

            try:
                refusal = limited(headers, scope.get("client"))
                await (refusal or self.inner)(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                elapsed, method = time.perf_counter() - t0, scope["method"]
                requests_total.labels(route, method, str(status[0])).inc()
                latency.labels(route, method).observe(elapsed)
                logger.info("%s %s %s %.1f ms", method, route, status[0], elapsed * 1000,
                            extra={"method": method, "route": route, "status": status[0],
                                   "ms": round(elapsed * 1000, 2)})

    app.add_middleware(Edge)

    @app.exception_handler(EmsError)
    async def ems_error(request: Request, e: EmsError):
        errors_total.labels(error_code(e)).inc()
        return JSONResponse({"code": error_code(e), "message": str(e)}, status_code=_status(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors_total.labels("invalid_request").inc()
        parts = [f"body is not JSON at character {err['loc'][-1]}: {err.get('ctx', {}).get('error', err['msg'])}"
                 if err["type"] == "json_invalid" else
                 f"{'.'.join(str(x) for x in err['loc'][1:]) or 'body'}: {err['msg'].removeprefix('Value error, ')}"
                 + (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else "")
                 for err in e.errors()]
        return JSONResponse({"code": "invalid_request", "message": "; ".join(parts)}, status_code=422)

    @app.exception_handler(400)
    @app.exception_handler(404)
    @app.exception_handler(405)
    async def http_error(request: Request, e: Exception):
        """What FastAPI itself refuses, in the error body of every other error: a body it cannot parse
        (400), no route for the path (404) or for its method (405)."""
        status = getattr(e, "status_code", 404)
        code = {400: "invalid_request", 404: "not_found"}.get(status, "method_not_allowed")
        message = {400: f"the {request.headers.get('content-type', 'untyped')} body cannot be parsed "
                        f"({getattr(e, 'detail', e)})"}.get(status, f"no route {request.method} {request.url.path}")
        errors_total.labels(code).inc()
        return JSONResponse({"code": code, "message": message}, status_code=status, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        errors_total.labels("internal").inc()
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"code": "internal", "message": f"unexpected {type(e).__name__}; see the service log"},
                            status_code=500)

    # -------------------------------------------------------------- health
    @app.get("/health", tags=["service"], responses=errors(*LIMITS))
    def health() -> Health:
        """Liveness and the health of every dependency with its latency (no auth)."""
        checks = {name: _probe(fn) for name, fn in _probes(settings).items()}
        return {"status": "ok" if all(c["healthy"] for c in checks.values()) else "degraded",
                "service": SERVICE, "version": _version(), "timestamp": datetime.now(UTC).isoformat(),
                "environment": settings.environment, "dependencies": checks}

    @app.get("/ready", tags=["service"], response_model=Readiness,
             responses={503: {"model": Readiness, "description": "a dependency does not answer"}, **errors(*LIMITS)})
    def ready():
        """200 once Postgres, Redis and MLflow answer; 503 otherwise (for orchestrators)."""
        probes = _probes(settings)
        down = [name for name in ("postgres", "redis", "mlflow") if not _probe(probes[name])["healthy"]]
        body = {"ready": not down, "down": down}
        return JSONResponse(body, status_code=503 if down else 200)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse, responses=errors(*LIMITS))
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
    async def run(call, warm: bool):
        """`call` on the event loop when it reads only memory and Redis (`Client.warm`: a hop to a thread
        would cost more than the call), else in the thread pool (a registry lookup, a model load or a
        warehouse query must not hold the loop)."""
        return call() if warm else await run_in_threadpool(call)

    @app.post("/ai/forecast", tags=["inference"], responses=errors(*SDK_CALL))
    async def forecast(body: ForecastRequest, caller: Caller) -> ForecastResponse:
        """Hourly point and p10/p50/p90 forecasts of one asset's load, with the model and features used."""
        caller.require("forecaster", body.tenant_id)
        if body.log:  # before forecasting: the log holds hourly rows only
            check_loggable(body.interval_minutes)
        history = _series(body.historical_data, "historical_data")
        if body.log and history is not None:
            raise InvalidArgumentError("log: a forecast from historical_data has no stored asset to score it against; "
                                       "log forecasts of stored assets only")
        call = partial(sdk.forecast, body.tenant_id, body.asset_id, horizon=body.horizon_hours,
                       quantiles=body.include_quantiles, model=body.model_name, history=history,
                       timezone=body.timezone, overrides=body.features, forecast_type=body.forecast_type,
                       weather_forecast=_weather(body.weather_forecast), interval_minutes=body.interval_minutes)
        warm = history is None and body.weather_forecast is None and body.interval_minutes == 60 and sdk.warm(
            body.tenant_id, [body.asset_id], forecast=True, model=body.model_name, quantiles=body.include_quantiles,
            forecast_type=body.forecast_type)
        result = await run(call, warm)
        if body.log:
            await run_in_threadpool(log_forecast, sdk.settings, result)
        feature_source.labels(result.source).inc()
        feature_age.labels(result.source).observe(result.feature_age_seconds)
        return {"forecast_id": uuid.uuid4().hex, "forecast_type": body.forecast_type,
                "interval_minutes": body.interval_minutes, **result.to_dict()}

    @app.post("/ai/forecast/batch", tags=["inference"], responses=errors(*SDK_CALL))
    def forecast_batch(body: BatchForecastRequest, caller: Caller) -> BatchForecastResponse:
        """Forecasts of many assets of one tenant (a portfolio plan) at `interval_minutes`, each as `/ai/forecast`
        gives it; an asset that fails (e.g. readings coarser than the interval) is listed in `errors` with its
        code and message, the others still forecast."""
        caller.require("forecaster", body.tenant_id)
        if body.log:  # before any asset: the log holds hourly rows only
            check_loggable(body.interval_minutes)
        results, failed = [], []
        for asset in dict.fromkeys(body.asset_ids):
            try:
                result = sdk.forecast(body.tenant_id, asset, horizon=body.horizon_hours,
                                      quantiles=body.include_quantiles, model=body.model_name,
                                      forecast_type=body.forecast_type, interval_minutes=body.interval_minutes)
            except EmsError as e:
                failed.append({"asset_id": asset, "code": error_code(e), "message": str(e)})
                continue
            if body.log:
                log_forecast(sdk.settings, result)
            feature_source.labels(result.source).inc()
            feature_age.labels(result.source).observe(result.feature_age_seconds)
            results.append(result.to_dict())
        return {"forecast_id": uuid.uuid4().hex, "forecast_type": body.forecast_type,
                "interval_minutes": body.interval_minutes, "forecasts": results, "errors": failed}

    @app.post("/ai/anomaly", tags=["inference"], responses=errors(*SDK_CALL))
    def anomaly(body: AnomalyRequest, caller: Caller) -> AnomalyResponse:
        """Hours scored by the tenant's production anomaly model (or a caller-supplied series)."""
        caller.require("anomaly_analyst", body.tenant_id)
        result = sdk.detect_anomalies(body.tenant_id, body.asset_id, start=body.start, end=body.end,
                                      series=_series(body.series, "series"), method=body.method,
                                      sensitivity=body.sensitivity, lookback_hours=body.lookback_hours,
                                      timezone=body.timezone)
        return result.to_dict()

    @app.post("/ai/explain", tags=["inference"], responses=errors(*SDK_CALL))
    def explain(body: ExplainRequest, caller: Caller) -> ExplainResponse:
        """SHAP contributions to one forecast hour, with the sentence the SDK writes."""
        caller.require("forecaster", body.tenant_id)
        return sdk.explain(body.tenant_id, body.asset_id, horizon=body.horizon_hours, model=body.model_name).to_dict()

    @app.post("/ai/explain/global", tags=["inference"], responses=errors(*SDK_CALL))
    def explain_global(body: GlobalExplainRequest, caller: Caller) -> GlobalExplainResponse:
        """A model's global feature ranking (mean |SHAP| on its training holdout)."""
        caller.require("forecaster", parse_model_id(body.model_id).tenant)
        return sdk.explain_global(body.model_id).to_dict()

    # -------------------------------------------------------------- features
    @app.post("/ai/features/get", tags=["features"], responses=errors(*SDK_CALL))
    async def features_get(body: FeaturesRequest, caller: Caller) -> FeaturesResponse:
        """A feature service's values for some assets: without `timestamp` the online ones now, with a
        warning per asset whose online row trails its latest reading; with `timestamp` the values as they
        were at that time (a point-in-time read of the offline store)."""
        from warehouse.point_in_time import features_at
        from warehouse.store import latest_feature_time

        caller.require("ai_user", body.tenant_id)
        tenant, assets, service = body.tenant_id, body.asset_ids, body.feature_service

        def offline(at, warnings: list[str]) -> dict:
            frame = features_at(settings, sdk.store, service, tenant, assets, at)
            return {"feature_service": service, "source": "offline", "warnings": warnings,
                    "rows": json.loads(frame.to_json(orient="records", date_format="iso"))}

        if body.timestamp is not None:
            return await run_in_threadpool(offline, body.timestamp, [])
        try:
            rows, warnings = await run(partial(sdk.online_features, tenant, assets, service),
                                       sdk.warm(tenant, assets))
        except FeaturesUnavailableError as e:  # Redis down: the offline store's latest values, said so
            warning = f"{e}; values read from the offline store at each asset's latest feature time"

            def fallback() -> dict:
                latest = latest_feature_time(settings, tenant, assets)
                return offline({a: latest[a] or datetime.now(UTC) for a in assets}, [warning])

            return await run_in_threadpool(fallback)
        return {"feature_service": service, "source": "online", "rows": rows, "warnings": warnings}

    @app.get("/ai/features/sets", tags=["features"], responses=errors(*SDK_CALL))
    def feature_sets(caller: Caller) -> list[FeatureSet]:
        """Feature services in the Feast registry with their features and descriptions."""
        caller.require("ai_user")
        out = []
        for service in sorted(sdk.store.list_feature_services(), key=lambda s: s.name):
            features = [{"view": p.name, "feature": f.name, "description": f.description or ""}
                        for p in service.feature_view_projections for f in p.features]
            out.append({"name": service.name, "description": service.description or "",
                        "tags": dict(service.tags), "features": features})
        return out

    # -------------------------------------------------------------- assets
    def _tenant(tenant_id: str | None, caller) -> str:
        tenant = tenant_id or caller.tenant
        if tenant is None:  # auth off: no token names a tenant
            raise InvalidArgumentError("tenant_id is required when the service runs without auth (no token names "
                                       "a tenant)")
        return tenant

    @app.get("/ai/assets", tags=["assets"], responses=errors(*SDK_CALL))
    def assets(caller: Caller, tenant_id: str | None = None) -> list[AssetInfo]:
        """The tenant's assets (default the token's): kind, capacity, technology, site, time zone, position and
        native step, as `ems assets list` shows them."""
        from warehouse.assets import list_assets

        tenant = _tenant(tenant_id, caller)
        caller.require("ai_user", tenant)
        frame = list_assets(settings, tenant).assign(tenant_id=tenant)
        return json.loads(frame.to_json(orient="records"))

    @app.get("/ai/assets/{asset_id}", tags=["assets"], responses=errors(*SDK_CALL))
    def asset(asset_id: str, caller: Caller, tenant_id: str | None = None) -> AssetInfo:
        """One asset of the tenant (default the token's)."""
        from warehouse.assets import get_asset

        tenant = _tenant(tenant_id, caller)
        caller.require("ai_user", tenant)
        return {"tenant_id": tenant, **get_asset(settings, tenant, asset_id)}

    @app.put("/ai/assets/{asset_id}", tags=["assets"], responses=errors(*SDK_CALL))
    def set_asset(asset_id: str, body: AssetUpdate, caller: Caller) -> AssetInfo:
        """Say what an ingested asset is (and where), as `ems assets set`: the same checks and messages, all
        before one write; the asset as stored afterwards."""
        from warehouse.assets import get_asset, set_kind

        caller.require("model_admin", body.tenant_id)
        set_kind(settings, body.tenant_id, asset_id, body.kind, body.capacity, body.technology, body.latitude,
                 body.longitude)
        return {"tenant_id": body.tenant_id, **get_asset(settings, body.tenant_id, asset_id)}

    # -------------------------------------------------------------- models
    @app.get("/ai/models", tags=["models"], responses=errors(*SDK_CALL))
    def models(caller: Caller, tenant_id: str | None = None, name: str | None = None,
               stage: str | None = None) -> list[ModelInfo]:
        """Versions of a tenant's models: whether each serves, stage and aliases, validation, metrics."""
        tenant = tenant_id or caller.tenant
        caller.require("ai_user", tenant)
        found = lifecycle.list_models(registry, tenant)
        return [m.as_dict() for m in found if (name is None or m.name == name) and (stage is None or m.stage == stage)]

    @app.get("/ai/models/{model_id}", tags=["models"], responses=errors(*SDK_CALL))
    def model(model_id: str, caller: Caller) -> ModelInfo:
        caller.require("ai_user", parse_model_id(model_id).tenant)
        return lifecycle.show(registry, model_id).as_dict()

    @app.put("/ai/models/{model_id}/promote", tags=["models"], responses=errors(*SDK_CALL))
    def promote(model_id: str, body: PromoteRequest, caller: Caller) -> ModelInfo:
        """The same lifecycle rules as `ems models promote` (alias and stage together, --force, audit tags)."""
        caller.require("model_admin", parse_model_id(model_id).tenant)
        return lifecycle.promote(registry, model_id, body.to, force=body.force,
                                 reason=body.reason or f"via the API by {caller.subject}").as_dict()

    @app.delete("/ai/models/{model_id}", tags=["models"], responses=errors(*SDK_CALL))
    def delete(model_id: str, caller: Caller, force: Annotated[bool, Query()] = False) -> ModelInfo:
        caller.require("model_admin", parse_model_id(model_id).tenant)
        return lifecycle.delete(registry, model_id, force=force).as_dict()

    # -------------------------------------------------------------- jobs (trainings, exports)
    from service.jobs import router as job_router

    app.include_router(job_router(settings, lambda: sdk.store), responses=errors(*SDK_CALL))
    telemetry.instrument(app, settings, _version())  # traces when OTEL_EXPORTER_OTLP_ENDPOINT is set

    return app


class _RateLimit:
    """A token bucket per caller: `rate` requests per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        from cachetools import TTLCache

        self.rate, self.burst = rate, burst
        self._buckets: TTLCache = TTLCache(maxsize=100_000, ttl=max(60.0, burst / rate if rate else 60.0),
                                           timer=time.monotonic)

    def take(self, caller: str) -> float:
        """0 if a request may go now (and count it), else the seconds until one may."""
        now = time.monotonic()
        tokens, then = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate else 60.0
        self._buckets[caller] = (tokens - 1, now)
        return 0.0


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
        redis_lib.Redis(host=address.host, port=address.port, username=address.username,
                        password=address.password, socket_timeout=2,
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

    logging.captureWarnings(True)  # library warnings become JSON log lines too (telemetry.log_config)
    settings = Settings()
    verifier = TokenVerifier(settings.api_jwks_url, settings.api_audience, settings.api_issuer) \
        if settings.api_jwks_url else None
    return create_app(settings, verifier)
