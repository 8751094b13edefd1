"""Fault injection on the real stack (issue 8, part 4): a `kill -9` in the middle of ingest and of
materialize, then a rerun; Redis, Postgres, MLflow and S3 stopped under the SDK and the CLI; two
ingests of one file at once. Each test ends with nothing lost or duplicated.

Services are the session's real processes: a test stops one through stack/services.py (its pid file)
and the `outage` fixture starts it again when the test ends, pass or fail. An operation is killed
only once the database shows it is demonstrably half-way (a COPY with rows in, an upsert running, a
materialization blocked on a later view), with SIGKILL to the CLI's whole process group."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from psycopg import sql

from core.errors import EmsError, ModelUnavailableError
from core.settings import ROOT
from inference.client import Client
from registry import lifecycle, train_forecast
from registry.training_data import SplitConfig
from stack import services
from stack.process import terminate
from tests.helpers.data import TETOUAN, tetouan_slice
from tests.helpers.stack import ems
from warehouse.db import DatabaseUnavailableError, connect
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.store import get_store

pytestmark = pytest.mark.integration
EMS = str(Path(sys.executable).parent / "ems")
TENANT = "flt"  # the served tenant: Tetouan zones 1-2, a production forecaster
ZONES = ("zone1_power_consumption", "zone2_power_consumption", "zone3_power_consumption")
WEATHER = "temperature,humidity,solar_irradiance=general_diffuse_flows"
COPY_HEAD_START = 0.25  # seconds a running COPY gets before the kill (the whole COPY takes ~1 s here)


# ------------------------------------------------------------------ data
def scaled_tetouan(target: Path, meters: int, start: str, days: int) -> pd.DataFrame:
    """Tidy 10-minute readings of `meters` meters from the real Tetouan series: meter i is zone
    i mod 3 scaled by its own factor (0.5x-2.5x), so no two meters hold the same values."""
    tet = pd.read_csv(TETOUAN, usecols=["timestamp", *ZONES])
    end = (pd.Timestamp(start) + pd.Timedelta(days=days)).isoformat()
    tet = tet[(tet["timestamp"] >= start) & (tet["timestamp"] < end)]
    frame = pd.concat([pd.DataFrame({"asset_id": f"m{i:03d}", "timestamp": tet["timestamp"].to_numpy(),
                                     "value": (tet[ZONES[i % 3]] * (0.5 + (i % 17) / 8)).round(3).to_numpy()})
                       for i in range(meters)], ignore_index=True)
    frame.to_parquet(target, index=False)
    return frame


def hourly_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The hourly aggregate the warehouse must hold for these readings (UTC hours)."""
    hour = pd.to_datetime(frame["timestamp"], utc=True).dt.floor("h").rename("bucket")
    out = frame.groupby(["asset_id", hour])["value"].agg(["mean", "min", "max", "count"]).reset_index()
    return out.rename(columns={"mean": "avg_value", "min": "min_value", "max": "max_value", "count": "n_readings"})


def stored(settings, tenant: str) -> dict:
    """What the warehouse holds for a tenant: readings, assets, refresh queue spans, hourly rows."""
    with connect(settings) as conn:
        count, distinct, total = conn.execute(
            "SELECT count(*), count(DISTINCT (asset_id, ts)), coalesce(sum(value), 0) FROM readings"
            " WHERE tenant_id = %s", (tenant,)).fetchone()
        return {
            "readings": count, "distinct": distinct, "sum": total,
            "assets": conn.execute("SELECT count(*) FROM assets WHERE tenant_id = %s", (tenant,)).fetchone()[0],
            "queue": sorted(conn.execute("SELECT asset_id, from_ts, to_ts FROM readings_refresh_queue"
                                         " WHERE tenant_id = %s", (tenant,)).fetchall()),
            "hourly": conn.execute("SELECT count(*) FROM readings_hourly WHERE tenant_id = %s",
                                   (tenant,)).fetchone()[0],
        }


def spans_of(frame: pd.DataFrame) -> list[tuple]:
    """One refresh-queue span per asset: its first and last reading (what a COPY of new rows queues)."""
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    span = ts.groupby(frame["asset_id"]).agg(["min", "max"])
    return sorted((a, lo.to_pydatetime(), hi.to_pydatetime()) for a, lo, hi in span.itertuples())


