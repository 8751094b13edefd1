"""Outages landed inside a pipeline step's write (issue 23), on the real stack through Dagster's in-process
executor: Postgres stopped while the hourly refresh and the alert records are in their transactions, Redis
stopped between the views materialization writes, and S3 and MLflow stopped under the daily run's
challenger upload, its registration and its promotion. The fault is landed by an event the test waits on,
never by timing: a row lock or a table lock the step's statement queues behind, a trigger that holds the
step's transaction right after its row is written, or the HTTP exchange (urllib3's log line) or log line
after which the service goes down. The services are really stopped (stack/services.py) and started again
when the step reports its first transient failure, in that thread: the retry waits, so what the stores
hold between the failure and the retry is read without a race. Each run succeeds on its retry, leaves
nothing half-written, and a rerun changes nothing."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from inference.client import Client
from pipelines.challenger import PROMOTED, TAG_CHAMPION, TAG_DATA_END, TAG_DECISION
from pipelines.run import PipelineError, execute
from pipelines.runtime import Runtime
from registry import lifecycle, train_anomaly, train_forecast
from registry.training_data import SplitConfig
from stack import services
from stack.process import terminate
from tests.helpers.data import zone1
from warehouse import alerts
from warehouse.db import connect
from warehouse.ingest import ingest_readings
from warehouse.materialize import relation, write_views
from warehouse.refresh import refresh
from warehouse.store import materialize

pytestmark = pytest.mark.integration
TENANT = "pfault"
SPIKE = pd.Timestamp("2017-02-26T21:00:00")  # a 3x meter hour in the alerts test's new block
TRAP_KEY = 7_710_023  # advisory lock the alerts test's trigger waits on
HOURLY = {"score": {"tenants": [TENANT]}}



@pytest.fixture(scope="module")
def ems(stack, store, tmp_path_factory):
    """Tenant `pfault`: zone 1 from 2017-01-01 to 2017-02-26, a z_score detector and a deliberately weak
    champion forecaster (15 training days, 3 boosting rounds) in production."""
    tmp = tmp_path_factory.mktemp("pipeline-faults")
    ingest_readings(stack, zone1(tmp / "a.csv", "2017-01-01", "2017-02-26"), TENANT)
    refresh(stack)
    materialize(stack, store=store)
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    split = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
    lifecycle.promote(mlc, train_anomaly.train(stack, store, TENANT, "z_score", split=split).model_id, "production")
    weak = train_forecast.train(stack, store, TENANT, split=SplitConfig(history_days=22, holdout_days=7),
                                boosting=train_forecast.BoosterConfig(num_boost_round=3))
    lifecycle.promote(mlc, weak.model_id, "production", force=True)
    runtime = Runtime(stack, store)
    runtime.mlflow  # noqa: B018 (built first, as each pipeline's first step does: MLflow calls fail fast)
    runtime.tmp = tmp
    return runtime


def service(ems, name: str) -> services.Service:
    return next(s for s in services.services(ems.settings) if s.name == name)


def query(settings, statement, params: tuple = ()) -> list[tuple]:
    with connect(settings, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


# ------------------------------------------------------------------ landing the fault
@dataclass
class Fault:
    """One outage: `service` goes down when `trigger` matches a log record (in the thread that logged it, so
    the stop lands exactly there), or when the test calls `stop()` (a watcher that saw the step waiting in
    the database). It is started again on the next transient failure a step reports: `before_up` and
    `inspect` (after the restart) record what the stores held before the retry."""

    service: services.Service
    trigger: Callable[[logging.LogRecord], bool] | None = None
    crash: bool = False  # SIGKILL instead of the service's own stop
    before_up: Callable[[], object] | None = None
    inspect: Callable[[], object] | None = None
    stopped: float | None = None
    restarted: float | None = None
    failure: str | None = None  # the transient failure that restarted it, as logged
    before: object = None
    state: object = None
    stopping: threading.Event = field(default_factory=threading.Event)
    down: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stopping.set()  # the step may fail (and the plan restart) before the service has fully stopped
        if self.crash:
            terminate(self.service.pidfile.read(), 9, group=self.service.kill_group)
            self.service.pidfile.clear()
        else:
            self.service.down()
        assert not self.service.healthy()
        self.stopped = time.monotonic()
        self.down.set()


class FaultPlan(logging.Handler):
    """Runs `faults` in order (see Fault) from the log records of the loggers it is attached to."""

    def __init__(self, faults: list[Fault]):
        super().__init__(logging.DEBUG)
        self.faults, self.i = faults, 0
        self.seen: list[str] = []  # every transient failure, as logged
        self.errors: list[BaseException] = []
        self.handling = threading.local()

    @property
    def current(self) -> Fault | None:
        return self.faults[self.i] if self.i < len(self.faults) else None

    def emit(self, record):
        if getattr(self.handling, "on", False):  # logged by the stop or restart itself (boto3's health check)
            return
        self.handling.on = True
        try:
            f = self.current
            if record.name == "pipelines.transient":
                self.seen.append(record.getMessage())
                if f is not None and f.stopping.is_set():
                    assert f.down.wait(120), f"{f.service.name} did not stop"
                    f.failure = record.getMessage()
                    f.before = f.before_up() if f.before_up else None
                    f.service.up()
                    f.restarted = time.monotonic()
                    f.state = f.inspect() if f.inspect else None
                    self.i += 1
            elif f is not None and f.stopped is None and f.trigger is not None and f.trigger(record):
                f.stop()
        except Exception as e:  # logging swallows a handler's errors: keep them for the test
            self.errors.append(e)
        finally:
            self.handling.on = False


@contextmanager
def fault_plan(faults: list[Fault], loggers: tuple[str, ...] = ()):
    """The plan attached to pipelines.transient and `loggers` (at DEBUG for the run); every service is up
    again afterwards, whatever happened, so the rest of the session finds the stack as it was."""
    plan = FaultPlan(faults)
    attached = [logging.getLogger(n) for n in ("pipelines.transient", *loggers)]
    levels = [log.level for log in attached]
    for log in attached:
        log.addHandler(plan)
        if log.name != "pipelines.transient":
            log.setLevel(logging.DEBUG)
    try:
        yield plan
    finally:
        for log, level in zip(attached, levels, strict=True):
            log.removeHandler(plan)
            log.setLevel(level)
        for f in faults:
            if not f.service.healthy():
                f.service.up()
    assert not plan.errors, plan.errors


@contextmanager
def watch(check: Callable[[], object], then: Callable[[], None], release: Callable[[], None], timeout: float = 120):
    """A thread polls `check` every 20 ms (its own connections) until it returns something, then runs `then`
    (the stop) and `release` (lets the blocked step go on). On a timeout it only releases, so the run cannot
    hang; `found` stays None and the test fails on it."""
    box: dict = {"found": None}

    def run():
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                found = check()
                if found:
                    box["found"] = found
                    then()
                    return
                time.sleep(0.02)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            box["error"] = e
        finally:
            release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        thread.join(timeout + 30)


@contextmanager
def on_log(name: str, fn: Callable[[logging.LogRecord], None]):
    """`fn` called with every INFO+ record of logger `name`, in the thread that logged it."""

    class Hook(logging.Handler):
        def emit(self, record):
            fn(record)

    hook, log = Hook(logging.INFO), logging.getLogger(name)
    level = log.level
    log.addHandler(hook)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(hook)
        log.setLevel(level)


def writes_of(settings, pid: int) -> set[str]:
    """Tables backend `pid` holds ROW EXCLUSIVE locks on: what its open transaction has written."""
    return {r for (r,) in query(settings, "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                                          " WHERE l.pid = %s AND l.mode = 'RowExclusiveLock' AND l.granted", (pid,))}


def closing(conn: psycopg.Connection) -> Callable[[], None]:
    def close():
        try:
            conn.close()
        except psycopg.Error:
            pass
    return close


# ------------------------------------------------------------------ what the stores hold
def warehouse_rows(ems) -> dict:
    """The tenant's hourly and feature rows (count, newest hour, digest of every column) and its queues."""
    out = {}
    with connect(ems.settings) as conn:
        for table, ts in (("readings_hourly", "bucket"), ("load_lag_features", "event_timestamp"),
                          ("load_rolling_features", "event_timestamp")):
            out[table] = conn.execute(sql.SQL(
                "SELECT count(*), max({ts}), md5(string_agg(f::text, '|' ORDER BY f::text)) FROM {t} f"
                " WHERE tenant_id = %s").format(ts=sql.Identifier(ts), t=sql.Identifier(table)), (TENANT,)).fetchone()
    return out | bookkeeping(ems)


