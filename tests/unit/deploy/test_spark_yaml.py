"""deploy/feature_store.spark.yaml is deploy/feature_store.env.yaml plus a Spark batch engine (issue 22):
the same stores from the same variables, so the two never drift."""

from __future__ import annotations

import yaml

from core.settings import ROOT

DEPLOY = ROOT / "deploy"


def test_spark_yaml_is_the_env_yaml_plus_the_spark_engine():
    env = yaml.safe_load((DEPLOY / "feature_store.env.yaml").read_text())
    spark = yaml.safe_load((DEPLOY / "feature_store.spark.yaml").read_text())
    engine = spark.pop("batch_engine")
    assert spark == env
    assert engine["type"] == "spark.engine" and engine["partitions"] >= 2
    assert engine["spark_conf"]["spark.master"] == "${EMS_SPARK_MASTER}"
    assert engine["spark_conf"]["spark.sql.session.timeZone"] == "UTC"  # timestamps stay UTC in Arrow <-> Spark


def test_spark_yaml_loads_as_a_feast_config(monkeypatch, tmp_path):
    from feast.repo_config import load_repo_config

    for name in ("EMS_PG_HOST", "EMS_PG_DATABASE", "EMS_PG_USER", "EMS_PG_PASSWORD", "EMS_PG_SSLMODE",
                 "EMS_REDIS_HOST", "EMS_REDIS_USERNAME", "EMS_REDIS_PASSWORD"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("EMS_PG_PORT", "5432")
    monkeypatch.setenv("EMS_REDIS_PORT", "6379")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("EMS_SPARK_MASTER", "spark://10.0.0.1:7077")
    config = load_repo_config(ROOT, DEPLOY / "feature_store.spark.yaml")
    assert config.batch_engine.type == "spark.engine"
    assert config.batch_engine.spark_conf["spark.master"] == "spark://10.0.0.1:7077"
