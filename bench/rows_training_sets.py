"""`ems bench --only scale`, training sets (issue 22 item 2): a point-in-time training set of N entity rows
from EmsPostgresOfflineStore (the warehouse) and from Feast's Spark offline store, local[2], over the history
`ems export history` wrote to a local folder (pyspark has no S3 connector here: README "Scaling out").

The spine: N (asset, issue hour, target hour) rows drawn with a fixed seed from the bench tenant's hours
(horizons 1-24 h), feature service `forecast_weather` (lags, rolling windows, the calendar on-demand view,
site weather). Postgres gets it as a pandas frame (its COPY path), Spark as a Parquet spine read by Spark
(a pandas frame would be serialised from the driver). Both results are compared row for row. Peak memory:
the resident set of this process (the driver's Python side) and, for Spark, of its JVM (driver and local
executors share it), sampled every 50 ms during the call; Postgres' own memory is not counted.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd

from bench import core
from bench.data import DataSet

SERVICE = "forecast_weather"
QUICK_SIZES, FULL_SIZES = (20_000, 60_000), (100_000, 300_000)  # 1M: sizes=(1_000_000,) (README)


@contextmanager
def peak_memory(out: dict):
    """Peak RSS (MB) of this process and of its java children while the block runs."""
    import psutil

    me, stop = psutil.Process(), threading.Event()
    out.update(python_mb=0.0, jvm_mb=0.0)

    def sample() -> None:
        while not stop.is_set():
            out["python_mb"] = max(out["python_mb"], me.memory_info().rss / 2**20)
            jvm = 0
            for child in me.children(recursive=True):
                try:
                    if child.name() == "java":
                        jvm += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            out["jvm_mb"] = max(out["jvm_mb"], jvm / 2**20)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()


def spine(data: DataSet, n: int, seed: int = 22) -> pd.DataFrame:
    """n distinct (asset, issue hour, horizon) rows after the first week (the 168 h windows are full)."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(data.start + pd.Timedelta(days=8), data.end - pd.Timedelta(hours=1), freq="h")
    cells = len(data.assets) * len(hours) * 24
    pick = rng.choice(cells, size=min(n, cells), replace=False)
    asset, rest = np.divmod(pick, len(hours) * 24)
    hour, horizon = np.divmod(rest, 24)
    origin = hours[hour]
    return pd.DataFrame({"tenant_id": data.tenant, "asset_id": np.asarray(data.assets)[asset],
                         "event_timestamp": origin,
                         "target_time": origin + pd.to_timedelta(horizon + 1, unit="h")})


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
        elif pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype("float64")
    return out[sorted(out.columns)].sort_values(["asset_id", "event_timestamp", "target_time"]).reset_index(drop=True)


def training_set_rows(ctx, data: DataSet, store, sizes: tuple[int, ...] | None = None) -> list[core.Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        get_spark_session_or_start_new_with_repoconfig,
    )

    from bench.rows_scale import spark_offline_store
    from warehouse.history import export_history

    history = ctx.work / "history"
    started = time.perf_counter()
    exported = export_history(ctx.settings, data.tenant, f"file://{history}")
    export_s = time.perf_counter() - started
    spark_s = spark_offline_store(ctx.settings, "local[2]", f"file://{history}")
    t0 = time.perf_counter()
    session = get_spark_session_or_start_new_with_repoconfig(spark_s.config.offline_store)
    jvm_start_s = time.perf_counter() - t0
    pg_service, spark_service = store.get_feature_service(SERVICE), spark_s.get_feature_service(SERVICE)
    warm = spine(data, 2_000)  # warm-up: registry caches, the first Spark job
    store.get_historical_features(entity_df=warm, features=pg_service).to_df()
    spark_s.get_historical_features(entity_df=warm, features=spark_service).to_df()
    rows, measured = [], {}
    for n in sizes or (QUICK_SIZES if ctx.quick else FULL_SIZES):
        entities = spine(data, n)
        path = ctx.work / f"spine-{n}.parquet"
        pq.write_table(pa.Table.from_pandas(entities, preserve_index=False), path, coerce_timestamps="us")
        pg_mem, spark_mem = {}, {}
        with peak_memory(pg_mem):
            t0 = time.perf_counter()
            want = store.get_historical_features(entity_df=entities, features=pg_service).to_df()
            pg_s = time.perf_counter() - t0
        with peak_memory(spark_mem):
            t0 = time.perf_counter()
            got = spark_s.get_historical_features(entity_df=session.read.parquet(str(path)),
                                                  features=spark_service).to_df()
            sp_s = time.perf_counter() - t0
        same = canonical(want).equals(canonical(got))
        if not same:
            raise AssertionError(f"Spark training set of {n:,} rows differs from the Postgres store's")
        measured[n] = {"postgres_s": pg_s, "spark_s": sp_s, "postgres_peak": pg_mem, "spark_peak": spark_mem,
                       "rows": len(got)}
        ctx.log(f"training set {n:,} rows: postgres {pg_s:.1f} s, spark local[2] {sp_s:.1f} s")
        rows.append(core.Row(
            f"training set {n:,} entity rows ({SERVICE}), Spark offline store local[2] vs EmsPostgresOfflineStore",
            "rows/s", n / sp_s, n / pg_s, "informational", True, pg_s / sp_s,
            floor_desc="EmsPostgresOfflineStore (COPY + LATERAL), same spine, same run",
            details={**measured[n], "identical_rows": same, "export_s": export_s, "jvm_start_s": jvm_start_s,
                     "exported_rows": exported.rows}))
    sizes_run = sorted(measured)
    if len(sizes_run) >= 2:
        a, b = sizes_run[0], sizes_run[-1]
        growth = {k: measured[b][k] / measured[a][k] for k in ("postgres_s", "spark_s")}
        rows.append(core.Row(f"training set time growth {a:,} -> {b:,} rows ({b / a:.0f}x rows): Spark vs Postgres",
                             "x", growth["spark_s"], growth["postgres_s"], "informational", True,
                             growth["spark_s"] / growth["postgres_s"], floor_desc="Postgres store's growth, same run",
                             details={"measured": measured}))
    session.stop()
    return rows
