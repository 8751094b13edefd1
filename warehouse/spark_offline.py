"""Feast's Spark offline store over the Parquet history that `ems export history` writes (issue 22).

Named in deploy/feature_store.spark_offline.yaml (`offline_store.type:
warehouse.spark_offline.EmsSparkOfflineStore`, `history_uri: ...`). The feature views and services are the
ones `feast apply` registered (same SQL registry as the other configs); only their sources differ, and
that is decided here, from the yaml: each view's PostgreSQLSource (`SELECT * FROM <relation>`, the
relations of feature_repo/sql) is read as the SparkSource over `{history_uri}/<relation>`, partitioned by
`event_date` (warehouse/history.py). So one `feast apply` serves both profiles and no definition is
written twice; the Postgres store keeps reading the warehouse, this one reads the export.

Everything else is Feast's SparkOfflineStore (alpha in 0.67): its point-in-time join in Spark SQL
(latest row at or before the entity time, inside the TTL, ties broken by the created column), date
partition pruning, entity frames as pandas, a Spark SQL query or a Spark DataFrame (pass big spines as a
query over Parquet: a pandas frame is serialised from the driver). `to_df()` collects to the driver and
runs on-demand views there; `to_spark_df()` stays distributed without them. The calendar view runs once
per distinct (target_time, timezone), as in the Postgres store (warehouse/offline_store.RowWiseOnDemand).

`s3://` history URIs are read as `s3a://` (Hadoop's S3 connector: hadoop-aws and the AWS SDK jars on the
cluster's classpath, with the spark_conf keys of README "Scaling out"); pyspark's own jars do not include it.
"""

from __future__ import annotations

import copy
import re
from typing import Literal

from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    get_spark_session_or_start_new_with_repoconfig,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from pydantic import StrictStr

from core.errors import EmsError
from warehouse.history import PARTITION, PARTITION_FORMAT, TABLES
from warehouse.offline_store import RowWiseOnDemand

_RELATION = re.compile(r"\(?SELECT \* FROM ([a-z_][a-z0-9_]*)\)?")  # feature_repo/sources.py's one form


class HistorySourceError(EmsError):
    """A feature view's source has no exported history to read."""


class EmsSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    type: Literal["warehouse.spark_offline.EmsSparkOfflineStore"] = (  # type: ignore[assignment]
        "warehouse.spark_offline.EmsSparkOfflineStore"
    )
    history_uri: StrictStr
    """Where `ems export history` wrote (a path Spark reaches: file://, a shared filesystem, s3:// read as s3a://)."""


def history_path(uri: str) -> str:
    uri = uri.rstrip("/")
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


def history_source(source, uri: str) -> SparkSource:
    """The SparkSource over the exported relation that a view's PostgreSQLSource selects from."""
    query = source.get_table_query_string() if hasattr(source, "get_table_query_string") else ""
    match = _RELATION.fullmatch(query.strip())
    if not match or match.group(1) not in TABLES:
        raise HistorySourceError(f"source {source.name!r} ({query or type(source).__name__}) is not one of the "
                                 f"exported relations ({', '.join(TABLES)}): the Spark profile cannot read it")
    return SparkSource(name=source.name, path=f"{history_path(uri)}/{match.group(1)}", file_format="parquet",
                       timestamp_field=source.timestamp_field,
                       created_timestamp_column=source.created_timestamp_column,
                       field_mapping=dict(source.field_mapping), date_partition_column=PARTITION,
                       date_partition_column_format=PARTITION_FORMAT, description=source.description)


def _readable(source: SparkSource, config) -> SparkSource:
    """The source itself, or, for a relation with no exported rows yet (no partition folders: Spark cannot
    infer a schema), a temporary view of its `_schema/columns.parquet` (the columns, no rows): NULL features, as the
    Postgres store gives for an empty relation."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    spark = get_spark_session_or_start_new_with_repoconfig(config.offline_store)
    # event_date stays a string (Feast compares it with 'YYYY-MM-DD' strings), also on a session that another
    # config started (the batch engine's)
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    try:
        spark.read.parquet(source.path).schema  # noqa: B018 (lists the folder and reads one footer)
        return source
    except AnalysisException as e:
        try:
            empty = spark.read.parquet(f"{source.path}/_schema/columns.parquet")
        except AnalysisException:
            raise HistorySourceError(f"no exported history at {source.path} ({e.getErrorClass()}): run `ems export "
                                     "history` to that location, or fix offline_store.history_uri") from e
    view = f"ems_history_empty_{source.path.rstrip('/').rsplit('/', 1)[-1]}"
    empty.withColumn(PARTITION, F.lit(None).cast("string")).createOrReplaceTempView(view)
    return SparkSource(name=source.name, table=view, timestamp_field=source.timestamp_field,
                       created_timestamp_column=source.created_timestamp_column,
                       field_mapping=dict(source.field_mapping), date_partition_column=PARTITION,
                       date_partition_column_format=PARTITION_FORMAT, description=source.description)


def _on_history(fv, config):
    out = copy.copy(fv)
    out.batch_source = _readable(history_source(fv.batch_source, config.offline_store.history_uri), config)
    return out


class EmsSparkOfflineStore(SparkOfflineStore):
    @staticmethod
    def get_historical_features(config, feature_views, feature_refs, entity_df, registry, project,
                                full_feature_names: bool = False, filter_by_created_timestamp: bool = False,
                                **kwargs):
        job = SparkOfflineStore.get_historical_features(
            config, [_on_history(fv, config) for fv in feature_views], feature_refs, entity_df, registry, project,
            full_feature_names, filter_by_created_timestamp, **kwargs)
        job._on_demand_feature_views = [RowWiseOnDemand(v) if (v.tags or {}).get("row_wise") == "true" else v
                                        for v in job.on_demand_feature_views]
        return job

    @staticmethod
    def pull_latest_from_table_or_query(config, data_source, join_key_columns, feature_name_columns,
                                        timestamp_field, created_timestamp_column, start_date, end_date):
        return SparkOfflineStore.pull_latest_from_table_or_query(
            config, _readable(history_source(data_source, config.offline_store.history_uri), config),
            join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date)

    @staticmethod
    def pull_all_from_table_or_query(config, data_source, join_key_columns, feature_name_columns,
                                     timestamp_field, created_timestamp_column=None, start_date=None, end_date=None,
                                     **kwargs):
        return SparkOfflineStore.pull_all_from_table_or_query(
            config, _readable(history_source(data_source, config.offline_store.history_uri), config),
            join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date,
            **kwargs)


__all__ = ["EmsSparkOfflineStore", "EmsSparkOfflineStoreConfig", "history_source"]