def weekly_spans_of(frame: pd.DataFrame) -> list[tuple]:
    """One refresh-queue span per asset and week touched (weeks from Monday 2000-01-03, as
    date_bin('7 days', ts, '2000-01-03')): what an upsert of changed rows queues."""
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    week = (ts - pd.Timestamp("2000-01-03", tz="UTC")) // pd.Timedelta(days=7)
    span = ts.groupby([frame["asset_id"], week]).agg(["min", "max"])
    return sorted((a, lo.to_pydatetime(), hi.to_pydatetime()) for (a, _), lo, hi in span.itertuples())


# ------------------------------------------------------------------ processes and services
@pytest.fixture
def spawn(tmp_path):
    """`spawn(label, *args)` starts the real `ems` CLI in its own process group (so SIGKILL takes all
    of it), output to files; any still running when the test ends is killed."""
    started: list[subprocess.Popen] = []

    def start(label: str, *args: str) -> subprocess.Popen:
        out, err = (open(tmp_path / f"{label}.{s}", "w") for s in ("out", "err"))
        with out, err:
            started.append(subprocess.Popen([EMS, *args], stdout=out, stderr=err, cwd=ROOT,
                                            start_new_session=True))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            kill_group(proc)


def output(tmp_path: Path, label: str) -> tuple[str, str]:
    return (tmp_path / f"{label}.out").read_text(), (tmp_path / f"{label}.err").read_text()


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def poll(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0):
    """Poll `check` every 20 ms until it returns something truthy; fail if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"ems exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.02)


def query(settings, statement: str, params: tuple = ()) -> list[tuple]:
    with connect(settings, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def wait_backend_gone(settings, pid: int) -> None:
    """The killed client's Postgres backend has ended (its transaction rolled back, its locks freed)."""
    poll(lambda: not query(settings, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)),
         f"end of backend {pid}", timeout=60)


@pytest.fixture
def outage(stack):
    """`outage(name)` stops that service of the session's stack (its real process, by pid file), or
    with `crash=True` kills it (SIGKILL); every service stopped is started again when the test ends,
    whatever happened."""
    stopped: list[services.Service] = []

    def stop(name: str, crash: bool = False) -> services.Service:
        svc = next(s for s in services.services(stack) if s.name == name)
        pid = svc.pidfile.read()
        assert pid is not None, f"{name} is not a process of the test stack"
        stopped.append(svc)
        if crash:
            terminate(pid, signal.SIGKILL, group=svc.kill_group)
        else:
            svc.down()
        assert not svc.healthy()
        return svc

    try:
        yield stop
    finally:
        for svc in reversed(stopped):
            svc.up()


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # the CLI's logging format


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI failed with exit code 1 and one `error:` line on stderr, no traceback; returns that line.
    Log records (warnings are shown) and the remains of a progress bar may come before it."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and "━" not in line and not LOG_RECORD.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def run_ems(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([EMS, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# ------------------------------------------------------------------ (a) kill -9 during ingest
