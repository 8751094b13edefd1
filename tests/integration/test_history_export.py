"""History export and training sets on Spark (issue 22 item 2).

1. `ems export history` to the suite's S3 server (SeaweedFS): date partitions with microsecond timestamps
   holding exactly the warehouse's rows; a rerun writes nothing; a corrected hour rewrites the day it is
   in (readings) and only the feature days that depend on it; unknown tenant, a backward range and an
   unreachable S3 are one error each with nothing written.
2. The same export code to a local path, read by deploy/feature_store.spark_offline.yaml (Feast's Spark
   offline store, local[2]): the point-in-time training set equals EmsPostgresOfflineStore's row for row for
   every feature of every service in core.names.FEATURE_SERVICES, calendar included (values, NULLs,
   exact-hour and TTL edges, rows before the data, an unknown asset), in one retrieval: each view is joined
   on its own, and one call costs what one service did (15-35 s per service on this busy machine). pyspark
   has no S3 connector here (README "Scaling out"), so Spark reads the local copy.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from core.errors import InvalidRangeError, UnknownAssetError
from core.names import FEATURE_SERVICES
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.covariates import ingest_forecasts
from warehouse.db import connect
from warehouse.history import HistoryExportError, export_history, partition_path, target
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.spark_offline import ChunkedSparkRetrievalJob

pytestmark = pytest.mark.integration
TENANT, SITE = "hist", "hist-site"
START, END = pd.Timestamp("2017-01-01", tz="UTC"), pd.Timestamp("2017-01-15", tz="UTC")


@pytest.fixture(scope="module")
def loaded(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hist")
    tet = tetouan_slice(tmp / "t.csv", "2017-01-01", "2017-01-15")
    ingest_readings(stack, tet, TENANT, wide=True, site=SITE,
                    columns="z1=zone1_power_consumption,z2=zone2_power_consumption")
    ingest_readings(stack, tet, TENANT, wide=True, columns="z3=zone3_power_consumption", asset_tz="America/New_York")
    quarter = pd.read_csv(tet, parse_dates=["timestamp"]).set_index("timestamp")["zone1_power_consumption"]
    quarter = quarter.astype(float).resample("15min").mean()  # q1: a 15-minute meter (the sub-hourly tables)
    pd.DataFrame({"asset_id": "q1", "timestamp": quarter.index, "value": quarter.to_numpy()}).to_csv(
        tmp / "q1.csv", index=False)
    ingest_readings(stack, tmp / "q1.csv", TENANT, site=SITE)
    ingest_weather(stack, tet, SITE, columns="temperature,humidity,wind_speed,solar_irradiance=general_diffuse_flows")
    issues = pd.date_range("2017-01-08", "2017-01-13", freq="12h", tz="UTC")
    pd.DataFrame([(i, i + pd.Timedelta(hours=h), 10.0 + h / 10, 60.0 - h, 5.0 * h, 3.0 + h / 7)
                  for i in issues for h in range(1, 37)],
                 columns=["issue_time", "target_time", "temperature", "humidity", "solar_irradiance", "wind_speed"]
                 ).to_csv(tmp / "fc.csv", index=False)
    ingest_forecasts(stack, tmp / "fc.csv", SITE)
    refresh(stack)
    return tmp


def files(fs, root: str) -> dict[str, tuple[int, str]]:
    """Every object under root (but staging) with its modification time and content digest: what a run wrote.

    Both, because neither alone is enough: S3 times have a one-second grain and the suite's server has been
    seen listing an overwritten manifest with its old time (CI), while a day rewritten with the same bytes
    changes only the time."""
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    out = {}
    for i in infos:
        if i.type == pafs.FileType.File and "/_staging/" not in i.path:
            with fs.open_input_stream(i.path) as f:
                out[i.path] = (i.mtime_ns or 0, hashlib.sha256(f.read()).hexdigest())
    return out


# ------------------------------------------------------------------ 1: S3 export
@pytest.mark.warehouse  # also on TimescaleDB: the export reads the hypertables' chunks
def test_export_to_s3_is_incremental_and_exact(stack, loaded, env):
    uri = f"s3://{stack.s3_bucket}/history-test"
    fs, root = target(uri, stack)
    first = export_history(stack, TENANT, uri)
    assert first.written["readings"] == [f"2017-01-{d:02d}" for d in range(1, 15)]
    lags_path = partition_path(root, "load_lag_features", "2017-01-05", TENANT)
    exported = pq.read_table(lags_path, filesystem=fs)
    assert exported.schema.field("event_timestamp").type.unit == "us"
    with connect(stack) as conn:
        cur = conn.execute("SELECT * FROM load_lag_features WHERE tenant_id = %s AND event_timestamp >= "
                           "'2017-01-05' AND event_timestamp < '2017-01-06' ORDER BY asset_id, event_timestamp",
                           (TENANT,))
        expected = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    assert len(expected) == 4 * 24
    pd.testing.assert_frame_equal(exported.to_pandas(), expected, check_dtype=False, check_exact=True)
    manifest = json.loads(fs.open_input_stream(f"{root}/readings/_manifests/{TENANT}.json").read())
    assert len(manifest["partitions"]) == 14

    before = files(fs, root)
    again = export_history(stack, TENANT, uri)
    assert again.written == {} and again.rows == 0 and files(fs, root) == before  # a rerun writes nothing

    fix = pd.DataFrame({"asset_id": "z1", "timestamp": pd.date_range("2017-01-10 05:00", periods=6, freq="10min"),
                        "value": 1.0})
    fix.to_csv(loaded / "fix.csv", index=False)
    assert ingest_readings(stack, loaded / "fix.csv", TENANT, site=SITE).updated == 6
    refresh(stack)
    late = export_history(stack, TENANT, uri)
    assert late.written["readings"] == ["2017-01-10"]  # the corrected hour's day, nothing else
    # features that read the hour: lag_1h at 06:00 (same day), lag_24h a day later, lag_168h beyond the data
    assert late.written["load_lag_features"] == ["2017-01-10", "2017-01-11"]
    # the 168 h windows up to the last event time (01-15 00:00, the end of the last hour)
    assert late.written["load_rolling_features"] == [f"2017-01-{d:02d}" for d in range(10, 16)]
    assert "asset_weather_features" not in late.written and "asset_profile_features" not in late.written
    after = files(fs, root)
    rewritten = {p for p in after if after[p] != before.get(p)}
    assert rewritten == {partition_path(root, t, d, TENANT) for t, days in late.written.items() for d in days} | {
        f"{root}/{t}/_manifests/{TENANT}.json" for t in late.written}
    day = pq.read_table(partition_path(root, "readings", "2017-01-10", TENANT), filesystem=fs).to_pandas()
    assert (day.loc[(day.asset_id == "z1") & (day.ts.dt.hour == 5), "value"] == 1.0).all()


@pytest.mark.warehouse  # also on TimescaleDB: nothing written on either path
def test_export_bad_inputs_are_one_error_and_write_nothing(stack, loaded, tmp_path):
    uri = f"s3://{stack.s3_bucket}/history-bad"
    fs, root = target(uri, stack)
    with pytest.raises(UnknownAssetError, match="'nobody' has no assets"):
        export_history(stack, "nobody", uri)
    with pytest.raises(InvalidRangeError, match="since=2017-01-10.* is not before until=2017-01-02"):
        export_history(stack, TENANT, uri, since=pd.Timestamp("2017-01-10"), until=pd.Timestamp("2017-01-02"))
    down = stack.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})  # nothing listens there
    with pytest.raises(HistoryExportError, match="cannot write to the export target"):
        export_history(down, TENANT, uri)
    assert files(fs, root) == {}
    proc = ems("export", "history", "--tenant", "nobody", "--to", str(tmp_path / "h"), check=False)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "'nobody' has no assets" in proc.stderr
    assert not (tmp_path / "h").exists() or not any((tmp_path / "h").rglob("*.parquet"))


# ------------------------------------------------------------------ 2: Spark offline store = Postgres store
def _entities() -> pd.DataFrame:
    t = START
    times = [t + pd.Timedelta(h, "h") for h in (0, 1, 2, 5, 30, 150, 335, 336)]  # before data, exact hours, the end
    times += [t + pd.Timedelta("47h30min"), t + pd.Timedelta("339h"), t + pd.Timedelta("339h1s"),  # TTL edge (3 h)
              t + pd.Timedelta("400h")]  # beyond the TTL -> NULL
    times += list(pd.date_range("2017-01-08 06:00", periods=8, freq="17h", tz="UTC"))  # inside the forecasts
    rows = [{"tenant_id": TENANT, "asset_id": a, "event_timestamp": ts, "target_time": ts + pd.Timedelta(h, "h")}
            for a in ("z1", "z2", "z3", "q1") for ts in times for h in (0, 7, 30)]
    rows.append({"tenant_id": TENANT, "asset_id": "nope", "event_timestamp": times[4], "target_time": times[4]})
    frame = pd.DataFrame(rows)
    frame["target_hour"] = (frame["target_time"].astype("int64") // 3_600_000_000_000).astype("int64")
    return frame


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
        elif pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype("float64")  # NULLs make Spark's ints floats or Int64 and Postgres' floats
    keys = ["asset_id", "event_timestamp", "target_time"]
    return out[sorted(out.columns)].sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def spark_offline(stack, store, loaded, tmp_path_factory):
    from bench.rows_scale import spark_offline_store

    history = tmp_path_factory.mktemp("history") / "h"
    export_history(stack, TENANT, f"file://{history}")
    s = spark_offline_store(stack, "local[2]", f"file://{history}")
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        get_spark_session_or_start_new_with_repoconfig,
    )

    session = get_spark_session_or_start_new_with_repoconfig(s.config.offline_store)
    session.conf.set("spark.sql.shuffle.partitions", "4")  # kilobytes per view here: 200 tasks per shuffle is waste
    yield s
    session.stop()


def test_spark_training_set_equals_the_postgres_store(store, spark_offline):
    """One retrieval of every feature of every service (full names: services share feature names); each
    view is joined on its own in both stores, so each service's columns are its own training set."""
    refs = {service: [f"{p.name_to_use()}:{f.name}" for p in store.get_feature_service(service).feature_view_projections
                      for f in p.features] for service in FEATURE_SERVICES}
    features = list(dict.fromkeys(r for service in FEATURE_SERVICES for r in refs[service]))
    entities = _entities()
    want = store.get_historical_features(entity_df=entities.copy(), features=features, full_feature_names=True
                                         ).to_df()
    job = spark_offline.get_historical_features(entity_df=entities.copy(), features=features,
                                                full_feature_names=True)
    assert isinstance(job, ChunkedSparkRetrievalJob) and len(job.jobs) == 3  # 400 h in weeks: the TTL edge at 339 h
    got = job.to_df()
    assert len(got) == len(want) == len(entities)
    want, got = _canonical(want), _canonical(got)
    assert list(got.columns) == list(want.columns)
    for service in FEATURE_SERVICES:
        columns = [r.replace(":", "__") for r in refs[service]]
        assert want[columns].notna().any().all() and want[columns].isna().any().any(), service  # values and NULLs
        pd.testing.assert_frame_equal(got[columns], want[columns], check_exact=True, obj=service)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert np.array_equal(got.isna().to_numpy(), want.isna().to_numpy())


def test_a_spark_dataframe_spine_in_day_chunks_equals_the_postgres_store(store, spark_offline):
    """The spine as a Spark DataFrame (how bench/rows_training_sets.py passes big ones), cut into 72 h chunks:
    6 ranges over the 400 h, one of them without rows (72-144 h), so 5 chunks; still equal to the Postgres store."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        get_spark_session_or_start_new_with_repoconfig,
    )

    session = get_spark_session_or_start_new_with_repoconfig(spark_offline.config.offline_store)
    service = "forecast_weather"
    entities = _entities()
    want = store.get_historical_features(entity_df=entities.copy(), features=store.get_feature_service(service)
                                         ).to_df()
    config = spark_offline.config.offline_store
    config.spine_chunk_hours = 72
    try:
        job = spark_offline.get_historical_features(entity_df=session.createDataFrame(entities),
                                                    features=spark_offline.get_feature_service(service))
    finally:
        config.spine_chunk_hours = 168
    assert isinstance(job, ChunkedSparkRetrievalJob) and len(job.jobs) == 5
    got = job.to_df()
    assert len(got) == len(want) == len(entities)
    want, got = _canonical(want), _canonical(got)
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=True)
