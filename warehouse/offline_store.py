"""Feast's Postgres offline store with a point-in-time join that scales to training sets.

Named in feature_store.yaml (`offline_store.type: warehouse.offline_store.EmsPostgresOfflineStore`),
so `feast apply`, `feast materialize` and `get_historical_features` keep working unchanged.

Stock Feast 0.67 uploads the entity frame row by row and joins every entity row to every feature
row inside the TTL window, then sorts that on disk (with the window-function views the feature tables
replaced, it did not finish 26k entity rows in 10 minutes). Here, for a pandas entity frame:
1. the entity frame goes in with one COPY (Arrow -> CSV) into a temporary table;
2. each feature view's source (a feature table keyed by tenant, asset and event time) is read once,
   restricted to the frame's entity keys and to the frame's time range minus the TTL, into an
   indexed temporary table;
3. each entity row takes the latest feature row at or before its timestamp (and inside the TTL)
   with a LATERAL ... ORDER BY event_timestamp DESC, created DESC LIMIT 1: stock Feast's semantics;
4. the result streams back with COPY ... TO STDOUT and is parsed by Arrow.
SQL entity frames and entity-less retrieval fall back to the stock implementation.

On-demand views tagged `row_wise: "true"` (each output row depends only on its own input row, like
the calendar) are computed once per distinct input row instead of once per entity row: a training
set has a million rows but a few thousand distinct (target_time, timezone) pairs, and Feast's python
mode converts the whole table to Python objects first.

Materialization: with `materialization_config.pull_latest_features: true` Feast asks for the latest
row per entity in the time window (stock Feast otherwise pulls every row into Python and dedups in
pandas); here that is one `SELECT DISTINCT ON (keys) ... ORDER BY keys, event_timestamp DESC, created
DESC` streamed back with COPY into Arrow.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.offline_stores.offline_store import RetrievalMetadata
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.type_map import pg_type_code_to_arrow
from psycopg import sql

_ROW = "_ems_row"


class EmsPostgresOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    type: Literal["warehouse.offline_store.EmsPostgresOfflineStore"] = (  # type: ignore[assignment]
        "warehouse.offline_store.EmsPostgresOfflineStore"
    )
    # Join a view whose rows are one per key and whole hour on the entity hour first (an equi-join), the
    # LATERAL "latest row at or before" only for the rest; false: LATERAL for every row (same result).
    hour_join: bool = True


class EmsPostgresOfflineStore(PostgreSQLOfflineStore):
    @staticmethod
    def get_historical_features(config, feature_views, feature_refs, entity_df, registry, project,
                                full_feature_names: bool = False, filter_by_created_timestamp: bool = False,
                                **kwargs):
        if not isinstance(entity_df, pd.DataFrame) or entity_df.empty:
            return PostgreSQLOfflineStore.get_historical_features(
                config, feature_views, feature_refs, entity_df, registry, project,
                full_feature_names, filter_by_created_timestamp, **kwargs)
        schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        ts_col = offline_utils.infer_event_timestamp_from_entity_df(schema)
        offline_utils.assert_expected_columns_in_entity_df(
            schema, offline_utils.get_expected_join_keys(project, feature_views, registry), ts_col)
        entity = _entity_table(entity_df, ts_col)
        times = entity.column(ts_col)
        time_range = (pc.min(times).as_py(), pc.max(times).as_py())
        contexts = offline_utils.get_feature_view_query_context(
            feature_refs, feature_views, registry, project, time_range)
        return LateralRetrievalJob(
            config, entity, ts_col, contexts, full_feature_names, filter_by_created_timestamp,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            metadata=RetrievalMetadata(features=feature_refs, keys=[c for c in entity_df.columns if c != ts_col],
                                       min_event_timestamp=time_range[0], max_event_timestamp=time_range[1]),
        )


    @staticmethod
    def pull_latest_from_table_or_query(config, data_source, join_key_columns, feature_name_columns, timestamp_field,
                                        created_timestamp_column, start_date, end_date):
        if not join_key_columns or not feature_name_columns:
            return PostgreSQLOfflineStore.pull_latest_from_table_or_query(
                config, data_source, join_key_columns, feature_name_columns, timestamp_field,
                created_timestamp_column, start_date, end_date)
        stamps = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
        keys = sql.SQL(", ").join(map(sql.Identifier, join_key_columns))
        query = sql.SQL(
            "SELECT DISTINCT ON ({keys}) {cols} FROM {src} AS a WHERE {ts} BETWEEN %s AND %s "
            "ORDER BY {keys}, {order}").format(
            keys=keys, cols=sql.SQL(", ").join(map(sql.Identifier, [*join_key_columns, *feature_name_columns,
                                                                     *stamps])),
            src=sql.SQL(data_source.get_table_query_string()), ts=sql.Identifier(timestamp_field),
            order=sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(c)) for c in stamps))
        return CopyRetrievalJob(query, (start_date, end_date), config)


class CopyRetrievalJob(PostgreSQLRetrievalJob):
    """A query whose result streams back with COPY ... TO STDOUT into Arrow."""

    def __init__(self, query: sql.Composed, params: tuple, config):
        self._query, self._params = query, params
        super().__init__(query=query.as_string(None), config=config, full_feature_names=False,
                         on_demand_feature_views=None)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with _get_conn(self.config.offline_store) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            return _copy_out(cur, _bind(cur, self._query, self._params))


def _bind(cur, query: sql.Composed, params: tuple) -> sql.Composed:
    """COPY takes no parameters: inline them as literals (psycopg quotes them)."""
    parts = query.as_string(cur).split("%s")
    out = [sql.SQL(parts[0])]
    for value, part in zip(params, parts[1:], strict=True):
        out += [sql.Literal(value), sql.SQL(part)]
    return sql.Composed(out)


def _copy_out(cur, query: sql.Composable) -> pa.Table:
    cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(query))
    fields = [(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description]
    out = io.BytesIO()
    with cur.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)) as copy:
        for chunk in copy:
            out.write(chunk)
    return _read_csv(out.getvalue(), fields)


def _entity_table(entity_df: pd.DataFrame, ts_col: str) -> pa.Table:
    frame = entity_df.copy()
    stamps = pd.to_datetime(frame[ts_col], utc=True)  # naive times are UTC, as in stock Feast
    frame[ts_col] = stamps
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.append_column(_ROW, pa.array(range(len(frame)), pa.int64()))


_PG_TYPE = [
    (pa.types.is_timestamp, "timestamptz"), (pa.types.is_boolean, "boolean"), (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"), (pa.types.is_date, "date"),
]


def _pg_type(arrow_type: pa.DataType) -> str:
    return next((pg for check, pg in _PG_TYPE if check(arrow_type)), "text")


class LateralRetrievalJob(PostgreSQLRetrievalJob):
    def __init__(self, config, entity: pa.Table, ts_col: str, contexts, full_feature_names: bool,
                 filter_by_created_timestamp: bool, on_demand_feature_views=None, metadata=None):
        self._entity = entity
        self._ts_col = ts_col
        self._contexts = contexts
        self._filter_created = filter_by_created_timestamp
        on_demand_feature_views = [RowWiseOnDemand(v) if (v.tags or {}).get("row_wise") == "true" else v
                                   for v in on_demand_feature_views or []]
        super().__init__(query=self._sql, config=config, full_feature_names=full_feature_names,
                         on_demand_feature_views=on_demand_feature_views, metadata=metadata)

    # ------------------------------------------------------------------ SQL
    def _output_name(self, ctx, feature: str) -> str:
        name = ctx.field_mapping.get(feature, feature)
        return f"{ctx.name}__{name}" if self.full_feature_names else name

    def _feature_table(self, i: int, ctx) -> tuple[sql.Composed, list]:
        """Statement + params copying one view's relevant rows into temp table fv_i."""
        cols = [sql.SQL("{} AS event_timestamp").format(sql.Identifier(ctx.timestamp_field))]
        if ctx.created_timestamp_column:
            cols.append(sql.SQL("{} AS created_timestamp").format(sql.Identifier(ctx.created_timestamp_column)))
        cols += [sql.Identifier(k) for k in ctx.entities]
        cols += [sql.SQL("{} AS {}").format(sql.Identifier(f), sql.Identifier(self._output_name(ctx, f)))
                 for f in ctx.features]
        where = [sql.SQL("{} <= %s").format(sql.Identifier(ctx.timestamp_field))]
        params: list = [self._time_range[1]]
        if ctx.ttl:
            where.append(sql.SQL("{} >= %s").format(sql.Identifier(ctx.timestamp_field)))
            params.append(pd.Timestamp(self._time_range[0]) - pd.Timedelta(seconds=ctx.ttl))
        for k in ctx.entities:  # a qual on PARTITION BY columns is pushed below window functions
            where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(k)))
            params.append(sorted({v for v in self._entity.column(k).to_pylist() if v is not None}))
        stmt = sql.SQL("CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT {cols} FROM {src} AS src WHERE {where}").format(
            t=sql.Identifier(f"_ems_fv_{i}"), cols=sql.SQL(", ").join(cols),
            src=sql.SQL(ctx.table_subquery), where=sql.SQL(" AND ").join(where))
        return stmt, params

    def _final_select(self, aligned: list[bool] | None = None) -> sql.Composed:
        """aligned[i]: view i's rows sit on whole hours, one per key and time, so the latest row at or
        before an entity time is the row at that time's hour, found by a hash join; the LATERAL search
        runs only for rows that join nothing there (gaps, rows before the data, the TTL edge)."""
        outputs = [sql.SQL("e.{}").format(sql.Identifier(c)) for c in self._entity.column_names if c != _ROW]
        ts = sql.Identifier(self._ts_col)
        joins = []
        for i, ctx in enumerate(self._contexts):
            fv = sql.Identifier(f"_ems_fv_{i}")
            alias, hour = sql.Identifier(f"j{i}"), sql.Identifier(f"h{i}")

            def keys_ttl(f: sql.Identifier, ctx=ctx) -> list[sql.Composable]:
                out = [sql.SQL("{f}.{k} = e.{k}").format(f=f, k=sql.Identifier(k)) for k in ctx.entities]
                if ctx.ttl:
                    out.append(sql.SQL("{}.event_timestamp >= e.{} - make_interval(secs => {})").format(
                        f, ts, sql.Literal(ctx.ttl)))
                return out

            conds = [*keys_ttl(sql.Identifier("f")), sql.SQL("f.event_timestamp <= e.{}").format(ts)]
            if self._filter_created and ctx.created_timestamp_column:
                conds.append(sql.SQL("f.created_timestamp <= e.{}").format(ts))
            order = sql.SQL("f.event_timestamp DESC, f.created_timestamp DESC" if ctx.created_timestamp_column
                            else "f.event_timestamp DESC")
            names = [sql.Identifier(self._output_name(ctx, f)) for f in ctx.features]
            hourly = bool(aligned and aligned[i])
            if hourly:
                on = [*keys_ttl(hour), sql.SQL("{}.event_timestamp = date_trunc('hour', e.{})").format(hour, ts)]
                joins.append(sql.SQL("LEFT JOIN {} AS {} ON {}").format(fv, hour, sql.SQL(" AND ").join(on)))
                conds.insert(0, sql.SQL("{}.event_timestamp IS NULL").format(hour))
            joins.append(sql.SQL("LEFT JOIN LATERAL (SELECT {names} FROM {fv} AS f WHERE {conds} ORDER BY {order} "
                                 "LIMIT 1) AS {alias} ON TRUE").format(
                names=sql.SQL(", ").join(sql.SQL("f.{}").format(n) for n in names), fv=fv,
                conds=sql.SQL(" AND ").join(conds), order=order, alias=alias))
            if hourly:
                outputs += [sql.SQL("CASE WHEN {h}.event_timestamp IS NOT NULL THEN {h}.{n} ELSE {a}.{n} END AS {n}"
                                    ).format(h=hour, a=alias, n=n) for n in names]
            else:
                outputs += [sql.SQL("{}.{}").format(alias, n) for n in names]
        return sql.SQL("SELECT {outputs} FROM _ems_entity AS e {joins} ORDER BY e.{row}").format(
            outputs=sql.SQL(", ").join(outputs), joins=sql.SQL(" ").join(joins), row=sql.Identifier(_ROW))

    @property
    def _time_range(self) -> tuple[datetime, datetime]:
        return self.metadata.min_event_timestamp, self.metadata.max_event_timestamp

    @contextlib.contextmanager
    def _sql(self) -> Iterator[str]:
        yield "-- per feature view: CREATE TEMP TABLE ... then\n" + self._final_select().as_string(None)

    # ------------------------------------------------------------------ execution
    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with _get_conn(self.config.offline_store) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type))) for f in self._entity.schema)
            cur.execute(sql.SQL("CREATE TEMP TABLE _ems_entity ({}) ON COMMIT DROP").format(columns))
            buffer = io.BytesIO()
            pacsv.write_csv(self._entity, buffer, pacsv.WriteOptions(include_header=False))
            with cur.copy(sql.SQL("COPY _ems_entity FROM STDIN WITH (FORMAT csv)")) as copy:
                copy.write(buffer.getvalue())
            aligned = []
            for i, ctx in enumerate(self._contexts):
                stmt, params = self._feature_table(i, ctx)
                cur.execute(stmt, params)
                hourly = self._index(conn, cur, sql.Identifier(f"_ems_fv_{i}"), ctx)
                aligned.append(hourly and getattr(self.config.offline_store, "hour_join", True))
            cur.execute("ANALYZE _ems_entity")
            return _copy_out(cur, self._final_select(aligned))

    def _index(self, conn, cur, table: sql.Identifier, ctx) -> bool:
        """Index the view's rows; True when they are one per key and whole hour (see _final_select)."""
        keys = sql.SQL(", ").join(map(sql.Identifier, ctx.entities))
        unique = True
        try:
            with conn.transaction():  # a savepoint: a duplicate (key, time) only means "not unique"
                cur.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({}, event_timestamp)").format(table, keys))
        except psycopg.errors.UniqueViolation:
            unique = False
            cur.execute(sql.SQL("CREATE INDEX ON {} ({}, event_timestamp)").format(table, keys))
        cur.execute(sql.SQL("ANALYZE {}").format(table))
        if not unique or (self._filter_created and ctx.created_timestamp_column):
            return False
        return cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} WHERE event_timestamp <> "
                                   "date_trunc('hour', event_timestamp))").format(table)).fetchone()[0]