@pytest.mark.warehouse  # also on TimescaleDB: a COPY into the readings hypertable cut mid-chunk
def test_ingest_killed_mid_copy_and_mid_upsert_then_rerun_stores_every_row_once(stack, env, spawn, tmp_path):
    tenant = "flt-kill"
    path = tmp_path / "meters.parquet"
    frame = scaled_tetouan(path, meters=100, start="2017-02-01", days=28)
    n = len(frame)

    # 1. First load killed while its COPY into readings is part-way through: the COPY is seen running, given
    # COPY_HEAD_START to take rows in, and seen still running just before the kill. (pg_stat_progress_copy
    # is no signal on TimescaleDB: tuples_processed stays 0 for a hypertable, and the progress row vanishes
    # once the COPY creates a chunk, whose index build takes over the backend's progress slot.)
    copying = ("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
               " AND query ~* '^COPY \"?readings\"? '")
    proc = spawn("first", "ingest", str(path), "--tenant", tenant, "--json")
    (backend,) = poll(lambda: query(stack, copying), "the COPY into readings running", proc, timeout=60)[0]
    time.sleep(COPY_HEAD_START)
    assert query(stack, copying) == [(backend,)], "the COPY ended before the kill; ingest a bigger file"
    kill_group(proc)
    wait_backend_gone(stack, backend)
    assert stored(stack, tenant) == {"readings": 0, "distinct": 0, "sum": 0, "assets": 0, "queue": [], "hourly": 0}

    rerun = json.loads(ems("ingest", str(path), "--tenant", tenant, "--json").stdout)
    assert (rerun["inserted"], rerun["updated"], rerun["unchanged"], rerun["rejected"]) == (n, 0, 0, 0)
    after_first = stored(stack, tenant)
    assert after_first["readings"] == after_first["distinct"] == n and after_first["assets"] == 100
    assert after_first["queue"] == spans_of(frame)

    # 2. A correction of every 50th reading, killed while its upsert statement runs.
    corrected = frame.copy()
    changed = corrected.index % 50 == 0
    corrected.loc[changed, "value"] = (corrected.loc[changed, "value"] * 1.1).round(3) + 0.001
    fixed = tmp_path / "corrected.parquet"
    corrected.to_parquet(fixed, index=False)
    proc = spawn("correction", "ingest", str(fixed), "--tenant", tenant, "--json")
    (backend,) = poll(lambda: query(stack, "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
                                           " AND pid <> pg_backend_pid()"
                                           " AND query LIKE '%%INSERT INTO readings%%FROM ingest_readings%%'"),
                      "the upsert running", proc)[0]
    kill_group(proc)
    wait_backend_gone(stack, backend)
    assert stored(stack, tenant) == after_first  # old values, nothing more queued

    rerun = json.loads(ems("ingest", str(fixed), "--tenant", tenant, "--json").stdout)
    k = int(changed.sum())
    assert (rerun["inserted"], rerun["updated"], rerun["unchanged"], rerun["rejected"]) == (0, k, n - k, 0)
    now = stored(stack, tenant)
    assert now["readings"] == now["distinct"] == n
    assert now["sum"] == pytest.approx(corrected["value"].sum(), rel=1e-12)
    touched = weekly_spans_of(corrected[changed])
    assert now["queue"] == sorted(after_first["queue"] + touched)  # one more span per corrected asset and week

    refresh(stack)
    rows = query(stack, "SELECT asset_id, bucket, avg_value, min_value, max_value, n_readings FROM readings_hourly"
                        " WHERE tenant_id = %s ORDER BY asset_id, bucket", (tenant,))
    got = pd.DataFrame(rows, columns=["asset_id", "bucket", "avg_value", "min_value", "max_value", "n_readings"])
    expected = hourly_of(corrected)
    assert stored(stack, tenant)["queue"] == [] and got["n_readings"].sum() == n
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=1e-12)


