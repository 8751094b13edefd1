"""`ems bench --only scale` (issue 22): the Spark paths against the single-process ones, same run, same data.

- Materialize every bench asset (all online views, the latest row per asset) through the write path of
  `ems materialize` (warehouse/materialize.py `write_views`: the LATERAL read, Feast's conversion, the
  online store), without its queue bookkeeping so the shared stack's queue is left alone: the local engine,
  then deploy/feature_store.spark.yaml at local[1] and local[2] (Feast's partition writer). Throughput in
  entity rows per second after one warm-up run per engine (the first Spark job also starts the Python
  workers); the JVM and SparkContext start are timed separately.
- Batch forecast of every bench asset with the bench forecaster: `forecast_all` in process (the per-asset
  loop) vs Spark local[2] (one SDK Client per partition), without the forecast log (nothing written).
- Training sets (bench/rows_training_sets.py): N entity rows from the Postgres store and from Feast's Spark
  offline store local[2] over the exported history, peak driver memory, growth with N.
Throughput per worker matters more than absolute time here: these machines have 2 cores shared with others.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from bench import core
from bench.data import DataSet
from core.settings import ROOT

SPARK_YAML = ROOT / "deploy" / "feature_store.spark.yaml"


def spark_environment(settings, master: str) -> dict[str, str]:
    """The variables deploy/feature_store.spark.yaml reads, from the stores `settings` points at."""
    pg, redis = settings.feast_config["offline_store"], settings.redis
    return {"EMS_PG_HOST": str(pg["host"]), "EMS_PG_PORT": str(pg["port"]), "EMS_PG_DATABASE": pg["database"],
            "EMS_PG_USER": pg["user"], "EMS_PG_PASSWORD": pg["password"],
            "EMS_PG_SSLMODE": pg.get("sslmode", "disable"),
            "EMS_REDIS_HOST": redis.host, "EMS_REDIS_PORT": str(redis.port), "EMS_REDIS_USERNAME": redis.username or "",
            "EMS_REDIS_PASSWORD": redis.password or "", "EMS_SPARK_MASTER": master,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}


@contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def spark_store(settings, master: str):
    """A FeatureStore loaded from deploy/feature_store.spark.yaml at `master`, on the stores of `settings`."""
    from feast import FeatureStore

    with _environ(spark_environment(settings, master)):
        return FeatureStore(repo_path=str(ROOT), fs_yaml_file=SPARK_YAML)


SPARK_OFFLINE_YAML = ROOT / "deploy" / "feature_store.spark_offline.yaml"


def spark_offline_store(settings, master: str, history_uri: str):
    """A FeatureStore loaded from deploy/feature_store.spark_offline.yaml: Feast's Spark offline store at
    `master` over the history exported to `history_uri`, same registry as `settings`."""
    from feast import FeatureStore

    with _environ({**spark_environment(settings, master), "EMS_HISTORY_URI": history_uri}):
        return FeatureStore(repo_path=str(ROOT), fs_yaml_file=SPARK_OFFLINE_YAML)


def scale_rows(ctx, data: DataSet, store, model_id: str) -> list[core.Row]:
    from pyspark.sql import SparkSession

    from warehouse import spark
    from warehouse.materialize import write_views

    views = [fv for fv in store.list_batch_feature_views() if fv.online]
    entities = [(data.tenant, a) for a in data.assets]
    end = data.end.to_pydatetime()

    def materialize(s) -> tuple[float, int]:
        started = time.perf_counter()
        written = sum(write_views(ctx.settings, s, views, entities, end).values())
        return time.perf_counter() - started, written

    rows: list[core.Row] = []
    materialize(store)  # warm-up: connections, registry cache
    local_s, written = materialize(store)
    local_rps = written / local_s
    starts, per_master = {}, {}
    for master in ("local[1]", "local[2]"):
        s = spark_store(ctx.settings, master)
        t0 = time.perf_counter()
        spark.session(s.config)
        starts[master] = time.perf_counter() - t0
        first_s, _ = materialize(s)  # Python workers start and import Feast on the first job
        seconds, n = materialize(s)
        per_master[master] = {"store": s, "seconds": seconds, "first_s": first_s, "rows": n}
        if master == "local[1]":
            SparkSession.getActiveSession().stop()
    one, two = (per_master[m]["rows"] / per_master[m]["seconds"] for m in ("local[1]", "local[2]"))
    name = f"materialize {len(data.assets)} assets x {len(views)} views"
    common = {"entity_rows": written, "local_s": local_s,
              **{f"spark_{m}": {k: v for k, v in d.items() if k != "store"} for m, d in per_master.items()}}
    rows.append(core.Row(f"{name}, spark.engine local[1] vs local engine", "rows/s", one, local_rps,
                         "informational", True, one / local_rps, floor_desc="local engine, same write path, same run",
                         details=common))
    rows.append(core.Row(f"{name}, spark.engine local[2] vs local[1] (speed-up per added worker)", "rows/s", two,
                         one, "informational", True, two / one, floor_desc="spark.engine local[1], same run",
                         details=common))
    rows.append(core.Row("Spark start: JVM + SparkContext (first session), then a new context (local[2])", "s",
                         starts["local[1]"], starts["local[2]"], "informational", True,
                         starts["local[1]"] / starts["local[2]"], floor_desc="second session in the same JVM",
                         details={"first_job_s": {m: d["first_s"] for m, d in per_master.items()}}))
    rows += _forecast_rows(ctx, data, per_master["local[2]"]["store"], model_id)
    SparkSession.getActiveSession().stop()
    from bench.rows_training_sets import training_set_rows

    # its own session: the Spark offline store's config
    return rows + training_set_rows(ctx, data, store, ctx.training_rows)


def _forecast_rows(ctx, data: DataSet, spark_s, model_id: str) -> list[core.Row]:
    from inference.batch import forecast_all

    def run(engine: str, assets: list[str]):
        return forecast_all(ctx.settings, data.tenant, 24, model=model_id, engine=engine, log=False, assets=assets,
                            store=spark_s if engine == "spark" else None)

    run("local", data.assets[:4])
    run("spark", data.assets[:4])  # warm-up: each Python worker loads the model once
    local, remote = run("local", data.assets), run("spark", data.assets)
    cols = ["asset_id", "horizon_h", "point", "p10", "p50", "p90"]
    same = local.rows[cols].reset_index(drop=True).equals(remote.rows[cols].reset_index(drop=True))
    if not same:
        raise AssertionError("batch forecast on Spark differs from the in-process loop on the bench data")
    return [core.Row(f"batch forecast {local.assets} assets x 24 h, Spark local[2] vs per-asset loop in process",
                     "assets/s", remote.assets / remote.seconds, local.assets / local.seconds, "informational", True,
                     (remote.assets / remote.seconds) / (local.assets / local.seconds),
                     floor_desc="Client.forecast per asset in one process, same model version, same run",
                     details={"local_s": local.seconds, "spark_s": remote.seconds, "identical_rows": same,
                              "skipped": len(local.skipped)})]