def bookkeeping(ems) -> dict:
    """The tenant's refresh and materialize queue entries and the views materialize has loaded."""
    with connect(ems.settings) as conn:
        return {"refresh_queue": [i for (i,) in conn.execute(
                    "SELECT id FROM readings_refresh_queue WHERE tenant_id = %s ORDER BY id", (TENANT,))],
                "online_queue": [i for (i,) in conn.execute(
                    "SELECT id FROM online_refresh_queue WHERE tenant_id = %s ORDER BY id", (TENANT,))],
                "online_views": sorted(conn.execute("SELECT feature_view, fingerprint, loaded_at FROM online_views"))}


def alert_rows(ems) -> list[tuple]:
    return sorted((a.id, a.window_start, a.window_end, a.severity, a.score, a.state, a.explanation)
                  for a in alerts.list_alerts(ems.settings, TENANT))


def online(ems, views: list[str]) -> dict:
    """Zone 1's online rows of `views` with their event times (Feast's own read of Redis)."""
    features = [f"{v}:{f.name}" for v in views for f in ems.store.get_feature_view(v).features]
    return ems.store.get_online_features(features=features, entity_rows=[{"tenant_id": TENANT, "asset_id": "zone1"}]
                                         ).to_dict(include_event_timestamps=True)


def event_time(ems, view: str) -> int | None:
    first = ems.store.get_feature_view(view).features[0].name
    return online(ems, [view])[f"{first}__ts"][0]