# ------------------------------------------------------------------ (g) two ingests of one file at once
@pytest.mark.warehouse  # also on TimescaleDB: concurrent upserts into the hypertable
def test_two_ingests_of_one_file_at_once_store_each_row_once(stack, env, spawn, tmp_path):
    tenant = "flt-twice"
    path = tmp_path / "meters.parquet"
    frame = scaled_tetouan(path, meters=30, start="2017-05-01", days=28)
    n = len(frame)
    procs = [spawn(f"ingest{i}", "ingest", str(path), "--tenant", tenant, "--json") for i in (0, 1)]
    waited = False  # seen the second ingest queued on the first one's tenant lock
    while any(p.poll() is None for p in procs):
        waited = waited or bool(query(stack, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
        time.sleep(0.02)
    assert [p.returncode for p in procs] == [0, 0], [output(tmp_path, f"ingest{i}") for i in (0, 1)]
    reports = [json.loads(output(tmp_path, f"ingest{i}")[0]) for i in (0, 1)]
    counts = sorted((r["inserted"], r["updated"], r["unchanged"], r["rejected"]) for r in reports)
    assert counts == [(0, 0, n, 0), (n, 0, 0, 0)], f"lock wait seen: {waited}"
    now = stored(stack, tenant)
    assert now["readings"] == now["distinct"] == n and now["assets"] == 30
    assert now["sum"] == pytest.approx(frame["value"].sum(), rel=1e-12)
    assert now["queue"] == spans_of(frame)  # queued once, by the ingest that inserted


# ------------------------------------------------------------------ (b) kill -9 during materialize
def _latest_in_sql(settings, store, view, tenant: str, start: datetime, end: datetime) -> pd.DataFrame:
    """What Redis must hold for a view: each asset's latest row in [start, end] (static views: any time)."""
    fv = store.get_feature_view(view)
    names = [f.name for f in fv.features]
    lo = start if fv.ttl else datetime(1970, 1, 1, tzinfo=UTC)
    statement = sql.SQL(
        "SELECT DISTINCT ON (asset_id) asset_id, {cols}, extract(epoch FROM event_timestamp)::bigint AS ts"
        " FROM {src} AS source WHERE tenant_id = %s AND event_timestamp BETWEEN %s AND %s"
        " ORDER BY asset_id, event_timestamp DESC, created DESC"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, names)),
             src=sql.SQL(fv.batch_source.get_table_query_string()))
    with connect(settings) as conn:
        rows = conn.execute(statement, (tenant, lo, end)).fetchall()
    return pd.DataFrame(rows, columns=["asset_id", *names, "ts"])


def _online(store, view: str, tenant: str, assets: list[str]) -> pd.DataFrame:
    """A view's features and event times as Redis holds them (Feast's own reader); None where unwritten."""
    names = [f.name for f in store.get_feature_view(view).features]
    got = store.get_online_features(features=[f"{view}:{f}" for f in names],
                                    entity_rows=[{"tenant_id": tenant, "asset_id": a} for a in assets]).to_dict(
        include_event_timestamps=True)
    out = pd.DataFrame({"asset_id": assets, **{f: got[f] for f in names}})
    out["ts"] = got[f"{names[0]}__ts"]
    return out


