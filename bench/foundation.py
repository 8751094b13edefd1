"""Foundation measurements against the running local stack, each next to a raw floor measured in
the same run on the same data (these machines are shared and noisy: read the ratios).

    .venv/bin/python bench/foundation.py [--assets 100] [--reps 300] [--json out.json]

1. ingest rows/s vs raw `COPY FROM` of the same rows into a table shaped like `readings`;
2. materialize rows/s (Feast) vs `DISTINCT ON` latest row + the same serialization + pipelined HSET;
3. `get_online_features` p50/p99 for 1 and N assets vs raw pipelined HGETALL of the same keys.

The workload is real data re-keyed: the PJM files split by calendar month, one asset per month
(tenant `bench`), so there are hundreds of entities. `ems bench` (a later issue) grows from this.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.store import get_store  # noqa: E402
from stack.settings import ROOT, Settings  # noqa: E402
from warehouse import validate as v  # noqa: E402
from warehouse.db import connect  # noqa: E402
from warehouse.ingest import ingest_readings  # noqa: E402
from warehouse.refresh import refresh  # noqa: E402

TENANT = "bench"


def monthly_assets(tmp: Path) -> Path:
    """Tidy file: each calendar month of each PJM series becomes one asset."""
    frames = []
    for name in ("aep", "pjme"):
        df = pd.read_csv(ROOT / "data" / f"pjm_{name}_hourly.csv.gz", dtype=str)
        df["asset_id"] = name + "-" + df["timestamp"].str[:7]
        frames.append(df.rename(columns={"load_mw": "value"})[["asset_id", "timestamp", "value"]])
    path = tmp / "bench_monthly.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def reset_tenant(settings: Settings) -> None:
    with connect(settings) as conn:
        for table in ("readings", "readings_hourly", "readings_refresh_queue", "assets"):
            conn.execute(sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)), (TENANT,))


def bench_ingest(settings: Settings, path: Path) -> dict:
    reset_tenant(settings)
    t0 = time.perf_counter()
    report = ingest_readings(settings, path, TENANT, tz="America/New_York", period_ending=pd.Timedelta("1h"))
    ingest_s = time.perf_counter() - t0
    # Floor: the same validated rows, already CSV, COPY'd into a table shaped like readings.
    checked = v.validate_readings(v.read_table(path), tz="America/New_York", period_ending=pd.Timedelta("1h"))
    rows = checked.rows.assign(tenant_id=TENANT)[["tenant_id", "asset_id", "ts", "value"]]
    buf = io.StringIO()
    rows.to_csv(buf, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S%z")
    payload = buf.getvalue()
    with connect(settings) as conn:
        conn.execute("CREATE TEMP TABLE floor_readings (LIKE readings INCLUDING ALL)")
        t0 = time.perf_counter()
        with conn.cursor().copy("COPY floor_readings (tenant_id, asset_id, ts, value) FROM STDIN (FORMAT csv)") as cp:
            cp.write(payload)
        copy_s = time.perf_counter() - t0
        conn.rollback()
    n = report.inserted
    return {"rows": n, "assets": len(report.assets), "ingest_s": ingest_s, "ingest_rows_per_s": n / ingest_s,
            "raw_copy_s": copy_s, "raw_copy_rows_per_s": n / copy_s, "ratio_vs_copy": (n / ingest_s) / (n / copy_s)}


def bench_materialize(settings: Settings, store) -> dict:
    """Full materialize of every online view (as a first `ems materialize` does) vs the floor."""
    import redis
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from google.protobuf.timestamp_pb2 import Timestamp

    views = [fv for fv in store.list_batch_feature_views() if fv.online]
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC)
    with connect(settings) as conn:
        source_rows = sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.SQL(fv.batch_source.get_table_query_string()))).fetchone()[0] for fv in views)
    t0 = time.perf_counter()
    for fv in views:
        store.materialize(start_date=start, end_date=end, feature_views=[fv.name])
    feast_s = time.perf_counter() - t0

    addr = settings.redis
    client = redis.Redis(addr.host, addr.port, db=1)  # db 1: never touches the online store's keys
    client.flushdb()
    project = store.config.project
    t0 = time.perf_counter()
    written = 0
    for fv in views:
        names = [f.name for f in fv.features]
        query = sql.SQL(
            "SELECT DISTINCT ON (tenant_id, asset_id) tenant_id, asset_id, event_timestamp, {cols} FROM {src}"
            " ORDER BY tenant_id, asset_id, event_timestamp DESC"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, names)),
                 src=sql.SQL(fv.batch_source.get_table_query_string()))
        with connect(settings) as conn:
            rows = conn.execute(query).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else []
        protos = {n: python_values_to_proto_values(list(columns[3 + i]), f.dtype.to_value_type())
                  for i, (n, f) in enumerate(zip(names, fv.features, strict=True))}
        ts_key = f"_ts:{fv.name}"
        field_keys = {n: _mmh3(f"{fv.name}:{n}") for n in names}
        with client.pipeline(transaction=False) as pipe:
            for i, (tenant, asset, ts, *_) in enumerate(rows):
                key = EntityKey(join_keys=["tenant_id", "asset_id"],
                                entity_values=[Value(string_val=tenant), Value(string_val=asset)])
                stamp = Timestamp()
                stamp.FromDatetime(ts)
                mapping = {ts_key: stamp.SerializeToString()}
                mapping.update({field_keys[n]: protos[n][i].SerializeToString() for n in names})
                pipe.hset(_redis_key(project, key, store.config.entity_key_serialization_version), mapping=mapping)
            pipe.execute()
        written += len(rows)
    floor_s = time.perf_counter() - t0
    client.flushdb()
    return {"source_rows": source_rows, "entities_written": written, "feast_s": feast_s,
            "feast_rows_per_s": source_rows / feast_s, "floor_s": floor_s,
            "floor_rows_per_s": source_rows / floor_s, "ratio_time_vs_floor": feast_s / floor_s}


def bench_online(settings: Settings, store, n_assets: int, reps: int) -> dict:
    import redis
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    with connect(settings) as conn:
        assets = [r[0] for r in conn.execute("SELECT asset_id FROM assets WHERE tenant_id = %s ORDER BY asset_id"
                                             " LIMIT %s", (TENANT, n_assets))]
    service = store.get_feature_service("forecast_advanced")
    when = pd.Timestamp("2018-08-03 04:00", tz="UTC")
    addr = settings.redis
    client = redis.Redis(addr.host, addr.port, db=addr.db)
    out = {}
    for n in (1, len(assets)):
        rows = [{"tenant_id": TENANT, "asset_id": a, "target_time": when} for a in assets[:n]]
        keys = [_redis_key(store.config.project, EntityKey(
            join_keys=["tenant_id", "asset_id"], entity_values=[Value(string_val=TENANT), Value(string_val=a)]),
            store.config.entity_key_serialization_version) for a in assets[:n]]
        feast_t, raw_t = [], []
        for i in range(reps + 20):
            t0 = time.perf_counter()
            store.get_online_features(features=service, entity_rows=rows).to_dict()
            t1 = time.perf_counter()
            with client.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.hgetall(k)
                got = pipe.execute()
            t2 = time.perf_counter()
            if i >= 20:
                feast_t.append((t1 - t0) * 1e3)
                raw_t.append((t2 - t1) * 1e3)
        assert all(got), "online store is empty for the bench tenant: materialize first"
        out[f"{n}_assets"] = {
            "feast_p50_ms": statistics.median(feast_t), "feast_p99_ms": float(np.percentile(feast_t, 99)),
            "raw_hgetall_p50_ms": statistics.median(raw_t), "raw_hgetall_p99_ms": float(np.percentile(raw_t, 99)),
            "ratio_p99": float(np.percentile(feast_t, 99) / np.percentile(raw_t, 99)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings()
    store = get_store(settings)
    tmp = settings.home / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {"ingest": bench_ingest(settings, monthly_assets(tmp))}
    refresh(settings)
    results["materialize"] = bench_materialize(settings, store)
    results["online"] = bench_online(settings, store, args.assets, args.reps)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
