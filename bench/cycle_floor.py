"""The hourly cycle's floor: the raw writes a cycle needs at least. COPY of its readings into a scratch table
with readings' columns and indexes, INSERT ... SELECT FROM unnest of the feature rows it adds or changes into
scratch tables with the feature relations' columns and primary key (one transaction), then Feast's value
serialization and pipelined HSET of every asset's newest row into a Redis database nobody reads."""

from __future__ import annotations

import time

import pandas as pd
from psycopg import sql

from bench.rows_features import hset_rows, scratch_redis

SCRATCH_READINGS = "bench_scratch_readings"
PG_TYPES = {"Float64": "float8", "Float32": "float4", "Int64": "int8", "Int32": "int4", "String": "text",
            "Bool": "bool"}  # Feast dtype -> SQL array type (a fixed allow-list)


def select_features(fv, where: str, created: bool = False) -> sql.Composed:
    """SELECT tenant_id, asset_id, <fv's features>, event_timestamp [, created] FROM fv's relation WHERE ..."""
    return sql.SQL("SELECT tenant_id, asset_id, {f}, event_timestamp{c} FROM {src} AS a WHERE {w}").format(
        f=sql.SQL(", ").join(sql.Identifier(f.name) for f in fv.features),
        c=sql.SQL(", created" if created else ""), src=sql.SQL(fv.batch_source.get_table_query_string()),
        w=sql.SQL(where))


def flat(rows: dict[tuple, tuple]) -> list[tuple]:
    """(tenant, asset, event time) -> features as rows (tenant, asset, *features, event time)."""
    return [(*key[:2], *values, key[2]) for key, values in rows.items()]


def scratch_table(fv) -> str:
    return f"bench_scratch_{fv.name}"


def insert(fv, rows: list[tuple]) -> tuple[sql.Composed, list[list]]:
    """INSERT ... SELECT FROM unnest of the rows into the view's scratch table: the statement and one array
    per column."""
    types = ["text", "text", *(PG_TYPES[str(f.dtype)] for f in fv.features), "timestamptz"]
    cols = ["tenant_id", "asset_id", *(f.name for f in fv.features), "event_timestamp"]
    statement = sql.SQL("INSERT INTO {t} ({c}, created) SELECT *, now() FROM unnest({a})").format(
        t=sql.Identifier(scratch_table(fv)), c=sql.SQL(", ").join(map(sql.Identifier, cols)),
        a=sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in types))
    return statement, [list(column) for column in zip(*rows, strict=True)]


class Floor:
    """Scratch tables for the hourly views `views` while in a `with` block (dropped on leaving it)."""

    def __init__(self, ctx, store, views):
        self.ctx, self.store, self.views = ctx, store, views
        self.tables = [SCRATCH_READINGS, *map(scratch_table, views)]

    def connect(self):
        from warehouse.db import connect

        return connect(self.ctx.settings)

    def __enter__(self) -> Floor:
        with self.connect() as conn, conn.transaction():
            for name in self.tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE readings INCLUDING DEFAULTS INCLUDING INDEXES)").format(
                sql.Identifier(SCRATCH_READINGS)))
            for fv in self.views:
                table = sql.Identifier(scratch_table(fv))
                conn.execute(sql.SQL("CREATE TABLE {} AS {} WITH NO DATA").format(
                    table, select_features(fv, "false", created=True)))
                conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (tenant_id, asset_id, event_timestamp)").format(
                    table))
        return self

    def __exit__(self, *exc) -> None:
        with self.connect() as conn, conn.transaction():
            for name in self.tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))

    def seconds(self, tenant: str, frame: pd.DataFrame, written: dict[str, dict], latest: dict[str, dict]) -> float:
        """Seconds for: COPY the cycle's readings (`frame`), INSERT the feature rows it wrote (`written`, per
        view name), pipelined HSET of each asset's newest row (`latest`). Inputs are built before the clock
        starts, the scratch tables and database emptied."""
        readings = frame.assign(tenant_id=tenant)[["tenant_id", "asset_id", "timestamp", "value"]].to_csv(
            index=False, header=False).encode()
        inserts = [insert(fv, flat(written[fv.name])) for fv in self.views if written[fv.name]]
        hsets = {fv.name: flat(latest[fv.name]) for fv in self.views}
        copy_sql = sql.SQL("COPY {} (tenant_id, asset_id, ts, value) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(SCRATCH_READINGS))
        with self.connect() as conn, conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, self.tables))))
        r = scratch_redis(self.ctx)
        r.flushdb()
        t0 = time.perf_counter()
        with self.connect() as conn, conn.transaction():
            with conn.cursor().copy(copy_sql) as copy:
                copy.write(readings)
            for statement, params in inserts:
                conn.execute(statement, params)
        with r.pipeline(transaction=False) as pipe:
            for fv in self.views:
                hset_rows(pipe, self.store, fv, hsets[fv.name])
            pipe.execute()
        seconds = time.perf_counter() - t0
        r.flushdb()
        return seconds
