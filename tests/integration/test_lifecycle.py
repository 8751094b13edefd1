"""Model lifecycle against the real MLflow server (Postgres backend, S3 artifacts via the proxy),
including the client calls the MLflow UI makes (alias and stage changes)."""

from __future__ import annotations

import json

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
    shown = lifecycle.show(mlc, v1.id)  # MLflow's stage as it is, flagged: it does not serve
    assert (shown.stage, shown.serving) == ("production", False) and "version 2 serves" in shown.disagreement


def test_an_alias_moved_back_onto_a_version_ems_archived_serves_it(mlc, logged_model):
    """A rollback in the new UI: the alias editor moves `production` back onto the version the last `ems`
    promotion archived. Only a stage change made outside `ems` takes the serving role from the alias."""
    v1, v2 = _new(mlc, logged_model, name="back"), _new(mlc, logged_model, name="back")
    lifecycle.promote(mlc, v1.id, "production")
    lifecycle.promote(mlc, v2.id, "production")
    mlc.set_registered_model_alias("lc.back", "production", str(v1.version))  # UI alias editor
    assert lifecycle.resolve_production(mlc, "lc", "back").version == v1.version
    shown = lifecycle.show(mlc, v1.id)
    assert (shown.stage, shown.serving) == ("archived", True) and "stage is Archived" in shown.disagreement
    mlc.transition_model_version_stage("lc.back", str(v1.version), "Staging")  # legacy UI, then archived there
    mlc.transition_model_version_stage("lc.back", str(v1.version), "Archived")
    assert lifecycle.resolve_production(mlc, "lc", "back").version == v2.version


def _state(mlc, name: str) -> dict:
    """What MLflow holds per version: (stage, aliases) (a search answers without aliases)."""
    return {int(v.version): (v.current_stage, sorted(mlc.get_model_version(name, v.version).aliases)) for v in
            mlc.search_model_versions(f"name = '{name}'")}


def _listed(mlc, tenant: str, name: str) -> dict:
    return {m.version: (m.stage, m.serving, m.disagreement is not None)
            for m in lifecycle.list_models(mlc, tenant) if m.name == name}


def test_any_order_of_alias_stage_and_ems_moves_serves_what_the_last_action_shows(mlc, logged_model):
    """The sequence users click: ems promote v1; UI alias on v2; legacy UI v2 -> Production archiving
    existing; legacy UI rollback to v1 archiving existing; ems promote v1 again. After each step:
    what serves, what the list says, never an Archived version."""
    v1, _ = _new(mlc, logged_model, name="seq"), _new(mlc, logged_model, name="seq")
    serves = lambda: lifecycle.resolve_production(mlc, "lc", "seq").version  # noqa: E731
    lifecycle.promote(mlc, v1.id, "production")
    assert serves() == 1 and _listed(mlc, "lc", "seq") == {1: ("production", True, False), 2: ("staging", False, False)}

    mlc.set_registered_model_alias("lc.seq", "production", "2")  # new UI: alias editor
    assert serves() == 2
    assert _listed(mlc, "lc", "seq") == {1: ("production", False, True), 2: ("staging", True, True)}

    mlc.transition_model_version_stage("lc.seq", "2", "Production", archive_existing_versions=True)  # legacy UI
    assert serves() == 2
    assert _listed(mlc, "lc", "seq") == {1: ("archived", False, False), 2: ("production", True, False)}

    mlc.transition_model_version_stage("lc.seq", "1", "Production", archive_existing_versions=True)  # rollback
    assert _state(mlc, "lc.seq") == {1: ("Production", []), 2: ("Archived", ["production"])}
    assert serves() == 1  # never the archived version the alias still names
    assert _listed(mlc, "lc", "seq") == {1: ("production", True, False), 2: ("archived", False, True)}

    lifecycle.promote(mlc, v1.id, "production", reason="alias back in line")  # re-sync both controls
    assert _state(mlc, "lc.seq") == {1: ("Production", ["production"]), 2: ("Archived", [])}
    assert serves() == 1
    assert _listed(mlc, "lc", "seq") == {1: ("production", True, False), 2: ("archived", False, False)}
    events, unknown = lifecycle.history(mlc, "lc", "seq")
    assert [(e.version, e.to, e.source) for e in events] == [  # v2's move to Production is overwritten
        (1, "production", "ems"), (2, "archived", "mlflow"), (1, "production", "ems")]
    assert events[-1].reason == "alias back in line" and events[-1].from_version == "1" and unknown


def test_history_shows_ui_moves_as_far_as_mlflow_keeps_them(mlc, logged_model):
    v1, _ = _new(mlc, logged_model, name="hist"), _new(mlc, logged_model, name="hist")
    lifecycle.promote(mlc, v1.id, "production", reason="first release")
    mlc.transition_model_version_stage("lc.hist", "2", "Production", archive_existing_versions=True)  # UI
    events, _ = lifecycle.history(mlc, "lc", "hist")
    by = [(e.version, e.to, e.source) for e in events]
    assert (1, "production", "ems") in by and (2, "production", "mlflow") in by and (1, "archived", "mlflow") in by
    assert by.index((1, "production", "ems")) < by.index((2, "production", "mlflow"))
    first = next(e for e in events if e.source == "ems")
    assert first.reason == "first release" and first.from_version is None and first.by
    tags = mlc.get_model_version("lc.hist", "1").tags
    assert tags["ems.promotion_reason"] == "first release" and tags["ems.promoted_by"] == first.by
    assert lifecycle.resolve_production(mlc, "lc", "hist").version == 2


