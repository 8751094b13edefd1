"""Feature-store rows: materialize, online reads (1 and 100 assets), point-in-time training sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench import core
from bench.data import DataSet
from core.settings import ROOT

SERVICE = "forecast_advanced"
SCRATCH_DB = 15  # the floor's writes go to a Redis database nobody reads


def stock_store(ctx):
    """A FeatureStore with stock Feast's Postgres offline store and default materialization, on the
    same registry, database and Redis."""
    from feast import FeatureStore

    cfg = yaml.safe_load(ctx.settings.feast_yaml.read_text())
    cfg["offline_store"]["type"] = "postgres"
    cfg.pop("materialization_config", None)
    cfg.pop("mlflow", None)
    path = Path(ctx.work) / "stock_feature_store.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return FeatureStore(repo_path=str(ROOT), fs_yaml_file=path)


# ------------------------------------------------------------------------------------ materialize
def scratch_redis(ctx):
    """A client on the Redis database the floors write to (nobody reads it)."""
    import redis

    addr = ctx.settings.redis
    return redis.Redis(addr.host, addr.port, db=SCRATCH_DB, username=addr.username, password=addr.password)


def hset_rows(pipe, store, fv, rows) -> int:
    """Queue one HSET per row (tenant_id, asset_id, *fv's features in schema order, event_timestamp) the way
    Feast's Redis store lays a view out: the serialized entity key + project as the key, murmur3 field names,
    ValueProto values, `_ts:<view>`. Returns the rows queued."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from google.protobuf.timestamp_pb2 import Timestamp

    project = store.config.project.encode()
    version = store.config.entity_key_serialization_version
    fields = [_mmh3(f"{fv.name}:{f.name}") for f in fv.features]
    types = [f.dtype.to_value_type() for f in fv.features]
    for row in rows:
        key = serialize_entity_key(EntityKey(join_keys=["tenant_id", "asset_id"], entity_values=[
            Value(string_val=row[0]), Value(string_val=row[1])]), version)
        mapping = {field: python_values_to_proto_values([v], t)[0].SerializeToString()
                   for field, v, t in zip(fields, row[2:-1], types, strict=True)}
        ts = Timestamp()
        ts.FromDatetime(row[-1])
        mapping[f"_ts:{fv.name}"] = ts.SerializeToString()
        pipe.hset(key + project, mapping=mapping)
    return len(rows)


def _floor_materialize(ctx, store, data: DataSet) -> int:
    """Per view the latest row of each entity (DISTINCT ON, newest event_timestamp first) straight from its
    feature relation, Feast's value serialization, pipelined HSET. Hourly views: the bench tenant's assets,
    the entities the project's window holds; the static view: every asset, as the project reloads it whole."""
    from psycopg import sql

    from warehouse.db import connect

    written = 0
    r = scratch_redis(ctx)
    with connect(ctx.settings) as conn, r.pipeline(transaction=False) as pipe:
        for fv in [v for v in store.list_batch_feature_views() if v.online]:
            query = sql.SQL(
                "SELECT DISTINCT ON (tenant_id, asset_id) tenant_id, asset_id, {f}, event_timestamp FROM {src} AS a "
                "{where} ORDER BY tenant_id, asset_id, event_timestamp DESC").format(
                f=sql.SQL(", ").join(sql.Identifier(f.name) for f in fv.features),
                src=sql.SQL(fv.batch_source.get_table_query_string()),
                where=sql.SQL("WHERE tenant_id = %s" if fv.ttl else ""))
            rows = conn.execute(query, (data.tenant,) if fv.ttl else ()).fetchall()
            written += hset_rows(pipe, store, fv, rows)
        pipe.execute()
    r.flushdb()
    return written


def materialize_rows(ctx, data: DataSet, store) -> list[core.Row]:
    from warehouse.store import materialize

    reps = 1 if ctx.quick else 3
    ours, floor, written = [], [], 0
    for _ in range(reps):
        seconds, _ = core.timed(lambda: materialize(ctx.settings, end=data.end.to_pydatetime(), store=store,
                                                    start=data.start.to_pydatetime()))
        ours.append(seconds)
        seconds, written = core.timed(lambda: _floor_materialize(ctx, store, data))
        floor.append(seconds)
    stock_s = None
    if not ctx.quick:
        stock = stock_store(ctx)
        views = [v.name for v in stock.list_batch_feature_views() if v.online]
        stock_s, _ = core.timed(lambda: stock.materialize(start_date=data.start.to_pydatetime(),
                                                          end_date=data.end.to_pydatetime(), feature_views=views))
    return [core.ratio_row(
        f"materialize all assets ({len(data.assets)} assets, 4 views)", "s", float(np.median(ours)),
        float(np.median(floor)), max_ratio=2.0, stock=stock_s,
        stock_note="" if stock_s is not None else "full run only",
        floor_desc="per view: the latest row per entity read from its feature relation (SELECT DISTINCT ON "
                   "(tenant_id, asset_id) ... ORDER BY tenant_id, asset_id, event_timestamp DESC; hourly views: the "
                   "bench tenant, the static view: every asset), Feast's ValueProto serialization, pipelined HSET "
                   "into a scratch Redis database",
        details={"ours_s": ours, "floor_s": floor, "entity_rows_written": written,
                 "source_hourly_rows": data.hourly_rows})]


# ------------------------------------------------------------------------------------ online
def online_rows(ctx, data: DataSet, store) -> list[core.Row]:
    from inference.online import OnlineReader
    from warehouse.store import feature_service

    reader = OnlineReader(store)
    fs = feature_service(store, SERVICE)
    when = (data.end - pd.Timedelta(hours=1)).to_pydatetime()
    rows = []
    for n, target in ((1, 2.0), (100, 3.0)):
        assets = data.assets[:n]
        keys = [reader._key(data.tenant, a) for a in assets]
        times = {"target_time": [when] * n}

        def ours(assets=assets, times=times):
            reader.read(SERVICE, data.tenant, assets, times)

        def floor(keys=keys):
            with reader.redis.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.hgetall(k)
                pipe.execute()

        entity_rows = [{"tenant_id": data.tenant, "asset_id": a, "target_time": when} for a in assets]
        got = reader.read(SERVICE, data.tenant, assets, times)
        if got != store.get_online_features(features=fs, entity_rows=entity_rows).to_dict():
            raise AssertionError("online reader and Feast disagree on the bench data")
        if any(v is None for v in got["lag_1h"]):
            raise AssertionError("bench assets are not materialized (lag_1h is NULL)")
        a, b = core.paired(ours, floor, ctx.reps, ctx.warmup)
        stock_samples, _ = core.paired(
            lambda rows=entity_rows: store.get_online_features(features=fs, entity_rows=rows).to_dict(),
            lambda: None, ctx.reps // 2, ctx.warmup)
        rows.append(core.ratio_row(
            f"online features, {SERVICE} incl. calendar, {n} asset{'s' if n > 1 else ''}, p99", "ms",
            core.p(a, 99), core.p(b, 99), max_ratio=target, stock=core.p(stock_samples, 99),
            floor_desc="raw pipelined HGETALL of the same Feast keys (no decoding)",
            details={"ours": core.summary(a), "floor": core.summary(b), "stock": core.summary(stock_samples)}))
    return rows


# ------------------------------------------------------------------------------------ point-in-time join
def entity_frame(data: DataSet, n: int, seed: int = 7) -> pd.DataFrame:
    """n training rows: random assets, issue times anywhere in the window after its first 8 days (whole
    hours and mid-hour), target hours 1-168 h ahead."""
    rng = np.random.default_rng(seed)
    span = int((data.end - data.start) / pd.Timedelta(seconds=1)) - 8 * 86400
    times = data.start + pd.Timedelta(days=8) + pd.to_timedelta(rng.integers(0, span, n) // 900 * 900, unit="s")
    targets = times.floor("h") + pd.to_timedelta(rng.integers(0, 168, n), unit="h")
    return pd.DataFrame({"tenant_id": data.tenant, "asset_id": np.asarray(data.assets)[rng.integers(
        0, len(data.assets), n)], "event_timestamp": times, "target_time": targets})


def _child(mode: str, entities: Path, out: Path, timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run one retrieval in a fresh process (its own peak RSS); mode: ours | stock | floor; `env` on top of ours
    (a tenant role's Feast yaml)."""
    cmd = [sys.executable, "-m", "bench.pit_child", mode, str(entities), str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR", **(env or {})})
    except subprocess.TimeoutExpired:
        return {"seconds": None, "timeout": timeout}
    if proc.returncode != 0:
        raise RuntimeError(f"bench.pit_child {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pit_rows(ctx, data: DataSet) -> list[core.Row]:
    n = 100_000 if ctx.quick else 1_000_000
    work = Path(ctx.work)
    entities = work / f"pit_entities_{n}.parquet"
    entity_frame(data, n).to_parquet(entities, index=False)
    from bench.tenant_role import tenant_settings

    role = {"FEAST_FS_YAML_FILE_PATH": str(tenant_settings(ctx.settings, data.tenant, work).feast_yaml)}
    reps = 1 if ctx.quick else 2
    ours, floor, rls = [], [], []
    for _ in range(reps):
        ours.append(_child("ours", entities, work / "pit_ours.parquet", 3600))
        rls.append(_child("ours", entities, work / "pit_rls.parquet", 3600, env=role))
        floor.append(_child("floor", entities, work / "pit_floor.csv", 3600))
    stock = None
    if not ctx.quick:
        small = work / "pit_entities_100000.parquet"
        entity_frame(data, 100_000).to_parquet(small, index=False)
        stock = _child("stock", small, work / "pit_stock.parquet", 300)
    best = min(ours, key=lambda r: r["seconds"])
    best_floor = min(floor, key=lambda r: r["seconds"])
    row = core.ratio_row(
        f"point-in-time training set, {n:,} entity rows -> Parquet ({SERVICE})", "s", best["seconds"],
        best_floor["seconds"], max_ratio=1.5,
        stock=stock["seconds"] if stock else None,
        stock_note=("100k entity rows" if stock and stock["seconds"] is not None else
                    f"100k entity rows: did not finish in {stock['timeout']:.0f} s" if stock else "full run only"),
        floor_desc="entity rows by COPY into a temp table, each view's rows for those assets and times into an "
                   "indexed temp table, LATERAL latest-row-at-or-before join in Postgres, result streamed out "
                   "with COPY (bytes, no parsing, no calendar)",
        details={"ours": ours, "floor": floor, "stock_100k": stock, "peak_rss_mb": best["peak_rss_mb"]})
    rss_ok = best["peak_rss_mb"] < 2048
    row.passed = row.passed and rss_ok
    row.target += f"; peak RSS < 2 GiB (was {best['peak_rss_mb']:,.0f} MB)"
    best_rls = min(rls, key=lambda r: r["seconds"])
    if best_rls["rows"] != best["rows"]:
        raise AssertionError(f"the tenant role's training set has {best_rls['rows']} rows, "
                             f"the operator's {best['rows']}")
    rls_row = core.ratio_row(
        f"point-in-time training set, {n:,} entity rows, tenant role with row-level security", "s",
        best_rls["seconds"], best_floor["seconds"], max_ratio=1.5,
        floor_desc=f"the operator's floor of the row above; project as role tenant_{data.tenant} (its own Feast yaml, "
                   "db_schema tenant_scope), run alternated with the operator's",
        details={"ours_rls": rls, "operator_s": best["seconds"], "peak_rss_mb": best_rls["peak_rss_mb"]})
    rls_row.passed = rls_row.passed and best_rls["peak_rss_mb"] < 2048
    rls_row.target += f"; peak RSS < 2 GiB (was {best_rls['peak_rss_mb']:,.0f} MB)"
    return [row, rls_row]

