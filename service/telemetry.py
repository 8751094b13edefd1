"""What the AI Hub service tells operators besides its answers: OpenTelemetry traces and JSON logs.

Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, each worker
process gets a TracerProvider that batches spans to that OTLP/HTTP endpoint (the exporter reads the
other standard `OTEL_EXPORTER_OTLP_*` variables itself: headers, timeout, ...). A request's server span
has child spans for its Postgres queries, Redis commands and HTTP calls (MLflow's client uses
requests). Spans are recorded under a request only: a Postgres query or HTTP call outside one (the
exporter's own calls, background threads) starts no trace, and `/ready` probes and `/metrics` scrapes
are not traced (`OTEL_TRACES_SAMPLER` and `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS` override both). Without
the variable nothing of OpenTelemetry is imported or patched.

Logs: every line is one JSON object (`JsonFormatter`): timestamp, level, logger, message, the request
id of the request being handled, trace_id/span_id when tracing is on, and a record's `extra=` fields.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime

SERVICE = "ems-ai-hub"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
UNTRACED_URLS = "/ready$,/metrics$"  # probes and scrapes: many, and not what a trace is for
OUR_LOGGERS = ("ems", "core", "warehouse", "stack", "registry", "evaluation", "inference", "service")

request_id: ContextVar[str | None] = ContextVar("ems_request_id", default=None)
_provider = None  # this process's TracerProvider once `instrument` has set tracing up


def tracing_configured(environ=os.environ) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def instrument(app, settings, version: str) -> None:
    """Trace `app`'s requests and their Postgres, Redis and HTTP calls when an OTLP endpoint is
    configured (else do nothing). Called in each worker process, from the app factory; the app's
    shutdown flushes the spans still queued."""
    if not tracing_configured():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    provider = _tracer_provider(settings, version)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"],
                                       excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
                                                                    UNTRACED_URLS))
    _flush_on_shutdown(app, provider)


def _tracer_provider(settings, version: str):
    """The process's TracerProvider (made once; the library instrumentations are process-wide)."""
    global _provider
    if _provider is not None:
        return _provider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": SERVICE, "service.version": version,
                                "deployment.environment": settings.environment})
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else _requests_only()
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return provider


def _requests_only():
    """Sample a trace that starts at a server span (a request) or comes with the caller's sampled
    parent; a client span with no parent (a query outside any request) is dropped."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class ServerRoots(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            if kind == SpanKind.SERVER:
                return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return "ServerRoots"

    return ParentBased(root=ServerRoots())


def _flush_on_shutdown(app, provider) -> None:
    """Wrap the app's lifespan so that its end exports the spans still in the batch."""
    from contextlib import asynccontextmanager

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_):
        try:
            async with inner(app_) as state:
                yield state
        finally:
            provider.force_flush()

    app.router.lifespan_context = lifespan


def _current_span_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return (format(context.trace_id, "032x"), format(context.span_id, "016x")) if context.is_valid else None


# ------------------------------------------------------------------ logs
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "color_message", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC, ISO 8601), level, logger, message, request_id while a
    request is handled, trace_id and span_id inside a traced span, `extra=` fields, and `exception`
    (the formatted traceback) for `logger.exception`."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        current = request_id.get()
        if current is not None:
            doc["request_id"] = current
        if _provider is not None and (ids := _current_span_ids()):
            doc["trace_id"], doc["span_id"] = ids
        doc.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            doc["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=str)


def log_config(level: str = "info") -> dict:
    """`logging.config.dictConfig` for the service (uvicorn's `log_config`, applied in every worker):
    every logger writes JSON lines to stderr; ours (`ems.*` and our packages') and uvicorn's at `level`,
    libraries' warnings and up. uvicorn's access line is off: `ems.api` writes one per request, with its id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {**{name: {"level": level.upper()} for name in (*OUR_LOGGERS, "uvicorn", "uvicorn.error")},
                    "uvicorn.access": {"level": "WARNING"}, "py.warnings": {"level": "WARNING"}},
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def start_request(value: str) -> None:
    """Mark the current request's logs (and its server span, when traced) with its id. Each request
    runs in its own task, whose context copy ends with it, so nothing needs resetting."""
    request_id.set(value)
    if _provider is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("ems.request_id", value)