def test_bad_promotions_change_nothing(mlc, logged_model):
    v1, v2 = _new(mlc, logged_model, name="bad"), _new(mlc, logged_model, name="bad")
    lifecycle.promote(mlc, v1.id, "production")
    mlc.delete_model_version("lc.bad", "2")
    before = _state(mlc, "lc.bad")
    for model_id, to, error, match in [
        ("lc:bad:99", "production", ModelNotFoundError, "lc:bad:99 does not exist"),
        (v2.id, "production", ModelNotFoundError, f"{v2.id} does not exist"),  # deleted
        (v1.id, "live", InvalidTransitionError, "stage 'live' is not one of"),
        (v1.id, "production", InvalidTransitionError, "is production; it can move to archived, not production"),
    ]:
        with pytest.raises(error, match=match):
            lifecycle.promote(mlc, model_id, to)
        assert _state(mlc, "lc.bad") == before
    with pytest.raises(InvalidTransitionError, match="reason '' must be 1..500 characters"):
        lifecycle.promote(mlc, v1.id, "archived", reason="")
    assert _state(mlc, "lc.bad") == before


def test_bad_promotions_through_the_cli_get_one_line_and_change_nothing(mlc, logged_model, env):
    from tests.helpers.stack import ems

    v1, v2 = _new(mlc, logged_model, name="badcli"), _new(mlc, logged_model, name="badcli")
    ems("models", "promote", v1.id, "--to", "production", "--reason", "first", env=env)
    mlc.delete_model_version("lc.badcli", str(v2.version))
    before = _state(mlc, "lc.badcli")
    for args, message in [
        (("lc:badcli:99", "--to", "production"), "model lc:badcli:99 does not exist"),
        ((v2.id, "--to", "production"), f"model {v2.id} does not exist"),
        ((v1.id, "--to", "live"), "stage 'live' is not one of staging, production, archived"),
        ((v1.id, "--to", "archived", "--reason", ""), "reason '' must be 1..500 characters"),
        (("lc:badcli", "--to", "production"), "is malformed"),
    ]:
        bad = ems("models", "promote", *args, env=env, check=False)
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and _state(mlc, "lc.badcli") == before
    bad = ems("models", "history", "lc-badcli", env=env, check=False)
    assert bad.returncode == 1 and "model 'lc-badcli' is not tenant:name" in bad.stderr
    doc = json.loads(ems("models", "history", "lc:badcli", "--json", env=env).stdout)
    assert [(e["version"], e["to"], e["reason"]) for e in doc["events"]] == [(v1.version, "production", "first")]


def test_a_version_validated_worse_than_its_baseline_needs_force(mlc, logged_model):
    uri, run_id = logged_model
    v = lifecycle.register(mlc, "lc", "doubt", uri, run_id, {"validation_status": "worse_than_seasonal_naive"})
    assert v.doubtful
    with pytest.raises(InvalidTransitionError, match="validated `worse_than_seasonal_naive`.*--force"):
        lifecycle.promote(mlc, v.id, "production")
    assert _state(mlc, "lc.doubt") == {v.version: ("Staging", [])}
    assert lifecycle.promote(mlc, v.id, "production", force=True).serving


def test_concurrent_promotions_end_with_one_production_version(mlc, logged_model):
    from concurrent.futures import ThreadPoolExecutor

    # two fresh versions promoted at once, six times over: the odd rounds on a new model (both promotions
    # write its first alias), the even rounds on the same model again (both move an existing alias)
    for round_ in range(6):
        name = f"race{round_ // 2}"
        v1, v2 = _new(mlc, logged_model, name=name), _new(mlc, logged_model, name=name)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda v: lifecycle.promote(lifecycle.client(mlc.tracking_uri), v.id, "production"),
                          (v1, v2)))
        state = _state(mlc, f"lc.{name}")
        production = [v for v, (stage, _) in state.items() if stage == "Production"]
        aliased = [v for v, (_, aliases) in state.items() if "production" in aliases]
        assert len(production) == 1 and aliased == production and production[0] in (v1.version, v2.version), state
        assert lifecycle.resolve_production(mlc, "lc", name).version == production[0]
        assert [m.version for m in lifecycle.list_models(mlc, "lc") if m.name == name and m.serving] == production


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
    assert [(m["id"], m["stage"], m["serving"]) for m in listed] == [(v.id, "production", True)]
    bad = ems("models", "promote", v.id, "--to", "prod", env=env, check=False)
    assert bad.returncode == 1 and "stage 'prod' is not one of staging, production, archived" in bad.stderr
    assert "Traceback" not in bad.stderr
