"""The AI Hub API against its own OpenAPI document: Schemathesis generates requests for every operation
the live `/openapi.json` lists (valid and invalid ones, from the declared request schemas), sends them
to `ems serve` with a token of the test tenant holding every role, and checks that no answer is a 5xx
and that each one has a declared status, content type and a body matching the declared schema."""

from __future__ import annotations

import logging
import os
import re

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from registry import lifecycle
from service.auth import ROLES
from tests.helpers.api import Keys, call, jwks_server, serving, trained_tenant
from tests.helpers.stack import TEST_PORTS

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

TENANT = "api-contract"
API_PORT = TEST_PORTS["mlflow"] + 6  # test_api.py uses +3..+5
JWKS_PORT = TEST_PORTS["mlflow"] + 7
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")


def config(token: str) -> SchemathesisConfig:
    """A fixed seed and deterministic generation, so that CI sends the same requests every run. The
    examples phase sends each operation's declared examples, the coverage phase the boundary and
    wrong-type values of each field, the fuzzing phase `max-examples` generated requests per operation
    and mode (valid, invalid). The stateful phase is off: the document declares no links, and inferred
    ones would chain a listed model into DELETE ?force=true of the version every other call serves."""
    return SchemathesisConfig.from_dict({
        "seed": 20261206,
        "generation": {"max-examples": 10, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "headers": {"Authorization": f"Bearer {token}"},
        "request-timeout": 120,
    })


@pytest.fixture(scope="module")
def contract_api(stack, store, env, tmp_path_factory):
    """`ems serve` over a tenant with a promoted forecaster, and a token of that tenant with every role."""
    keys = Keys()
    tmp = tmp_path_factory.mktemp("contract")
    trained = trained_tenant(stack, store, env, tmp, TENANT, "tet-contract", "2017-06-01", "2017-06-29")
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)
    # EMS_API_MAX_JOBS=0: a training or export request passes every check and is then refused (too many
    # jobs), so the fuzzing reaches all of the submission's validation without starting a job process
    # per generated request (tests/integration/test_api_jobs.py runs jobs).
    served_env = {**os.environ, **env, "EMS_API_MAX_JOBS": "0"}
    with jwks_server(keys, JWKS_PORT) as jwks_url, \
            serving(served_env, API_PORT, tmp / "serve.log", jwks_url=jwks_url) as base:
        yield base, keys.token(TENANT, list(ROLES)), trained.model_id


def _as_tenant(case, served_model_id: str) -> None:
    """Aim a generated request at the test tenant: a token may act for its own tenant only, so a
    generated tenant id would get 403 before any endpoint logic runs (test_api.py covers that 403).
    Values of the wrong type stay as generated, for the request validation to refuse. A generated model
    id keeps its name and version; DELETE never names the served model, whose loss would turn every
    later forecast into a 404 (deleting the serving version is test_api.py's)."""
    if isinstance(case.body, dict) and isinstance(case.body.get("tenant_id"), str):
        case.body["tenant_id"] = TENANT
    if case.query and isinstance(case.query.get("tenant_id"), str):
        case.query["tenant_id"] = TENANT
    model_id = (case.path_parameters or {}).get("model_id")
    if isinstance(model_id, str) and re.fullmatch(r"[^:/]+:[^:/]+:[^:/]+", model_id):
        ours = f"{TENANT}:{model_id.split(':', 1)[1]}"
        if not (case.method.upper() == "DELETE" and ours == served_model_id):
            case.path_parameters["model_id"] = ours


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/ai/forecast", {"historical_data": [{"timestamp": "2017-06-01T00:00:00Z", "value": 1.0},
                                          {"timestamp": "0001-01-01T00:00:00Z", "value": 2.0}]},
     "historical_data[1].timestamp = 0001-01-01T00:00:00+00:00): Out of bounds"),
    ("/ai/anomaly", {"series": [{"timestamp": "2017-06-01T00:00:00Z", "value": 1.0},
                                {"timestamp": "2017-06-01T01:00:00", "value": 2.0}]},
     "series[1].timestamp = 2017-06-01T01:00:00): Cannot mix tz-aware with tz-naive values"),
])
def test_a_caller_series_pandas_cannot_index_is_refused_naming_the_reading(contract_api, path, body, message):
    base, token, _ = contract_api
    r = call("POST", f"{base}{path}", token, json={"tenant_id": TENANT, "asset_id": "zone1", **body})
    assert r.status_code == 422 and r.json()["code"] == "invalid_series" and message in r.json()["message"], r.text


