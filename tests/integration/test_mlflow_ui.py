"""Promotions clicked in the real MLflow UI (headless Chromium) against the suite's MLflow server, and
after each click what `ems forecast` serves and what `ems models list` prints.

The sequence users click: `ems models promote` v1; the new UI's alias editor puts `production` on v2
(a version validated worse than its baseline: its forecasts must say so); the legacy stage menu moves
v2 to Production archiving the existing one; the legacy menu rolls back to v1 archiving existing (the
alias still names v2, now Archived: v1 must serve). Then the same with `ems up --auth`: a tenant's
user manages its own model in the UI and the UI refuses the other tenant's.
Screenshots of a failed test land in its tmp folder (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import secrets

import pytest

from registry import lifecycle
from tests.helpers.api import trained_tenant
from tests.helpers.mlflow_ui import MlflowUI, chromium
from tests.helpers.stack import TEST_PORTS, ems

pytestmark = pytest.mark.integration

TENANT = "ui-t"
NAME = f"{TENANT}.load_forecaster"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium())
        yield launched
        launched.close()


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        opened.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    context.close()


@pytest.fixture(scope="module")
def versions(stack, store, env, tmp_path_factory):
    """A trained forecaster of a tenant with four weeks of Tetouan load and weather, promoted with `ems`
    (v1), and v2: the same files registered again, tagged as a training that scored worse than the
    seasonal-naive baseline (what `validation_status` says of such a training)."""
    trained = trained_tenant(stack, store, env, tmp_path_factory.mktemp("ui"), TENANT, "tet-ui", "2017-05-01",
                             "2017-05-29")
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    v1 = lifecycle.show(mlc, trained.model_id)
    ems("models", "promote", v1.id, "--to", "production", *(["--force"] if v1.doubtful else []), env=env)
    source = mlc.get_model_version(NAME, str(v1.version))
    tags = {**source.tags, "validation_status": "worse_than_seasonal_naive"}
    v2 = mlc.create_model_version(NAME, source.source, run_id=source.run_id,
                                  model_id=source.source.removeprefix("models:/"), tags=tags)
    mlc.transition_model_version_stage(NAME, v2.version, "Staging")
    return mlc, v1.version, int(v2.version)


def _served(env) -> tuple[str, list[str]]:
    doc = json.loads(ems("forecast", "--tenant", TENANT, "--asset", "zone1", "--horizon", "6", "--json",
                         env=env).stdout)
    return doc["model_id"], doc["warnings"]


def _listed(env) -> dict[int, tuple[str, bool, list[str]]]:
    doc = json.loads(ems("models", "list", "--tenant", TENANT, "--json", env=env).stdout)
    return {m["version"]: (m["stage"], m["serving"], m["aliases"]) for m in doc if m["name"] == "load_forecaster"}


def test_alias_stage_and_rollback_clicked_in_the_ui_serve_what_the_ui_shows(versions, page, stack, env):
    mlc, v1, v2 = versions
    ui = MlflowUI(page, stack.mlflow_tracking_uri)
    doubt = f"{TENANT}:load_forecaster:{v2} was validated `worse_than_seasonal_naive`"
    served, warnings = _served(env)
    assert served == f"{TENANT}:load_forecaster:{v1}" and not any(doubt in w for w in warnings)

    # 1. new UI: alias `production` on v2 -> v2 serves, with the validation warning; the list says so
    ui.add_alias(NAME, v2, "production")
    assert mlc.get_model_version_by_alias(NAME, "production").version == str(v2)
    served, warnings = _served(env)
    assert served == f"{TENANT}:load_forecaster:{v2}" and any(doubt in w for w in warnings)
    assert _listed(env) == {v1: ("production", False, []), v2: ("staging", True, ["production"])}
    assert ui.stage_shown(NAME, v1) == "Production"  # the legacy UI still shows v1: the list flags it
    assert "MLflow stage Production, but version" in ems("models", "list", "--tenant", TENANT, env=env).stdout

    # 2. legacy UI: v2 -> Production, archive existing -> v2 serves, v1 Archived, both controls agree
    ui.transition(NAME, v2, "Production", archive_existing=True)
    assert (ui.stage_shown(NAME, v1), ui.stage_shown(NAME, v2)) == ("Archived", "Production")
    assert _served(env)[0] == f"{TENANT}:load_forecaster:{v2}"
    assert _listed(env) == {v1: ("archived", False, []), v2: ("production", True, ["production"])}

    # 3. legacy UI rollback: v1 -> Production, archive existing -> v1 serves although the alias names v2
    ui.transition(NAME, v1, "Production", archive_existing=True)
    assert (ui.stage_shown(NAME, v1), ui.stage_shown(NAME, v2)) == ("Production", "Archived")
    served, warnings = _served(env)
    assert served == f"{TENANT}:load_forecaster:{v1}" and not any(doubt in w for w in warnings)
    assert _listed(env) == {v1: ("production", True, []), v2: ("archived", False, ["production"])}
    history = json.loads(ems("models", "history", f"{TENANT}:load_forecaster", "--json", env=env).stdout)
    # one UI action ("archive existing") moved both at the same server time
    assert {(e["version"], e["to"], e["source"]) for e in history["events"][-2:]} == {
        (v2, "archived", "mlflow"), (v1, "production", "mlflow")}
    assert history["events"][-1]["at"] == history["events"][-2]["at"]

    # 4. the alias editor again, now on v1: both controls name v1, nothing to flag
    ui.add_alias(NAME, v1, "production")
    assert _served(env)[0] == f"{TENANT}:load_forecaster:{v1}"
    assert _listed(env) == {v1: ("production", True, ["production"]), v2: ("archived", False, [])}
    assert "alias" not in ems("models", "list", "--tenant", TENANT, env=env).stdout.split("serves")[-1]


# ------------------------------------------------------------------ the same with `ems up --auth`
AUTH_PORT = TEST_PORTS["mlflow"] + 2  # beside the session's MLflow and test_auth's server
A, B = "ui-auth-a", "ui-auth-b"


@pytest.fixture(scope="module")
def auth_ui(stack, tmp_path_factory):
    """An MLflow server with its basic-auth app on the session's Postgres and S3; one model per tenant
    (registered by the admin, as training does) and a user of tenant A."""
    import os
    from contextlib import contextmanager

    import mlflow

    from core.names import experiment_name
    from registry.access import create_tenant_user
    from stack import services

    settings = stack.model_copy(update={
        "home": tmp_path_factory.mktemp("ui-auth-home"), "mlflow_auth": True,
        "mlflow_tracking_uri": f"http://127.0.0.1:{AUTH_PORT}", "mlflow_auth_database": "mlflow_auth_ui",
    })
    server = services.MLflow(settings)
    server.up()

    @contextmanager
    def admin():
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        os.environ.update({"MLFLOW_TRACKING_USERNAME": settings.mlflow_admin_username,
                           "MLFLOW_TRACKING_PASSWORD": settings.mlflow_admin_password})
        try:
            yield
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    try:
        with admin():
            mlc = lifecycle.client(settings.mlflow_tracking_uri)
            password = secrets.token_urlsafe(16)
            user = create_tenant_user(settings.mlflow_tracking_uri, A, "alice", password)
            mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
            for tenant in (A, B):
                mlflow.set_experiment(experiment_name(tenant))
                with mlflow.start_run() as run:
                    info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
                for _ in range(2):
                    lifecycle.register(mlc, tenant, "shared", info.model_uri, run.info.run_id,
                                       {"model_type": "forecast"})
        yield settings, user, password, admin
    finally:
        server.down()


def test_a_tenant_user_promotes_its_own_model_in_the_ui_and_is_refused_the_other(auth_ui, browser, request,
                                                                                 tmp_path):
    settings, user, password, admin = auth_ui
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  http_credentials={"username": "alice", "password": password})
    ui = MlflowUI(context.new_page(), settings.mlflow_tracking_uri)
    try:
        ui.add_alias(f"{A}.shared", 2, "production")
        with admin():
            mlc = lifecycle.client(settings.mlflow_tracking_uri)
            assert lifecycle.resolve_production(mlc, A, "shared").version == 2
            ui.transition(f"{A}.shared", 2, "Production", archive_existing=True)
            assert lifecycle.resolve_production(mlc, A, "shared").version == 2
            ui.transition(f"{A}.shared", 1, "Production", archive_existing=True)  # rollback
            assert lifecycle.resolve_production(mlc, A, "shared").version == 1  # alias on an Archived v2

            # the other tenant's model: the UI cannot open it, and nothing changes
            assert ui.refused(f"{B}.shared", 1) == 403
            assert [(m.stage, m.aliases) for m in lifecycle.list_models(mlc, B)] == [("staging", [])] * 2
    except Exception:
        ui.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        context.close()
    assert user.tenant == A