def assert_rerun_changes_nothing(ems, views: list[str]) -> None:
    seen = (warehouse_rows(ems), alert_rows(ems), online(ems, views))
    again = execute("hourly", ems, HOURLY)
    assert again.success and not again.outputs["refresh"]["rows"]
    assert sum(again.outputs["materialize"]["written"].values()) == 0
    assert again.outputs["record"]["opened"] == again.outputs["record"]["extended"] == 0
    assert (warehouse_rows(ems), alert_rows(ems), online(ems, views)) == seen


def load_views(ems) -> list[str]:
    """The online views over the load feature tables, in the order materialize writes them."""
    return [fv.name for fv in ems.store.list_batch_feature_views()
            if fv.online and relation(fv) in ("load_lag_features", "load_rolling_features")]


def hour(ts: str) -> pd.Timestamp:
    return pd.Timestamp(ts, tz="UTC")


# ------------------------------------------------------------------ hourly: Postgres inside refresh
def test_postgres_stopped_inside_the_refresh_transaction_leaves_nothing_half_written(ems):
    ingest_readings(ems.settings, zone1(ems.tmp / "r.csv", "2017-02-26T00:00", "2017-02-26T03:00"), TENANT)
    before = warehouse_rows(ems)
    assert before["refresh_queue"] and before["load_lag_features"][1] == hour("2017-02-26T00:00")
    pg = service(ems, "postgres")
    fault = Fault(pg, inspect=lambda: warehouse_rows(ems))
    # The queue entries row-locked by another transaction: refresh's batch transaction has written the hourly
    # and feature rows and queued the entities for materialize when its last statement, the DELETE of the
    # entries it handled, waits on them. Postgres is stopped there.
    blocker = psycopg.connect(ems.settings.postgres.conninfo())
    blocker.execute("SELECT id FROM readings_refresh_queue WHERE tenant_id = %s FOR UPDATE", (TENANT,))
    waiting = ("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
               " AND query LIKE 'DELETE FROM readings_refresh_queue%%'")

    def inside():
        pids = query(ems.settings, waiting)
        return pids and (pids[0][0], writes_of(ems.settings, pids[0][0]))

    with fault_plan([fault]) as plan, watch(inside, fault.stop, closing(blocker)) as seen:
        run = execute("hourly", ems, HOURLY)
    assert seen["found"], seen.get("error", "refresh never waited on the queue entries")
    assert {"readings_hourly", "load_lag_features", "load_rolling_features", "online_refresh_queue"} <= seen["found"][1]
    # Between the failure and the retry: nothing of the cut transaction (rows, queue entries all as before).
    assert fault.state == before
    assert run.success, run.error
    assert run.steps["refresh"]["attempts"] == 2 and plan.seen[0].startswith("refresh: transient failure on attempt 1")
    assert all(s["attempts"] == 1 for k, s in run.steps.items() if k != "refresh")
    after = warehouse_rows(ems)
    for table in ("readings_hourly", "load_lag_features", "load_rolling_features"):
        assert after[table][0] == before[table][0] + 3, table  # the three new hours, once
    assert after["load_lag_features"][1] == hour("2017-02-26T03:00") and after["refresh_queue"] == []
    assert event_time(ems, "load_lags") == int(hour("2017-02-26T03:00").timestamp())  # materialized on
    assert_rerun_changes_nothing(ems, load_views(ems))
    (ems.tmp / "refresh_fault.json").write_text(json.dumps(
        {"restart_s": fault.restarted - fault.stopped, "steps": run.steps, "seen": plan.seen}, indent=1))


