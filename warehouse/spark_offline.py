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

Long spines are joined in time chunks (`spine_chunk_hours`, default a week): Feast's join pairs every entity
row of a key with every feature row of that key in the spine's whole partition-pruned range before it filters
on time, so its work grows with (rows per key) x (range); a chunk of the spine reads only the days it needs
(its range minus the TTL), so the work grows with the rows instead (README "Training sets at scale").
`to_df()` runs the chunks one after another and concatenates them on the driver (where `to_df()` collects
anyway); `to_spark_df()` checkpoints each chunk on the executors and unions them (each chunk's query reuses
Feast's fixed temporary view names, so a chunk is computed before the next one is defined).

`s3://` history URIs are read as `s3a://` (Hadoop's S3 connector: hadoop-aws and the AWS SDK jars on the
cluster's classpath, with the spark_conf keys of README "Scaling out"); pyspark's own jars do not include it.
"""

from __future__ import annotations

import copy
import re
from typing import Literal

import pandas as pd
import pyarrow as pa
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    _get_entity_schema,
    get_spark_session_or_start_new_with_repoconfig,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
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
    spine_chunk_hours: int = 168
    """Entity rows are joined in chunks of this many hours of their event time (0: the whole spine in one query)."""


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


def spine_chunks(entity_df, spark, hours: int) -> list:
    """The entity frame (pandas, Spark DataFrame or Spark SQL) cut into consecutive ranges of `hours` of its
    event time, empty ranges left out; the frame itself when it spans one range (or hours is 0)."""
    if entity_df is None or hours <= 0:
        return [entity_df]
    column = offline_utils.infer_event_timestamp_from_entity_df(_get_entity_schema(spark, entity_df))
    if isinstance(entity_df, pd.DataFrame):
        times = pd.to_datetime(entity_df[column], utc=True)
        lo, hi = times.min(), times.max()
    else:
        from pyspark.sql import functions as F

        frame = spark.sql(entity_df) if isinstance(entity_df, str) else entity_df
        first, last = frame.agg(F.min(F.unix_micros(column)), F.max(F.unix_micros(column))).first()
        if first is None:
            return [entity_df]
        lo, hi = (pd.Timestamp(v, unit="us", tz="UTC") for v in (first, last))
    step = pd.Timedelta(hours=hours)
    if hi - lo < step:
        return [entity_df]
    # the first range is open below and the last above: every row is in exactly one chunk
    inner = [lo + k * step for k in range(1, int((hi - lo) / step) + 1)]
    ranges = list(zip([None, *inner], [*inner, None], strict=True))
    if isinstance(entity_df, pd.DataFrame):
        cut = [entity_df[(times >= a if a is not None else True) & (times < b if b is not None else True)].copy()
               for a, b in ranges]
        return [c for c in cut if len(c)]
    micros, step_us, lo_us = F.unix_micros(column), step.value // 1000, lo.value // 1000
    bucket = F.least(F.floor((micros - F.lit(lo_us)) / F.lit(step_us)), F.lit(len(ranges) - 1))  # = the ranges
    filled = {row[0] for row in frame.select(bucket.alias("b")).distinct().collect()}
    return [frame.filter((micros >= a.value // 1000 if a is not None else F.lit(True))
                         & (micros < b.value // 1000 if b is not None else F.lit(True)))
            for k, (a, b) in enumerate(ranges) if k in filled]


class ChunkedSparkRetrievalJob(RetrievalJob):
    """One training set from the retrieval jobs of consecutive spine chunks (their rows are disjoint)."""

    def __init__(self, jobs: list):
        self.jobs = jobs

    @property
    def full_feature_names(self) -> bool:
        return self.jobs[0].full_feature_names

    @property
    def on_demand_feature_views(self):
        return self.jobs[0].on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        first = self.jobs[0].metadata
        if first is None:
            return None
        return RetrievalMetadata(features=first.features, keys=first.keys,
                                 min_event_timestamp=min(j.metadata.min_event_timestamp for j in self.jobs),
                                 max_event_timestamp=max(j.metadata.max_event_timestamp for j in self.jobs))

    def to_spark_df(self):
        frames = [job.to_spark_df().localCheckpoint(eager=True) for job in self.jobs]
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
        return out

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return pd.concat([job._to_df_internal(timeout=timeout) for job in self.jobs], ignore_index=True)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return pa.Table.from_pandas(self._to_df_internal(timeout=timeout), preserve_index=False)


class EmsSparkOfflineStore(SparkOfflineStore):
    @staticmethod
    def get_historical_features(config, feature_views, feature_refs, entity_df, registry, project,
                                full_feature_names: bool = False, filter_by_created_timestamp: bool = False,
                                **kwargs):
        views = [_on_history(fv, config) for fv in feature_views]
        spark = get_spark_session_or_start_new_with_repoconfig(config.offline_store)
        jobs = []
        for chunk in spine_chunks(entity_df, spark, config.offline_store.spine_chunk_hours):
            job = SparkOfflineStore.get_historical_features(config, views, feature_refs, chunk, registry, project,
                                                            full_feature_names, filter_by_created_timestamp, **kwargs)
            job._on_demand_feature_views = [RowWiseOnDemand(v) if (v.tags or {}).get("row_wise") == "true" else v
                                            for v in job.on_demand_feature_views]
            jobs.append(job)
        return jobs[0] if len(jobs) == 1 else ChunkedSparkRetrievalJob(jobs)

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


__all__ = ["ChunkedSparkRetrievalJob", "EmsSparkOfflineStore", "EmsSparkOfflineStoreConfig", "history_source",
           "spine_chunks"]