def _intervals(settings) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each online view's materialization intervals as Feast's registry records them now."""
    store = get_store(settings)
    return {fv.name: list(fv.materialization_intervals) for fv in store.list_batch_feature_views() if fv.online}


@pytest.mark.warehouse  # also on TimescaleDB: materialize reads the hypertables
def test_materialize_killed_midway_then_rerun_loads_exactly_the_latest_values(stack, env, spawn, tmp_path):
    tenant, site = "flt-mat", "flt-mat-site"
    path = tmp_path / "meters.parquet"
    scaled_tetouan(path, meters=40, start="2017-03-01", days=10)
    ingest_readings(stack, path, tenant, site=site)
    ingest_weather(stack, tetouan_slice(tmp_path / "w.csv", "2017-03-01", "2017-03-11"), site, columns=WEATHER)
    refresh(stack)
    assets = [f"m{i:03d}" for i in range(40)]
    start, end = datetime(2017, 3, 1, tzinfo=UTC), datetime(2017, 3, 11, tzinfo=UTC)
    before = _intervals(stack)
    window = ("--start", start.strftime("%Y-%m-%dT%H:%M:%S"), "--end", end.strftime("%Y-%m-%dT%H:%M:%S"))

    # A transaction holding asset_weather_features stops the run at the weather view: the views before it are
    # written, the rest not. Kill it there.
    with connect(stack) as blocker:
        blocker.execute("LOCK TABLE asset_weather_features IN ACCESS EXCLUSIVE MODE")
        proc = spawn("materialize", "materialize", *window)
        (backend,) = poll(lambda: query(stack, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                               " AND query LIKE '%%asset_weather_features%%'"),
                          "materialize waiting at the weather view", proc)[0]
        kill_group(proc)
        blocker.rollback()
    wait_backend_gone(stack, backend)
    store = get_store(stack)
    half = _intervals(stack)
    recorded = {v for v in half if len(half[v]) > len(before[v])}
    present = {v: _online(store, v, tenant, assets).drop(columns=["asset_id", "ts"]).notna().any(axis=1)
               for v in half}
    written = {v for v, p in present.items() if p.all()}
    untouched = {v for v, p in present.items() if not p.any()}
    # views without rows for these meters (a step table finer than their readings) show nothing in Redis either way
    empty = {v for v in half if _latest_in_sql(stack, store, v, tenant, start, end).empty}
    # every view is all or nothing, and Feast recorded exactly the views that reached Redis
    assert "weather_hourly" in untouched and written | untouched == set(half) and recorded - empty == written, \
        (written, untouched, recorded, empty)
    assert all(half[v][-1][1] == end for v in recorded)

    ems("materialize", *window)
    store = get_store(stack)
    for view in half:
        expected = _latest_in_sql(stack, store, view, tenant, start, end)
        if expected.empty:  # a view without rows for these meters (a step table finer than their readings)
            assert _online(store, view, tenant, assets).drop(columns=["asset_id", "ts"]).isna().all().all(), view
            continue
        if view == "weather_hourly":
            assert len(expected) == 40 and expected["temperature"].notna().all()
        pd.testing.assert_frame_equal(_online(store, view, tenant, expected["asset_id"].tolist()), expected,
                                      check_dtype=False, obj=view)
    after = _intervals(stack)
    for view, intervals in after.items():
        runs = 2 if view in recorded else 1  # one interval per completed run, none for the killed part
        assert len(intervals) == len(before[view]) + runs, (view, intervals)
        assert all(e == end for _, e in intervals[len(before[view]):]), (view, intervals)
        # the latest end Feast knows: this window's, unless an earlier test's window reached further
        latest = max([end, *(e for _, e in before[view])])
        assert get_store(stack).get_feature_view(view).most_recent_end_time == latest


# ------------------------------------------------------------------ a served tenant for (c)-(f)
SPLIT = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)


@pytest.fixture(scope="module")
def served(stack, store, env, tmp_path_factory):
    """Tenant `flt` (Tetouan zones 1-2, April 2017, weather at its site) materialized, with a production
    forecaster, and a second version of it registered (same files) that nothing has loaded."""
    from warehouse.store import materialize

    tet = tetouan_slice(tmp_path_factory.mktemp("served") / "t.csv", "2017-04-01", "2017-04-29")
    ingest_readings(stack, tet, TENANT, wide=True, site="flt-site",
                    columns="zone1=zone1_power_consumption,zone2=zone2_power_consumption")
    ingest_weather(stack, tet, "flt-site", columns=WEATHER)
    refresh(stack)
    materialize(stack, store=store, start=datetime(2017, 4, 1, tzinfo=UTC))
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    result = train_forecast.train(stack, store, TENANT, split=SPLIT,
                                  boosting=train_forecast.BoosterConfig(num_boost_round=40))
    lifecycle.promote(mlc, result.model_id, "production", force=True)
    tags = lifecycle.show(mlc, result.model_id).tags
    spare = lifecycle.register(mlc, TENANT, "load_forecaster", result.model_uri, result.run_id, tags)
    return result.model_id, spare.id


@pytest.fixture
def client(stack, store, served):
    """A warm client that re-resolves the model and the latest hour on every call (so a fault shows)."""
    c = Client(stack, store, model_ttl_seconds=0, latest_ttl_seconds=0)
    c.forecast(TENANT, "zone1", horizon=24)
    return c


# ------------------------------------------------------------------ (c) Redis stopped
def test_redis_stopped_forecast_answers_from_the_offline_store_with_the_fallback_flag(stack, client, outage):
    online = client.forecast(TENANT, "zone1", horizon=24)
    assert online.source == "online" and not online.fallback and online.warnings == []
    redis = outage("redis")
    offline = client.forecast(TENANT, "zone1", horizon=24)
    assert offline.source == "offline" and offline.fallback
    assert [w for w in offline.warnings if "online store unreachable" in w]
    assert offline.feature_time == online.feature_time and offline.features == online.features
    pd.testing.assert_frame_equal(offline.frame, online.frame)
    redis.up()  # the online store kept every value (append-only file)
    again = client.forecast(TENANT, "zone1", horizon=24)
    assert again.source == "online" and again.warnings == []
    pd.testing.assert_frame_equal(again.frame, online.frame)


# ------------------------------------------------------------------ (d) Postgres stopped
def test_postgres_stopped_gives_one_clear_error_and_nothing_is_lost(stack, store, client, outage, tmp_path):
    address = f"{stack.postgres.host}:{stack.postgres.port}"
    idle = Client(stack, store, model_ttl_seconds=0, latest_ttl_seconds=0)  # its connection goes stale unused
    idle.forecast(TENANT, "zone1", horizon=6)
    before = stored(stack, TENANT)
    small = tetouan_slice(tmp_path / "t.csv", "2017-04-28", "2017-04-29")
    postgres = outage("postgres")

    for call in (lambda: client.forecast(TENANT, "zone1", horizon=6),  # an open connection, now broken
                 lambda: Client(stack, store).forecast(TENANT, "zone1", horizon=6),
                 lambda: ingest_readings(stack, small, TENANT, wide=True, columns="zone1=zone1_power_consumption")):
        with pytest.raises(DatabaseUnavailableError) as caught:
            call()
        assert isinstance(caught.value, EmsError) and address in str(caught.value)
        assert "\n" not in str(caught.value)

    commands = {"ingest": ["ingest", str(small), "--tenant", TENANT, "--wide", "--columns",
                           "zone1=zone1_power_consumption"],
                "refresh": ["refresh"], "materialize": ["materialize"],
                "forecast": ["forecast", "--tenant", TENANT, "--asset", "zone1", "--horizon", "6"],
                "features": ["features", "--tenant", TENANT, "--asset", "zone1"]}
    procs = {name: subprocess.Popen([EMS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for name, args in commands.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        line = one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert address in line and "Postgres" in line, (name, line)

    postgres.up()
    assert stored(stack, TENANT) == before
    for c in (client, idle):
        assert c.forecast(TENANT, "zone1", horizon=6).source == "online"


# ------------------------------------------------------------------ (e) MLflow stopped
def test_mlflow_stopped_the_cached_model_serves_and_an_uncached_one_fails_clearly(stack, store, client, served,
                                                                                 outage):
    production, spare = served
    before = client.forecast(TENANT, "zone1", horizon=12)
    mlflow_server = outage("mlflow")
    f = client.forecast(TENANT, "zone1", horizon=12)
    assert f.model_id == production and [w for w in f.warnings if "unreachable; serving cached" in w]
    pd.testing.assert_frame_equal(f.frame, before.frame)
    with pytest.raises(ModelUnavailableError, match=f"unreachable; cannot load {spare}"):
        client.forecast(TENANT, "zone1", horizon=12, model=spare)
    with pytest.raises(ModelUnavailableError, match=f"no version of {TENANT}:load_forecaster is cached"):
        Client(stack, store).forecast(TENANT, "zone1", horizon=12)
    line = one_line_error(run_ems("forecast", "--tenant", TENANT, "--asset", "zone1"))
    assert stack.mlflow_tracking_uri in line and "unreachable" in line

    mlflow_server.up()
    again = client.forecast(TENANT, "zone1", horizon=12)
    assert again.model_id == production and again.warnings == []


# ------------------------------------------------------------------ (f) S3 stopped
def test_s3_stopped_a_cached_model_serves_and_a_cold_load_fails_clearly(stack, store, client, served, outage):
    production, spare = served
    before = client.forecast(TENANT, "zone1", horizon=12)
    s3 = outage("s3", crash=True)  # a graceful stop takes SeaweedFS's filer ~10 s
    f = client.forecast(TENANT, "zone1", horizon=12)
    assert f.model_id == production and f.warnings == []
    pd.testing.assert_frame_equal(f.frame, before.frame)
    with pytest.raises(ModelUnavailableError, match=f"cannot load {spare}: S3 at {stack.s3_endpoint_url}"):
        client.forecast(TENANT, "zone1", horizon=12, model=spare)  # not in the cache: a cold load
    proc = run_ems("forecast", "--tenant", TENANT, "--asset", "zone1", "--model", spare)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: cannot load {spare}: S3 at {stack.s3_endpoint_url} is unreachable" in proc.stderr

    s3.up()
    assert client.forecast(TENANT, "zone1", horizon=12, model=spare).model_id == spare
