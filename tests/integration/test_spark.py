"""Materialization on Spark (issue 22): deploy/feature_store.spark.yaml (`batch_engine: spark.engine`,
local[2]) writes exactly what the local engine writes.

Each comparison starts both engines from the same state: Redis (every key DUMPed), the online refresh
queue and the views' bookkeeping are snapshotted, the local run goes first, then that state is restored
and the Spark run goes; the whole Redis keyspace is compared key by key and field by field.
1. `ems materialize --full` (the CLI on the local engine, its function in this process on Spark), then
   after late data, a correction of the latest hour, a new asset whose data ends years before the others
   (older than the views' TTL) and a backfill of history before an asset's first reading: `ems
   materialize` (change-driven) on both engines.
2. The untouched `feast materialize START END` on a flushed Redis, both yamls.
3. Redis unreachable: `ems materialize` on Spark fails with one line naming Redis, and the queue and the
   views' bookkeeping are as they were; the next run with Redis back writes what was queued.
4. Batch scoring: `ems forecast --all-assets --engine spark` equals per-asset `Client.forecast`, bit for bit.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis

from core.settings import ROOT, Settings, read_feast_yaml
from tests.helpers.data import pjm_slice, tetouan_slice
from tests.helpers.stack import ems, feast
from warehouse.db import connect
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = [pytest.mark.integration]
TENANT = "spark"
SITE = "tetouan-spark"
SPARK_YAML = ROOT / "deploy" / "feature_store.spark.yaml"
END = "2017-02-01T00:00:00"  # every materialization loads event times up to here (all of the data)


@pytest.fixture(scope="module")
def spark_env(env) -> dict[str, str]:
    """The environment that points deploy/feature_store.spark.yaml at the test stack (local[2])."""
    cfg = read_feast_yaml(Path(env["FEAST_FS_YAML_FILE_PATH"]))
    pg, online = cfg["offline_store"], cfg["online_store"]["connection_string"].split(",")
    host, port = online[0].split(":")
    options = dict(part.split("=", 1) for part in online[1:])
    return {**env, "FEAST_FS_YAML_FILE_PATH": str(SPARK_YAML), "EMS_SPARK_MASTER": "local[2]",
            "PYSPARK_PYTHON": sys.executable,
            "EMS_PG_HOST": pg["host"], "EMS_PG_PORT": str(pg["port"]), "EMS_PG_DATABASE": pg["database"],
            "EMS_PG_USER": pg["user"], "EMS_PG_PASSWORD": pg["password"], "EMS_PG_SSLMODE": pg["sslmode"],
            "EMS_REDIS_HOST": host, "EMS_REDIS_PORT": port, "EMS_REDIS_USERNAME": options["username"],
            "EMS_REDIS_PASSWORD": options["password"]}


@pytest.fixture(scope="module")
def client(spark_env):
    return redis.Redis(host=spark_env["EMS_REDIS_HOST"], port=int(spark_env["EMS_REDIS_PORT"]),
                       username=spark_env["EMS_REDIS_USERNAME"], password=spark_env["EMS_REDIS_PASSWORD"])


# ------------------------------------------------------------------ state: Redis, queue, bookkeeping
def redis_contents(client) -> dict[bytes, dict[bytes, bytes]]:
    """Every key of the database with every field (Feast's layout: one hash per entity key)."""
    out = {}
    for key in client.scan_iter(count=1000):
        assert client.type(key) == b"hash", key
        out[key] = client.hgetall(key)
    return out


def snapshot(settings, client) -> dict:
    with connect(settings) as conn:
        tables = {}
        for table in ("online_refresh_queue", "online_views"):
            cur = conn.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
            tables[table] = ([d.name for d in cur.description], cur.fetchall())
    return {"redis": {key: client.dump(key) for key in client.scan_iter(count=1000)}, "tables": tables}


def restore(settings, client, state: dict) -> None:
    client.flushdb()
    for key, value in state["redis"].items():
        client.restore(key, 0, value)
    with connect(settings) as conn, conn.transaction():
        for table, (columns, rows) in state["tables"].items():
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            if rows:
                marks = ", ".join(["%s"] * len(columns))
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608


@contextmanager
def environment(values: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def spark_in_process(spark_env):
    """`ems materialize`'s function on the Spark yaml in this process: one JVM and one set of warm Python
    workers for the module's comparisons (the CLI on Spark is run by the Redis-down and batch tests)."""
    from warehouse.store import get_store, materialize

    def run(full: bool) -> dict:
        with environment(spark_env):
            settings = Settings()
            report = materialize(settings, end=datetime.fromisoformat(END).replace(tzinfo=UTC), full=full,
                                 store=get_store(settings))
        return {"written": report.written, "full": report.full, "queued": report.queued, "end": str(report.end)}

    yield run
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        SparkSession.getActiveSession().stop()


def both_engines(settings, client, env, spark_run, *args: str) -> tuple[dict, dict, dict]:
    """`ems materialize ARGS --json` on the local engine, and the same on Spark from the same state:
    (Redis before, Redis after the local run, its JSON report); asserts Spark's Redis and report are the same."""
    state = snapshot(settings, client)
    before = redis_contents(client)
    local_doc = json.loads(ems("materialize", *args, "--end", END, "--json", env=env).stdout)
    local = redis_contents(client)
    restore(settings, client, state)
    assert redis_contents(client) == before
    spark_doc = spark_run(full="--full" in args)
    spark = redis_contents(client)
    assert spark_doc == local_doc
    assert_same_contents(local, spark)
    return before, local, local_doc


def assert_same_contents(local: dict, spark: dict) -> None:
    assert set(spark) == set(local), (len(local), len(spark))
    differ = [key for key in local if local[key] != spark[key]]
    assert not differ, f"{len(differ)} of {len(local)} keys differ, first {differ[0]!r}: " \
                       f"{local[differ[0]]} vs {spark[differ[0]]}"


def entity_keys(store, tenant: str, assets: list[str]) -> dict[str, bytes]:
    """Each asset's Redis key (Feast's own serialization, as the SDK's online reader builds it)."""
    from inference.online import online_reader

    reader = online_reader(store)
    return {asset: reader._key(tenant, asset) for asset in assets}


# ------------------------------------------------------------------ data
def load_demo(settings, tmp: Path) -> None:
    """Tetouan zones 1-2 (2017-01-01 .. 01-29) and zone 3 from 01-24 on, with their weather."""
    first = tetouan_slice(tmp / "tet.csv", "2017-01-01", "2017-01-29")
    ingest_readings(settings, first, TENANT, wide=True, site=SITE,
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    ingest_weather(settings, first, SITE, columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    later = tetouan_slice(tmp / "tet-z3.csv", "2017-01-24", "2017-01-29")
    ingest_readings(settings, later, TENANT, wide=True, site=SITE, columns="zone3=zone3_power_consumption")
    refresh(settings)


def late_data(settings, tmp: Path) -> None:
    """A late hour of zone1 30 h before its latest, a correction of zone2's latest hour (same event time,
    new values), PJM AEP as a new asset ending in 2016 (long before the TTL of the others' latest rows)
    and a backfill of zone3 from 01-01 to its first reading (its latest row gains lag_168h and full windows)."""
    last = pd.Timestamp("2017-01-29")
    pd.DataFrame({"asset_id": "zone1", "timestamp": pd.date_range(last - pd.Timedelta("30h"), periods=6,
                                                                   freq="10min"), "value": 5000.0}
                 ).to_csv(tmp / "late.csv", index=False)
    ingest_readings(settings, tmp / "late.csv", TENANT, site=SITE)
    pd.DataFrame({"asset_id": "zone2", "timestamp": pd.date_range(last - pd.Timedelta("1h"), periods=6,
                                                                   freq="10min"), "value": 1.0}
                 ).to_csv(tmp / "fix.csv", index=False)
    assert ingest_readings(settings, tmp / "fix.csv", TENANT, site=SITE).updated == 6
    pjm = pjm_slice(tmp / "pjm.csv")
    ingest_readings(settings, pjm, TENANT, wide=True, columns="pjm_aep=load_mw", site="pjm-spark",
                    tz="America/New_York", period_ending=timedelta(hours=1))
    old = tetouan_slice(tmp / "tet-z3-old.csv", "2017-01-01", "2017-01-24")
    ingest_readings(settings, old, TENANT, wide=True, site=SITE, columns="zone3=zone3_power_consumption")
    refresh(settings)


# ------------------------------------------------------------------ 1 + 2: the same Redis as the local engine
def test_spark_engine_writes_exactly_what_the_local_engine_writes(stack, store, env, spark_env, spark_in_process,
                                                                  client, tmp_path):
    load_demo(stack, tmp_path)
    before, full, doc = both_engines(stack, client, env, spark_in_process, "--full")
    keys = entity_keys(store, TENANT, ["zone1", "zone2", "zone3", "pjm_aep"])
    assert all(keys[a] in full for a in ("zone1", "zone2", "zone3")) and keys["pjm_aep"] not in full
    assert doc["written"]["load_lags"] >= 3

    late_data(stack, tmp_path)
    before, after, doc = both_engines(stack, client, env, spark_in_process)
    assert doc["queued"] >= 4, doc
    assert keys["pjm_aep"] in after  # the new asset whose data ends in 2016
    for asset in ("zone1", "zone2", "zone3"):  # the late hour, the correction, the backfill moved each row
        assert after[keys[asset]] != before[keys[asset]], asset

    # the untouched `feast materialize START END`, each engine on an empty Redis
    state = snapshot(stack, client)
    try:
        contents = []
        for environment in (env, spark_env):
            client.flushdb()
            feast("materialize", "2016-01-01T00:00:00", END, env=environment)
            contents.append(redis_contents(client))
        assert keys["pjm_aep"] in contents[0] and keys["zone1"] in contents[0]
        assert_same_contents(*contents)
    finally:
        restore(stack, client, state)


# ------------------------------------------------------------------ 3: Redis unreachable
def test_spark_materialize_with_redis_unreachable_fails_once_and_keeps_the_bookkeeping(stack, env, spark_env,
                                                                                       client, tmp_path):
    pd.DataFrame({"asset_id": "zone9", "timestamp": pd.date_range("2017-01-20", periods=48, freq="h"),
                  "value": 42.0}).to_csv(tmp_path / "z9.csv", index=False)
    ingest_readings(stack, tmp_path / "z9.csv", TENANT, site=SITE)
    refresh(stack)
    state = snapshot(stack, client)
    assert state["tables"]["online_refresh_queue"][1], "nothing queued"
    closed = {**spark_env, "EMS_REDIS_PORT": str(_free_port())}
    proc = ems("materialize", "--end", END, env=closed, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    error = [line for line in proc.stderr.splitlines() if "Redis" in line]
    assert len(error) == 1 and f"127.0.0.1:{closed['EMS_REDIS_PORT']}" in error[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1] == error[0], proc.stderr
    after = snapshot(stack, client)
    assert after["tables"] == state["tables"]  # queue and views' bookkeeping not advanced
    # Redis back: the next run (the local engine, sparing a second JVM start here) writes what was queued
    doc = json.loads(ems("materialize", "--end", END, "--json", env=env).stdout)
    assert doc["written"]["load_lags"] >= 1
    with connect(stack) as conn:
        assert conn.execute("SELECT count(*) FROM online_refresh_queue").fetchone()[0] == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_spark_yaml_names_the_engine(spark_env):
    """The yaml Feast loads from this environment really selects Spark (else the tests above compare the
    local engine with itself)."""
    from feast.repo_config import load_repo_config

    saved = dict(os.environ)
    try:
        os.environ.update(spark_env)
        config = load_repo_config(ROOT, SPARK_YAML)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert config.batch_engine.type == "spark.engine"
    assert config.batch_engine.spark_conf["spark.master"] == "local[2]"


# ------------------------------------------------------------------ 4: batch scoring on Spark
def test_batch_forecast_on_spark_equals_each_per_asset_forecast(stack, store, env, spark_env, tmp_path):
    from inference.client import Client
    from registry import lifecycle, train_forecast
    from tests.helpers.api import FAST, SPLIT

    tenant = "spark-batch"
    tet = tetouan_slice(tmp_path / "tet.csv", "2017-01-01", "2017-01-29")
    ingest_readings(stack, tet, tenant, wide=True, site="tetouan-batch",
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption,"
                            "zone3=zone3_power_consumption")
    ingest_weather(stack, tet, "tetouan-batch", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    ems("materialize", env=env)
    trained = train_forecast.train(stack, store, tenant, split=SPLIT, boosting=FAST)
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)

    proc = ems("forecast", "--tenant", tenant, "--all-assets", "--engine", "spark", "--horizon", "24",
               "--out", str(tmp_path / "out"), "--json", env=spark_env)
    doc = json.loads(proc.stdout)
    assert doc == {**doc, "model_id": trained.model_id, "engine": "spark", "assets": 3, "rows": 72, "skipped": {}}
    batch = pd.read_parquet(tmp_path / "out" / f"tenant={tenant}").set_index(["asset_id", "horizon_h"])
    with connect(stack) as conn:
        logged = pd.DataFrame(conn.execute(
            "SELECT asset_id, model_id, issue_time, target_time, horizon_h, point, p10, p50, p90 FROM forecast_log"
            " WHERE tenant_id = %s", (tenant,)).fetchall(),
            columns=["asset_id", "model_id", "issue_time", "target_time", "horizon_h", "point", "p10", "p50", "p90"])
    assert len(logged) == 72 and set(logged["model_id"]) == {trained.model_id}
    logged = logged.set_index(["asset_id", "horizon_h"])
    client = Client(stack, store=store)
    for asset in ("zone1", "zone2", "zone3"):
        one = client.forecast(tenant, asset, 24)
        assert one.model_id == trained.model_id
        frame = one.frame.set_index("horizon_h")
        got = batch.loc[asset]
        assert (got["model_id"] == one.model_id).all()
        assert (got["feature_time"] == pd.Timestamp(one.feature_time)).all()
        assert (got["timestamp"].to_numpy() == pd.to_datetime(frame["timestamp"], utc=True).to_numpy()).all()
        for column in ("point", "p10", "p50", "p90"):  # the same code on the executors: bit for bit
            assert got[column].tolist() == frame[column].tolist(), (asset, column)
            assert logged.loc[asset, column].sort_index().tolist() == frame[column].tolist(), (asset, column)
        assert (logged.loc[asset, "issue_time"] == pd.Timestamp(one.feature_time)).all()