# ------------------------------------------------------------------ hourly: Postgres inside the alert write
def test_postgres_stopped_inside_the_alert_transaction_leaves_no_partial_alert(ems):
    ingest_readings(ems.settings, zone1(ems.tmp / "s.csv", "2017-02-26T03:00", "2017-02-26T22:00", SPIKE), TENANT)
    pg = service(ems, "postgres")
    with connect(ems.settings, autocommit=True) as conn:  # a test-only trigger: holds the writing transaction
        conn.execute("CREATE OR REPLACE FUNCTION ems_test_trap() RETURNS trigger LANGUAGE plpgsql AS "
                     f"$$ BEGIN PERFORM pg_advisory_xact_lock({TRAP_KEY}); RETURN NULL; END $$")
        conn.execute("CREATE TRIGGER ems_test_trap AFTER INSERT ON anomaly_alerts FOR EACH ROW "
                     f"WHEN (NEW.tenant_id = '{TENANT}') EXECUTE FUNCTION ems_test_trap()")
    before = alert_rows(ems)
    fault = Fault(pg, inspect=lambda: alert_rows(ems))
    blocker = psycopg.connect(ems.settings.postgres.conninfo(), autocommit=True)
    blocker.execute("SELECT pg_advisory_lock(%s)", (TRAP_KEY,))
    trapped = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted"

    def inside():
        pids = query(ems.settings, trapped, (TRAP_KEY,))
        return pids and (pids[0][0], writes_of(ems.settings, pids[0][0]))

    try:
        with fault_plan([fault]) as plan, watch(inside, fault.stop, closing(blocker)) as seen:
            run = execute("hourly", ems, HOURLY)
    finally:
        with connect(ems.settings, autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS ems_test_trap ON anomaly_alerts")
            conn.execute("DROP FUNCTION IF EXISTS ems_test_trap()")
    assert seen["found"], seen.get("error", "no alert insert reached the trap")
    assert "anomaly_alerts" in seen["found"][1]  # the alert row was written, uncommitted, when Postgres stopped
    assert fault.state == before  # between the failure and the retry: no partial alert
    assert run.success, run.error
    assert run.steps["record"]["attempts"] == 2 and plan.seen[0].startswith("record: transient failure on attempt 1")
    new = [a for a in alerts.list_alerts(ems.settings, TENANT) if a.id not in {b[0] for b in before}]
    assert [(a.window_start.replace(tzinfo=None), a.window_end - a.window_start, a.state) for a in new] == [
        (SPIKE.to_pydatetime(), pd.Timedelta(hours=1), "open")]
    assert run.outputs["record"]["opened"] == 1
    assert_rerun_changes_nothing(ems, load_views(ems))


# ------------------------------------------------------------------ hourly: Redis between materialize's views
def test_redis_stopped_between_materialize_writes_leaves_the_queue_and_redis_ends_as_a_clean_load(ems):
    ingest_readings(ems.settings, zone1(ems.tmp / "m.csv", "2017-02-26T22:00", "2017-02-27T01:00"), TENANT)
    views = load_views(ems)
    first, second = views[0], views[1]
    second_table = relation(ems.store.get_feature_view(second))
    old, new = int(hour("2017-02-26T22:00").timestamp()), int(hour("2017-02-27T01:00").timestamp())
    assert event_time(ems, first) == event_time(ems, second) == old
    redis = service(ems, "redis")
    # Once refresh is done, the second view's table is locked: materialize writes the first view to Redis and
    # waits reading the second; Redis is stopped there, then the lock released, so that write fails.
    blocker = psycopg.connect(ems.settings.postgres.conninfo())

    def lock_after_refresh(record) -> None:
        if record.getMessage().startswith("refresh: "):
            blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(second_table)))

    fault = Fault(redis, before_up=lambda: bookkeeping(ems),
                  inspect=lambda: (event_time(ems, first), event_time(ems, second)))
    waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"

    def inside():
        blocked = query(ems.settings, waiting, (f"%{second_table}%",))
        return blocked and bookkeeping(ems)  # (the feature tables are locked: not read here)

    with on_log("warehouse.refresh", lock_after_refresh), fault_plan([fault]) as plan, \
            watch(inside, fault.stop, blocker.rollback) as seen:
        run = execute("hourly", ems, HOURLY)
    closing(blocker)()
    assert seen["found"], seen.get("error", f"materialize never waited on {second_table}")
    queued = seen["found"]
    assert queued["online_queue"]
    # Between the failure and the retry: the bookkeeping is where it was (queue entries kept, views unchanged)...
    assert fault.before == queued
    # ... and Redis holds the first view's new row, the second view's old one (what was written before the stop).
    assert fault.state == (new, old)
    assert run.success, run.error
    assert run.steps["materialize"]["attempts"] == 2
    assert plan.seen[0].startswith("materialize: transient failure on attempt 1")
    assert warehouse_rows(ems)["online_queue"] == []
    got = online(ems, views)
    assert got[f"{ems.store.get_feature_view(second).features[0].name}__ts"] == [new]
    # A clean write of the tenant's latest rows gives exactly what Redis holds.
    end = pd.Timestamp(run.outputs["materialize"]["end"]).to_pydatetime()
    write_views(ems.settings, ems.store, [ems.store.get_feature_view(v) for v in views], [(TENANT, "zone1")], end)
    assert online(ems, views) == got
    assert_rerun_changes_nothing(ems, views)