class RowWiseOnDemand:
    """An on-demand view evaluated once per distinct input row, then spread back to every row. Only
    for views tagged `row_wise: "true"`; everything but transform_arrow is the view itself."""

    def __init__(self, odfv: OnDemandFeatureView):
        self._odfv = odfv

    def __getattr__(self, name: str):
        return getattr(self._odfv, name)

    def input_columns(self) -> list[str]:
        cols = []
        for projection in self._odfv.source_feature_view_projections.values():
            for f in projection.features:
                cols += [f.name, f"{projection.name}__{f.name}", f"{projection.name_to_use()}__{f.name}"]
        cols += [f.name for rs in self._odfv.source_request_sources.values() for f in rs.schema]
        return list(dict.fromkeys(cols))

    def transform_arrow(self, table: pa.Table, full_feature_names: bool = False) -> pa.Table:
        inputs = [c for c in self.input_columns() if c in table.column_names]
        if not inputs or table.num_rows == 0:
            return self._odfv.transform_arrow(table, full_feature_names)
        narrow = table.select(inputs)
        codes = narrow.to_pandas().groupby(inputs, sort=False, dropna=False).ngroup().to_numpy()
        _, first = np.unique(codes, return_index=True)  # groups are numbered in order of first appearance
        distinct = self._odfv.transform_arrow(narrow.take(pa.array(first)), full_feature_names)
        return distinct.take(pa.array(codes))


def _read_csv(data: bytes, fields: list[tuple[str, pa.DataType]]) -> pa.Table:
    schema = pa.schema(fields)
    parsed = {name: (pa.string() if pa.types.is_timestamp(t) else t) for name, t in fields}
    table = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(column_types=parsed, null_values=[""], strings_can_be_null=True,
                                             quoted_strings_can_be_null=False),
    )
    arrays = []
    for f in schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type):  # Postgres writes `2017-01-01 00:00:00+00` in UTC
            stamps = pd.to_datetime(col.to_pandas(), utc=True, format="ISO8601")
            col = pa.array(stamps, pa.timestamp("us", tz="UTC"))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=[f.name for f in schema])


__all__ = ["EmsPostgresOfflineStore", "EmsPostgresOfflineStoreConfig"]
