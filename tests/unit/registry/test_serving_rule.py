"""The one rule for the serving version, on MLflow ModelVersion objects built in code."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from registry.lifecycle import TAG_ARCHIVED_AT, _disagreement, _serving_rule


def mv(version: int, stage: str, updated: int, aliases=(), tags=None) -> ModelVersion:
    return ModelVersion(name="t.m", version=str(version), creation_timestamp=0, last_updated_timestamp=updated,
                        current_stage=stage, aliases=list(aliases),
                        tags=[ModelVersionTag(k, v) for k, v in (tags or {}).items()])


def test_the_alias_decides_while_its_version_is_not_archived():
    v1, v2 = mv(1, "Production", 10), mv(2, "Staging", 5, ["production"])
    assert _serving_rule(v2, [v1, v2]) == "2"
    assert "MLflow stage Production, but version 2 serves" in _disagreement(v1, "2")
    assert "serves through the `production` alias, but its MLflow stage is Staging" in _disagreement(v2, "2")


def test_an_archive_made_outside_ems_hands_over_to_the_newest_production_stage():
    v1, v2, v3 = mv(1, "Production", 30), mv(2, "Archived", 30, ["production"]), mv(3, "Production", 20)
    assert _serving_rule(v2, [v1, v2, v3]) == "1"  # the most recently moved to Production, not the highest
    assert "does not serve; version 1 (stage Production) does" in _disagreement(v2, "1")
    assert _disagreement(v1, "1") is None


def test_an_alias_moved_onto_a_version_ems_archived_serves_it():
    v1 = mv(1, "Archived", 40, ["production"], {TAG_ARCHIVED_AT: "40"})
    assert _serving_rule(v1, [v1, mv(2, "Production", 39)]) == "1"
    moved_again = mv(1, "Archived", 55, ["production"], {TAG_ARCHIVED_AT: "40"})  # archived again elsewhere
    assert _serving_rule(moved_again, [moved_again, mv(2, "Production", 39)]) == "2"


def test_nothing_serves_without_an_alias_or_a_production_stage():
    assert _serving_rule(None, [mv(1, "Staging", 1), mv(2, "Archived", 2)]) is None
    assert _serving_rule(None, [mv(1, "Production", 1), mv(2, "Production", 1)]) == "2"  # same time: higher