def test_what_fastapi_refuses_itself_gets_the_error_body(contract_api):
    base, token, _ = contract_api
    unparsable = call("POST", f"{base}/ai/forecast", token, data=b"\xff\xfe|",
                      headers={"content-type": "application/json"})
    assert unparsable.status_code == 400 and unparsable.json()["code"] == "invalid_request", unparsable.text
    assert "application/json body cannot be parsed" in unparsable.json()["message"]
    not_json = call("POST", f"{base}/ai/forecast", token, data=b'{"tenant_id": "x",}',
                    headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json() == {
        "code": "invalid_request", "message": "body is not JSON at character 18: Expecting property name enclosed in "
                                              "double quotes"}
    nowhere = call("GET", f"{base}/ai/nowhere", token)
    assert nowhere.status_code == 404 and nowhere.json() == {"code": "not_found", "message": "no route GET /ai/nowhere"}
    wrong_method = call("PATCH", f"{base}/ai/forecast", token)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"


def test_an_anomaly_range_without_a_reading_answers_an_empty_result(contract_api):
    base, token, _ = contract_api
    series = [{"timestamp": f"2017-06-0{1 + h // 24}T{h % 24:02d}:00:00Z", "value": 300.0 + h} for h in range(48)]
    r = call("POST", f"{base}/ai/anomaly", token, json={
        "tenant_id": TENANT, "asset_id": "zone1", "method": "forecast_residual", "series": series,
        "start": "2018-01-01T00:00:00Z", "end": "2018-01-02T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert r.json()["points"] == [] and r.json()["summary"]["start"] is None


def test_every_operation_answers_within_its_documented_contract(contract_api):
    """Last in this module: generated promotions and deletions may move the tenant's models."""
    base, token, served_model_id = contract_api
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config(token))

    def before_call(context, case, kwargs):  # every phase's requests, just before they are sent
        _as_tenant(case, served_model_id)

    documented = {op.ok().label for op in schema.get_all_operations()}
    cases: dict[str, int] = {}
    failures, errors, finished = [], [], None
    schemathesis.hook(before_call)  # only the global dispatcher takes before_call: unregistered below
    try:
        events = list(from_schema(schema).execute())
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
    for event in events:
        if isinstance(event, ScenarioFinished):
            recorder = event.recorder
            cases[recorder.label] = cases.get(recorder.label, 0) + len(recorder.cases)
            failures += [f"{recorder.label}: {node.failure_info.failure.title}\n{node.failure_info.failure.message}\n"
                         f"    {node.failure_info.code_sample}"
                         for nodes in recorder.checks.values() for node in nodes
                         if node.status == Status.FAILURE and node.failure_info is not None]
        elif isinstance(event, NonFatalError | FatalError):
            errors.append(f"{getattr(event, 'label', 'run')}: {getattr(event, 'value', None) or event.exception!r}")
        elif isinstance(event, EngineFinished):
            finished = event
    logger.info("%d requests over %d operations: %s", sum(cases.values()), len(cases),
                ", ".join(f"{label} {n}" for label, n in sorted(cases.items())))
    assert finished is not None and finished.stop_reason == "completed", finished
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} contract failures:\n" + "\n\n".join(dict.fromkeys(failures))
    assert set(cases) == documented, f"operations not exercised: {documented - set(cases)}"
