"""The service's JSON log lines and when tracing is on, without a server."""

from __future__ import annotations

import contextvars
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from service import telemetry


def _line(*args, exc_info=None, extra=None, name="ems.api", level=logging.INFO) -> dict:
    record = logging.getLogger(name).makeRecord(name, level, "app.py", 1, args[0], args[1:], exc_info, extra=extra)
    text = telemetry.JsonFormatter().format(record)
    assert "\n" not in text  # one line per record, tracebacks included
    return json.loads(text)


def test_a_line_is_one_json_object_with_the_message_formatted():
    doc = _line("loaded %s in %.1f s", "t:load_forecaster:3", 1.25)
    assert doc.keys() == {"timestamp", "level", "logger", "message"}
    assert (doc["level"], doc["logger"], doc["message"]) == ("INFO", "ems.api", "loaded t:load_forecaster:3 in 1.2 s")
    assert doc["timestamp"].endswith("+00:00") and "T" in doc["timestamp"]


def test_a_line_written_while_handling_a_request_carries_its_id():
    def handle() -> dict:
        telemetry.start_request("req-42")
        return _line("POST %s %s", "/ai/forecast", 200, extra={"route": "/ai/forecast", "status": 200, "ms": 3.5})

    doc = contextvars.copy_context().run(handle)
    assert doc["request_id"] == "req-42"
    assert doc["message"] == "POST /ai/forecast 200"
    assert (doc["route"], doc["status"], doc["ms"]) == ("/ai/forecast", 200, 3.5)
    assert "request_id" not in _line("outside any request")  # the id stayed in the request's context


def test_an_exception_is_kept_in_the_line_and_uvicorns_color_copy_is_not():
    try:
        raise ValueError("horizon=0 is out of range 1..168")
    except ValueError as e:
        doc = _line("unexpected error on %s", "/ai/forecast", exc_info=(type(e), e, e.__traceback__),
                    extra={"color_message": "\x1b[1munexpected\x1b[0m"}, level=logging.ERROR)
    assert doc["level"] == "ERROR" and "color_message" not in doc
    assert doc["exception"].startswith("Traceback") and doc["exception"].endswith("horizon=0 is out of range 1..168")


def test_trace_and_span_ids_appear_inside_a_span_once_tracing_is_set_up(monkeypatch):
    provider = TracerProvider()
    with provider.get_tracer(__name__).start_as_current_span("request") as span:
        assert "trace_id" not in _line("tracing off")  # no OpenTelemetry work without an endpoint
        monkeypatch.setattr(telemetry, "_provider", provider)
        doc = _line("tracing on")
    ids = span.get_span_context()
    assert (doc["trace_id"], doc["span_id"]) == (f"{ids.trace_id:032x}", f"{ids.span_id:016x}")
    assert "trace_id" not in _line("after the span")


def test_tracing_is_configured_by_either_standard_endpoint_variable():
    assert not telemetry.tracing_configured({})
    assert not telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})


def test_the_log_config_sends_every_logger_through_the_json_formatter():
    config = telemetry.log_config("info")
    assert config["root"]["handlers"] == ["json"] and config["handlers"]["json"]["formatter"] == "json"
    assert config["formatters"]["json"]["()"] == "service.telemetry.JsonFormatter"
    assert all("handlers" not in logger and logger.get("propagate", True) for logger in config["loggers"].values())
    assert {config["loggers"][name]["level"] for name in ("ems", "inference", "registry", "uvicorn")} == {"INFO"}
    assert config["loggers"]["uvicorn.access"]["level"] == "WARNING"  # ems.api writes the request's line


def test_without_an_endpoint_the_app_is_left_uninstrumented(monkeypatch):
    from fastapi import FastAPI

    for name in telemetry.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    app = FastAPI()
    telemetry.instrument(app, settings=None, version="0")  # settings are only read to trace
    assert telemetry._provider is None and not getattr(app, "_is_instrumented_by_opentelemetry", False)
