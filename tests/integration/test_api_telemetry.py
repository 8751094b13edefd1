"""The AI Hub API's traces and logs: `ems serve` (two workers) exports its spans by OTLP/HTTP to a
receiver the test runs on loopback, and writes JSON log lines carrying the request id and trace id.

The spans are read after the service has stopped: the shutdown must flush what the batch still holds."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from registry import lifecycle
from tests.helpers.api import Keys, call, jwks_server, serving, trained_tenant
from tests.helpers.stack import TEST_PORTS

pytestmark = pytest.mark.integration

TENANT = "otel-a"
API_PORT = TEST_PORTS["mlflow"] + 8
JWKS_PORT = TEST_PORTS["mlflow"] + 9
OTLP_PORT = TEST_PORTS["mlflow"] + 10
REQUEST_ID = "otel-test-request-1"


def _value(any_value):
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


@contextlib.contextmanager
def otlp_receiver(port: int) -> Iterator[list[dict]]:
    """An OTLP/HTTP trace receiver on loopback `port`; yields the list every exported span is appended
    to, as a dict: trace_id, span_id, parent (hex), name, kind, attributes, resource (attributes)."""
    spans: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest.FromString(body)
            with lock:
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        spans.extend({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                      "parent": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                                      "attributes": {a.key: _value(a.value) for a in s.attributes},
                                      "resource": resource} for s in scope_spans.spans)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield spans
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(stack, store, env, tmp_path_factory):
    """A promoted forecaster, `ems serve` with OTEL_EXPORTER_OTLP_ENDPOINT set, a forecast call with an
    x-request-id then two more, /metrics; the service stopped. Returns (response, spans received, the
    service's log lines, the metrics text)."""
    tmp = tmp_path_factory.mktemp("otel")
    trained = trained_tenant(stack, store, env, tmp, TENANT, "tet-otel", "2017-06-01", "2017-06-29")
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)
    keys = Keys()
    api_env = {**os.environ, **env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_PORT}"}
    with jwks_server(keys, JWKS_PORT) as jwks, otlp_receiver(OTLP_PORT) as spans:
        with serving(api_env, API_PORT, tmp / "serve.log", jwks_url=jwks) as base:
            # TTL 0 (serving): the call resolves the production version in MLflow, over HTTP.
            response = call("POST", f"{base}/ai/forecast", keys.token(TENANT, ["forecaster"]),
                            headers={"x-request-id": REQUEST_ID},
                            json={"tenant_id": TENANT, "asset_id": "zone1", "horizon_hours": 6})
            for _ in range(2):  # of three calls to two workers, two reach the same one: a cache hit
                again = call("POST", f"{base}/ai/forecast", keys.token(TENANT, ["forecaster"]),
                             json={"tenant_id": TENANT, "asset_id": "zone1", "horizon_hours": 6})
                assert again.status_code == 200, again.text
            metrics = call("GET", f"{base}/metrics").text
        received = list(spans)  # the service has stopped: its shutdown flushed the batch
    return response, received, (tmp / "serve.log").read_text().splitlines(), metrics


def _server_span(spans: list[dict]) -> dict:
    found = [s for s in spans if s["kind"] == Span.SPAN_KIND_SERVER and s["attributes"].get("ems.request_id")
             == REQUEST_ID]
    assert len(found) == 1, [(s["name"], s["attributes"]) for s in spans if s["kind"] == Span.SPAN_KIND_SERVER]
    return found[0]


def _under(span: dict, ancestor: dict, by_id: dict[str, dict]) -> bool:
    while span["parent"]:
        if span["parent"] == ancestor["span_id"]:
            return True
        span = by_id.get(span["parent"], {"parent": ""})
    return False


def test_a_forecast_is_one_trace_with_postgres_redis_and_mlflow_spans_under_its_server_span(served):
    response, spans, _, _ = served
    assert response.status_code == 200 and response.headers["x-request-id"] == REQUEST_ID, response.text
    server = _server_span(spans)
    assert server["name"] == "POST /ai/forecast" and server["attributes"].get("http.route") == "/ai/forecast"
    assert server["resource"]["service.name"] == "ems-ai-hub" and server["resource"]["service.version"]
    assert server["resource"]["deployment.environment"] == os.environ.get("EMS_ENVIRONMENT", "local")

    trace = [s for s in spans if s["trace_id"] == server["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}
    clients = [s for s in trace if s["kind"] == Span.SPAN_KIND_CLIENT]
    assert clients and all(_under(s, server, by_id) for s in clients)

    def system(s: dict) -> str | None:
        return s["attributes"].get("db.system") or s["attributes"].get("db.system.name")

    def url(s: dict) -> str:
        return str(s["attributes"].get("http.url") or s["attributes"].get("url.full") or "")

    assert any(system(s) == "postgresql" for s in clients), [s["name"] for s in clients]
    assert any(system(s) == "redis" for s in clients), [s["name"] for s in clients]
    mlflow = f"127.0.0.1:{TEST_PORTS['mlflow']}/api/"
    assert any(mlflow in url(s) for s in clients), [url(s) for s in clients]


def test_only_requests_start_traces(served):
    """/ready probes (polled while the service starts) are not traced, and no query or HTTP call outside
    a request (the exporter's own, background threads) starts a trace of its own."""
    _, spans, _, _ = served
    roots = [s for s in spans if not s["parent"]]
    assert roots and all(s["kind"] == Span.SPAN_KIND_SERVER for s in roots), [(s["name"], s["kind"]) for s in roots]
    assert not [s for s in roots if s["attributes"].get("http.route") == "/ready"]


def test_every_log_line_is_json_and_the_requests_lines_carry_its_id_and_trace(served):
    _, spans, lines, _ = served
    docs = [json.loads(line) for line in lines if line.strip()]  # raises on any line that is not JSON
    assert all({"timestamp", "level", "logger", "message"} <= doc.keys() for doc in docs)
    assert any(doc["logger"].startswith("uvicorn") for doc in docs)  # uvicorn's own lines too
    server = _server_span(spans)
    mine = [doc for doc in docs if doc.get("request_id") == REQUEST_ID]
    access = [doc for doc in mine if doc["logger"] == "ems.api"]
    assert len(access) == 1, mine
    assert (access[0]["route"], access[0]["status"], access[0]["method"]) == ("/ai/forecast", 200, "POST")
    assert all(doc["trace_id"] == server["trace_id"] for doc in mine)
    # The first call in a worker loads the model, in the endpoint's thread: its line is the request's too.
    assert any(doc["logger"] == "inference.models" and doc["message"].startswith(f"loaded {TENANT}:") for doc in mine)
    assert not [doc for doc in docs if doc.get("trace_id") == server["trace_id"] and doc.get("request_id")
                != REQUEST_ID]


def test_metrics_count_model_cache_hits_misses_loads_and_feature_age(served):
    _, _, _, text = served
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    hits = samples.get(("ems_api_model_cache_total", (("result", "hit"),)), 0)
    misses = samples[("ems_api_model_cache_total", (("result", "miss"),))]
    assert hits + misses == 3 and 1 <= misses <= 2  # a miss per worker that served, hits for the rest
    assert samples[("ems_api_model_load_seconds_count", ())] == misses
    assert samples[("ems_api_feature_age_seconds_count", (("source", "online"),))] == 3
    # The data ends in June 2017: every forecast's features are older than the largest bucket.
    assert samples[("ems_api_feature_age_seconds_bucket", (("le", "604800.0"), ("source", "online")))] == 0
