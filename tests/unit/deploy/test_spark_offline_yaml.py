"""deploy/feature_store.spark_offline.yaml is deploy/feature_store.env.yaml with Feast's Spark offline store
over the exported history in place of the Postgres store (issue 22): same registry, so the same feature views
and services; only the sources differ (warehouse/spark_offline.py)."""

from __future__ import annotations

import pytest
import yaml

from core.settings import ROOT

DEPLOY = ROOT / "deploy"


def test_spark_offline_yaml_is_the_env_yaml_with_the_spark_offline_store():
    env = yaml.safe_load((DEPLOY / "feature_store.env.yaml").read_text())
    spark = yaml.safe_load((DEPLOY / "feature_store.spark_offline.yaml").read_text())
    offline = spark.pop("offline_store")
    env.pop("offline_store")
    assert spark == env
    assert offline["type"] == "warehouse.spark_offline.EmsSparkOfflineStore"
    assert offline["history_uri"] == "${EMS_HISTORY_URI}"
    conf = offline["spark_conf"]
    assert conf["spark.master"] == "${EMS_SPARK_MASTER}" and conf["spark.sql.session.timeZone"] == "UTC"
    # Feast prunes partitions by comparing event_date with 'YYYY-MM-DD' strings: it must stay a string
    assert conf["spark.sql.sources.partitionColumnTypeInference.enabled"] == "false"


def test_spark_offline_yaml_loads_as_a_feast_config(monkeypatch):
    pytest.importorskip("pyspark")
    from feast.repo_config import load_repo_config

    for name in ("EMS_PG_HOST", "EMS_PG_DATABASE", "EMS_PG_USER", "EMS_PG_PASSWORD", "EMS_PG_SSLMODE",
                 "EMS_REDIS_HOST", "EMS_REDIS_USERNAME", "EMS_REDIS_PASSWORD"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("EMS_PG_PORT", "5432")
    monkeypatch.setenv("EMS_REDIS_PORT", "6379")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("EMS_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("EMS_HISTORY_URI", "s3://history/ems")
    config = load_repo_config(ROOT, DEPLOY / "feature_store.spark_offline.yaml")
    assert config.offline_store.history_uri == "s3://history/ems"
    assert config.offline_store.spark_conf["spark.master"] == "local[2]"


def test_history_sources_map_each_view_to_its_exported_relation():
    pytest.importorskip("pyspark")
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    from warehouse.spark_offline import HistorySourceError, history_source

    pg = PostgreSQLSource(name="load_lags_source", query="SELECT * FROM load_lag_features",
                          timestamp_field="event_timestamp", created_timestamp_column="created")
    spark = history_source(pg, "s3://bucket/history/")
    assert spark.path == "s3a://bucket/history/load_lag_features"  # Hadoop's S3 connector scheme
    assert (spark.timestamp_field, spark.created_timestamp_column) == ("event_timestamp", "created")
    assert (spark.date_partition_column, spark.date_partition_column_format) == ("event_date", "%Y-%m-%d")
    other = PostgreSQLSource(name="x", query="SELECT * FROM secrets", timestamp_field="t")
    with pytest.raises(HistorySourceError, match="'x' .* not one of the exported relations"):
        history_source(other, "file:///h")
