"""Model lifecycle against the real MLflow server (Postgres backend, S3 artifacts via the proxy),
including the client calls the MLflow UI makes (alias and stage changes)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from core.errors import InvalidTransitionError, ModelNotFoundError
from core.names import InvalidModelIdError
from registry import lifecycle
from tests.helpers.data import tetouan_slice

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlc(stack):
    return lifecycle.client(stack.mlflow_tracking_uri)


@pytest.fixture(scope="module")
def logged_model(stack, tmp_path_factory):
    """A small real model (hour-of-day regression on a Tetouan week) logged once, registered often."""
    frame = pd.read_csv(tetouan_slice(tmp_path_factory.mktemp("lc") / "t.csv", "2017-02-01", "2017-02-08"))
    X = pd.DataFrame({"hour": pd.to_datetime(frame["timestamp"]).dt.hour.astype(float)})
    model = LinearRegression().fit(X, frame["zone1_power_consumption"])
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    mlflow.set_experiment("lifecycle-tests")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3))
    return info.model_uri, run.info.run_id


def _new(mlc, logged_model, tenant="lc", name="forecaster"):
    uri, run_id = logged_model
    return lifecycle.register(mlc, tenant, name, uri, run_id, {"model_type": "forecast"})


def test_new_version_starts_in_staging_with_tags(mlc, logged_model):
    info = _new(mlc, logged_model, name="fresh")
    assert info.stage == "staging" and info.id == f"lc:fresh:{info.version}"
    assert info.tags["tenant_id"] == "lc" and info.model_type == "forecast"
    assert mlc.get_model_version("lc.fresh", str(info.version)).current_stage == "Staging"


def test_promote_archives_previous_production_and_sets_alias_and_stage(mlc, logged_model):
    v1, v2 = _new(mlc, logged_model, name="promo"), _new(mlc, logged_model, name="promo")
    lifecycle.promote(mlc, v1.id, "production")
    assert lifecycle.resolve_production(mlc, "lc", "promo").version == v1.version
    lifecycle.promote(mlc, v2.id, "production")
    assert lifecycle.show(mlc, v1.id).stage == "archived"
    assert mlc.get_model_version("lc.promo", str(v1.version)).current_stage == "Archived"
    assert mlc.get_model_version_by_alias("lc.promo", "production").version == str(v2.version)
    assert mlc.get_model_version("lc.promo", str(v2.version)).current_stage == "Production"


def test_invalid_transitions_unknown_and_malformed_ids_get_one_clear_error(mlc, logged_model):
    v = _new(mlc, logged_model, name="rules")
    with pytest.raises(InvalidTransitionError, match="is staging; it can move to archived, production, not staging"):
        lifecycle.promote(mlc, v.id, "staging")
    with pytest.raises(InvalidTransitionError, match="stage 'live' is not one of staging, production, archived"):
        lifecycle.promote(mlc, v.id, "live")
    lifecycle.promote(mlc, v.id, "production")
    with pytest.raises(InvalidTransitionError, match="is production; it can move to archived, not staging"):
        lifecycle.promote(mlc, v.id, "staging")
    with pytest.raises(ModelNotFoundError, match="model lc:rules:999 does not exist"):
        lifecycle.show(mlc, "lc:rules:999")
    with pytest.raises(InvalidModelIdError, match="'lc.rules.1' is malformed"):
        lifecycle.show(mlc, "lc.rules.1")


def test_deleting_production_needs_force(mlc, logged_model):
    v = _new(mlc, logged_model, name="deletable")
    lifecycle.promote(mlc, v.id, "production")
    with pytest.raises(InvalidTransitionError, match="pass --force"):
        lifecycle.delete(mlc, v.id)
    lifecycle.delete(mlc, v.id, force=True)
    with pytest.raises(ModelNotFoundError):
        lifecycle.show(mlc, v.id)
    with pytest.raises(ModelNotFoundError, match="has no production version"):
        lifecycle.resolve_production(mlc, "lc", "deletable")


def test_promotions_made_in_the_mlflow_ui_are_honoured(mlc, logged_model):
    """The UI either moves an alias or (legacy) sets a stage; both must change what is served."""
    v1, v2 = _new(mlc, logged_model, name="ui"), _new(mlc, logged_model, name="ui")
    mlc.transition_model_version_stage("lc.ui", str(v1.version), "Production")  # UI stage control
    assert lifecycle.resolve_production(mlc, "lc", "ui").version == v1.version
    mlc.set_registered_model_alias("lc.ui", "production", str(v2.version))  # UI alias editor
    assert lifecycle.resolve_production(mlc, "lc", "ui").version == v2.version
    assert lifecycle.show(mlc, v1.id).stage == "archived"  # Production stage behind the alias


def test_tenants_never_see_each_others_models(mlc, logged_model):
    a = _new(mlc, logged_model, tenant="tenant-a", name="shared")
    b = _new(mlc, logged_model, tenant="tenant-b", name="shared")
    lifecycle.promote(mlc, b.id, "production")
    assert {m.tenant for m in lifecycle.list_models(mlc, "tenant-a")} == {"tenant-a"}
    assert a.id in {m.id for m in lifecycle.list_models(mlc, "tenant-a")}
    with pytest.raises(ModelNotFoundError, match="tenant-a:shared has no production version"):
        lifecycle.resolve_production(mlc, "tenant-a", "shared")
    assert lifecycle.resolve_production(mlc, "tenant-b", "shared").id == b.id


def test_models_cli_lists_promotes_and_refuses_bad_stage(mlc, logged_model, env):
    import json

    from tests.helpers.stack import ems

    v = _new(mlc, logged_model, tenant="cli-t", name="cli")
    assert "is now production" in ems("models", "promote", v.id, "--to", "production", env=env).stdout
    listed = json.loads(ems("models", "list", "--tenant", "cli-t", "--json", env=env).stdout)
    assert [(m["id"], m["stage"]) for m in listed] == [(v.id, "production")]
    bad = ems("models", "promote", v.id, "--to", "prod", env=env, check=False)
    assert bad.returncode == 1 and "stage 'prod' is not one of staging, production, archived" in bad.stderr
    assert "Traceback" not in bad.stderr