# ------------------------------------------------------------------ daily: S3 and MLflow under the challenger
DAILY = {"tenants": [TENANT], "window_days": 7, "history_days": 42, "num_boost_round": 30}  # small: two are trained
ARTIFACT_PUT = re.compile(r'"PUT /api/2\.0/mlflow-artifacts/artifacts/\S*/models/(m-[0-9a-f]+)/artifacts/\S+ '
                          r'HTTP/1\.1" 200')


def daily(ems, **overrides):
    config = DAILY | overrides
    return execute("daily", ems, {op: config for op in ("drift", "train_challengers", "backtest", "decide")},
                   raise_on_error=False)


def versions(ems) -> list[lifecycle.ModelInfo]:
    return [m for m in lifecycle.list_models(ems.mlflow, TENANT, metrics=False) if m.name == "load_forecaster"]


def test_daily_run_with_s3_and_mlflow_stopped_under_upload_registration_and_promotion(ems):
    """One daily run, three outages: S3 after the challenger's first model files reached it (the upload is
    cut half-way), MLflow right after the challenger version was created (before its stage), and MLflow
    after the promotion moved alias and stages (before the audit tags and the decision)."""
    champion = lifecycle.resolve_production(ems.mlflow, TENANT, "load_forecaster")
    known = {m.id for m in versions(ems)}
    uploads: list[str] = []  # logged model of each model file PUT, in order

    def half_uploaded(record) -> bool:
        m = record.name == "urllib3.connectionpool" and ARTIFACT_PUT.search(record.getMessage())
        if m:
            uploads.append(m.group(1))
        return bool(m) and len(uploads) == 2

    def created(record) -> bool:
        return record.name == "urllib3.connectionpool" and \
            '"POST /api/2.0/mlflow/model-versions/create HTTP/1.1" 200' in record.getMessage()

    def archived(record) -> bool:
        return record.name == "registry.lifecycle" and record.getMessage().startswith(
            f"archived {TENANT}.load_forecaster version {champion.version}")

    def registry_state():
        return {m.id: (m.stage, m.serving, m.tags.get(TAG_DATA_END), m.tags.get(TAG_DECISION))
                for m in versions(ems)}

    s3, mlflow_server = service(ems, "s3"), service(ems, "mlflow")
    faults = [Fault(s3, trigger=half_uploaded, crash=True, inspect=registry_state),  # graceful: ~10 s
              Fault(mlflow_server, trigger=created, inspect=registry_state),
              Fault(mlflow_server, trigger=archived, inspect=registry_state)]
    with fault_plan(faults, ("urllib3.connectionpool", "registry.lifecycle")) as plan:
        run = daily(ems)
    assert all(f.restarted for f in faults), (plan.seen, [f.stopped for f in faults])
    assert run.success, (run.error, plan.seen)
    (d,) = [x for x in run.outputs["decide"] if x["tenant"] == TENANT]
    new = [m for m in versions(ems) if m.id not in known]

    # 1. S3 cut the upload: the retry trained again; the cut logged model was never registered.
    cut = uploads[0]
    assert faults[0].failure.startswith("train challengers: transient failure on attempt 1")
    assert set(faults[0].state) == known  # no version registered from the cut upload
    registered = {ems.mlflow.get_model_version(f"{TENANT}.load_forecaster", str(m.version)).source for m in new}
    assert len(new) == 1 and not any(cut in s for s in registered), registered
    cut_run = ems.mlflow.get_logged_model(cut).source_run_id
    assert ems.mlflow.get_run(cut_run).info.status == "FAILED"
    assert ems.mlflow.get_run(new[0].run_id).info.status == "FINISHED"  # ended by the retry (MLflow was down)
    # 2. MLflow stopped after the version was created: found by its data tag and finished, not trained again.
    (challenger,) = [k for k in faults[1].state if k not in known]
    assert faults[1].state[challenger][0] == "none" and faults[1].state[challenger][2]  # created, no stage yet
    assert faults[1].state[champion.id][1]  # the champion still served
    assert faults[1].failure.startswith("train challengers: transient failure")
    # 3. MLflow stopped inside the promotion: the retried decision completed it instead of refusing it.
    assert faults[2].failure.startswith(f"decide {TENANT}: transient failure")
    assert faults[2].state[challenger][:2] == ("production", True) and faults[2].state[challenger][3] is None
    assert d["challenger"] == challenger == new[0].id and d["decision"] == PROMOTED, d["reason"]
    assert run.steps["train_challengers"]["attempts"] == 3 and run.steps["decide"]["attempts"] == 2
    # The end state is a clean promotion's: one new version, serving alone, the champion archived, the
    # decision and one audit event recorded; nothing left in stage None.
    now = {m.id: m for m in versions(ems)}
    assert now[challenger].serving and now[challenger].stage == "production" and now[challenger].disagreement is None
    assert now[champion.id].stage == "archived" and not now[champion.id].serving
    assert now[challenger].tags[TAG_DECISION] == PROMOTED and now[challenger].tags[TAG_CHAMPION] == champion.id
    assert not [m for m in now.values() if m.stage == "none"]
    events, _ = lifecycle.history(ems.mlflow, TENANT, "load_forecaster")
    assert [(e.version, e.to, e.source) for e in events if e.version == now[challenger].version] == [
        (now[challenger].version, "production", "ems")]
    # The served model loads cold (complete files) and forecasts.
    served = Client(ems.settings, ems.store, model_ttl_seconds=0).forecast(TENANT, "zone1", horizon=24)
    assert served.model_id == challenger and served.frame["point"].notna().all()
    # A rerun reuses the challenger and its decision and changes nothing.
    again = daily(ems)
    (d2,) = [x for x in again.outputs["decide"] if x["tenant"] == TENANT]
    assert again.success and d2["reused"] and d2["challenger"] == challenger and d2["decision"] == PROMOTED
    assert {m.id: (m.stage, m.serving) for m in versions(ems)} == {k: (m.stage, m.serving) for k, m in now.items()}
    (ems.tmp / "daily_faults.json").write_text(json.dumps(
        {"restart_s": [f.restarted - f.stopped for f in faults], "steps": run.steps, "seen": plan.seen,
         "decision": d}, indent=1, default=str))


def test_daily_bad_input_fails_at_once_without_training(ems):
    before = {m.id for m in versions(ems)}
    run = daily(ems, margin=1.5)
    assert not run.success and run.steps["drift"]["attempts"] == 1 and "margin=1.5 is out of range 0..1" in run.error
    assert "train_challengers" not in run.steps and {m.id for m in versions(ems)} == before
    with pytest.raises(PipelineError, match="step drift: .*margin=-0.1 is out of range"):
        execute("daily", ems, {op: DAILY | {"margin": -0.1} for op in ("drift", "train_challengers", "backtest",
                                                                        "decide")})
