"""The Dagster pipelines (issue 23) through Dagster's in-process executor on the real stack (the tests
marked `warehouse` also run on TimescaleDB): the hourly run picks up late data and records a
de-duplicated alert; Redis, Postgres, MLflow or S3 stopped under the hourly run is retried and the run
succeeds, leaving what a run without the outage leaves; bad input is not retried; the daily run
promotes a clearly better challenger and keeps the champion against a worse one, both trained by the
product's own code on real Tetouan data; backfill; live accuracy equals pandas; PSI crosses on a level
shift only; tenant roles see their own monitoring rows; the scheduler and CLI."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InvalidArgumentError, UnknownAssetError
from core.settings import Settings
from inference.accuracy import log_forecast, report
from inference.client import Client
from pipelines.challenger import KEPT, PROMOTED, TAG_DECISION
from pipelines.hourly import HourlyConfig, record_all, score_tenants
from pipelines.run import PipelineError, execute
from pipelines.runtime import Runtime
from registry import lifecycle, train_anomaly, train_forecast
from registry.training_data import SplitConfig
from stack import services
from tests.helpers.data import TETOUAN, zone1
from warehouse import alerts
from warehouse.ingest import ingest_readings
from warehouse.point_in_time import tenant_assets
from warehouse.refresh import refresh
from warehouse.store import materialize

pytestmark = pytest.mark.integration
TENANT = "pipe"
SPIKE = pd.Timestamp("2017-02-26T21:00:00")  # in the late block, within the last 3 hours of it



@pytest.fixture(scope="module")
def ems(stack, store, tmp_path_factory):
    """Tenant `pipe`: zone 1 from 2017-01-01 to 2017-02-26, a z_score detector and a deliberately weak
    champion forecaster (15 training days, 3 boosting rounds) in production."""
    tmp = tmp_path_factory.mktemp("pipelines")
    ingest_readings(stack, zone1(tmp / "a.csv", "2017-01-01", "2017-02-26"), TENANT)
    refresh(stack)
    materialize(stack, store=store)
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    split = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
    detector = train_anomaly.train(stack, store, TENANT, "z_score", split=split)
    lifecycle.promote(mlc, detector.model_id, "production")
    weak = train_forecast.train(stack, store, TENANT, split=SplitConfig(history_days=22, holdout_days=7),
                                boosting=train_forecast.BoosterConfig(num_boost_round=3))
    lifecycle.promote(mlc, weak.model_id, "production", force=True)
    runtime = Runtime(stack, store)
    runtime.tmp = tmp
    return runtime


@pytest.mark.warehouse  # also on TimescaleDB: the new tables' migrations and RLS
def test_hourly_picks_up_late_data_and_records_one_alert_per_anomalous_window(ems):
    first = execute("hourly", ems, {"score": {"tenants": [TENANT]}})
    assert first.success and [s["status"] for s in first.steps.values()] == ["succeeded"] * 5
    before = {a.id for a in alerts.list_alerts(ems.settings, TENANT)}
    # A day of readings arrives late, with one meter hour at 3x its level.
    ingest_readings(ems.settings, zone1(ems.tmp / "late.csv", "2017-02-26", "2017-02-27", SPIKE), TENANT)
    run = execute("hourly", ems, {"score": {"tenants": [TENANT]}})
    assert run.outputs["refresh"]["rows"], "the late day was refreshed"
    assert sum(run.outputs["materialize"]["written"].values()) >= 1
    scored = {s["detector"]: s for s in run.outputs["score"] if s["tenant"] == TENANT}
    assert scored["anomaly_z_score"]["scored_to"] == "2017-02-26T23:00:00+00:00"  # the late day's last hour
    new = [a for a in alerts.list_alerts(ems.settings, TENANT) if a.id not in before]
    assert [(a.asset_id, a.window_start.replace(tzinfo=None), a.state) for a in new] == [
        ("zone1", SPIKE.to_pydatetime(), "open")]
    assert new[0].severity in ("high", "critical") and new[0].score > 3.5
    # Idempotent: the same run again scores the same hours and changes nothing.
    again = execute("hourly", ems, {"score": {"tenants": [TENANT]}})
    assert again.outputs["record"]["opened"] == 0 and again.outputs["record"]["unchanged"] >= 1
    # The same work called directly (what `ems refresh`, `ems materialize`, `ems anomaly` do): Dagster's overhead.
    t0 = time.perf_counter()
    refresh(ems.settings)
    materialize(ems.settings, store=ems.store)
    record_all(ems.settings, score_tenants(ems, HourlyConfig(tenants=[TENANT])))
    direct = time.perf_counter() - t0
    (Path(ems.tmp) / "hourly_timing.json").write_text(json.dumps({"pipeline_s": again.seconds, "direct_s": direct}))
    assert again.seconds < direct + 5.0
    assert len(alerts.list_alerts(ems.settings, TENANT)) == len(before) + 1
    acked = alerts.acknowledge(ems.settings, TENANT, new[0].id, by="tester", note="meter swap")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "tester"
    assert [a.id for a in alerts.list_alerts(ems.settings, TENANT, state="open")] == \
        [a.id for a in alerts.list_alerts(ems.settings, TENANT) if a.id != new[0].id and a.state == "open"]
    with pytest.raises(alerts.AlertNotFoundError, match="has no alert 999999"):
        alerts.acknowledge(ems.settings, TENANT, 999999, by="tester")


class _Outage(logging.Handler):
    """A service outage under a pipeline run: `service` is stopped when the refresh step logs its report
    (synchronously: the steps after it meet the service down; with `stop_after_refresh=False` the
    caller stops it before the run), and started again in a thread once a step reported its first
    transient failure (pipelines/transient.py), while that step waits for its retry."""

    def __init__(self, service, stop_after_refresh: bool):
        super().__init__()
        self.service, self.stop_after_refresh = service, stop_after_refresh
        self.seen: list[str] = []  # the transient failures, as logged
        self.stopped = self.restarted = None  # time.monotonic() of each
        self.thread: threading.Thread | None = None

    def _up(self):
        self.service.up()
        self.restarted = time.monotonic()

    def emit(self, record):
        if record.name == "warehouse.refresh" and self.stop_after_refresh and self.stopped is None \
                and record.getMessage().startswith("refresh: "):
            self.service.down()
            self.stopped = time.monotonic()
        elif record.name == "pipelines.transient":
            self.seen.append(record.getMessage())
            if self.thread is None:
                self.thread = threading.Thread(target=self._up, daemon=True)
                self.thread.start()


@contextmanager
def outage(ems, name: str, stop_after_refresh: bool = True):
    """Service `name` of the test stack goes down under the run (_Outage); whatever happens, it is up
    again afterwards, so the rest of the session finds the stack as it was."""
    service = next(s for s in services.services(ems.settings) if s.name == name)
    handler = _Outage(service, stop_after_refresh)
    loggers = [logging.getLogger("warehouse.refresh"), logging.getLogger("pipelines.transient")]
    level = loggers[0].level
    loggers[0].setLevel(logging.INFO)  # the refresh report is an INFO line
    for log in loggers:
        log.addHandler(handler)
    if not stop_after_refresh:
        service.down()
        handler.stopped = time.monotonic()
    try:
        yield handler
    finally:
        for log in loggers:
            log.removeHandler(handler)
        loggers[0].setLevel(level)
        if handler.thread is not None:
            handler.thread.join(timeout=180)
        service.up()


@pytest.mark.warehouse  # also on TimescaleDB: materialize reads the hypertables
def test_redis_stopped_mid_run_is_retried_with_backoff_and_the_run_succeeds(ems):
    ingest_readings(ems.settings, zone1(ems.tmp / "next.csv", "2017-02-27", "2017-02-27T03:00"), TENANT)
    with outage(ems, "redis", stop_after_refresh=False) as redis:
        assert not redis.service.healthy()
        run = execute("hourly", ems, {"score": {"tenants": [TENANT]}})
    assert run.success
    assert run.steps["refresh"]["attempts"] == 1 and run.steps["materialize"]["attempts"] >= 2
    assert redis.seen[0].startswith("materialize: transient failure on attempt 1")
    assert run.outputs["materialize"]["written"]  # the new hours reached Redis on the retry


def test_bad_input_fails_the_step_once_without_retry(ems):
    with pytest.raises(PipelineError, match=r"step score: .*lookback_hours=500 is out of range 1..168"):
        execute("hourly", ems, {"score": {"tenants": [TENANT], "lookback_hours": 500}})
    run = execute("hourly", ems, {"score": {"tenants": [TENANT], "sensitivity": 9}}, raise_on_error=False)
    assert not run.success and run.steps["score"] == {"status": "failed", "attempts": 1,
                                                      "seconds": run.steps["score"]["seconds"]}
    assert "sensitivity" in run.error and "9" in run.error


DAILY = {"tenants": [TENANT], "window_days": 14, "history_days": 56, "num_boost_round": 60}


def _daily(ems, **overrides) -> dict:
    config = DAILY | overrides
    run = execute("daily", ems, {op: config for op in ("drift", "train_challengers", "backtest", "decide")})
    (decision,) = [d for d in run.outputs["decide"] if d["tenant"] == TENANT]
    return decision


def test_daily_promotes_a_clearly_better_challenger_and_a_rerun_changes_nothing(ems):
    champion = lifecycle.resolve_production(ems.mlflow, TENANT, "load_forecaster").id
    d = _daily(ems)
    (Path(ems.tmp) / "daily_promote.json").write_text(json.dumps(d, indent=1, default=str))
    assert d["champion"] == champion and d["decision"] == PROMOTED, d["reason"]
    s = d["scores"]
    assert s["challenger"]["rows"] == s["champion"]["rows"] > 0  # the same held-out rows
    assert s["challenger"]["mae"] <= 0.98 * s["champion"]["mae"] and 0.75 <= s["challenger"]["coverage"] <= 0.85
    assert lifecycle.resolve_production(ems.mlflow, TENANT, "load_forecaster").id == d["challenger"]
    assert lifecycle.show(ems.mlflow, d["challenger"]).tags[TAG_DECISION] == PROMOTED
    versions = len(lifecycle.list_models(ems.mlflow, TENANT, metrics=False))
    again = _daily(ems)
    assert again["reused"] and again["challenger"] == d["challenger"] and again["decision"] == PROMOTED
    assert len(lifecycle.list_models(ems.mlflow, TENANT, metrics=False)) == versions  # nothing trained again


def test_daily_keeps_the_champion_against_a_worse_challenger_and_says_why(ems):
    champion = lifecycle.resolve_production(ems.mlflow, TENANT, "load_forecaster").id
    ingest_readings(ems.settings, zone1(ems.tmp / "day.csv", "2017-02-27T03:00", "2017-02-28"), TENANT)
    refresh(ems.settings)
    d = _daily(ems, history_days=36, num_boost_round=3)  # 22 training days, 3 rounds: the weak recipe
    (Path(ems.tmp) / "daily_keep.json").write_text(json.dumps(d, indent=1, default=str))
    assert d["champion"] == champion and d["decision"] == KEPT
    assert d["scores"]["challenger"]["mae"] > 0.98 * d["scores"]["champion"]["mae"]
    assert "is not 2% below the champion's" in d["reason"]
    assert lifecycle.resolve_production(ems.mlflow, TENANT, "load_forecaster").id == champion
    info = lifecycle.show(ems.mlflow, d["challenger"])
    assert info.tags[TAG_DECISION] == KEPT and info.stage == "staging"


@pytest.mark.warehouse  # also on TimescaleDB
def test_backfill_ingests_refreshes_and_materializes_from_a_start_and_a_rerun_writes_nothing(ems):
    f = zone1(ems.tmp / "bf.csv", "2017-03-01", "2017-03-04")
    config = {"tenant": "pipeb", "files": [str(f)], "start": "2017-03-01T00:00:00Z"}
    with pytest.raises(PipelineError, match="start 'yesterday' is not an ISO 8601 time"):
        execute("backfill", ems, {"ingest": config | {"start": "yesterday"}, "materialize_from": config})
    with pytest.raises(UnknownAssetError, match="tenant 'pipeb' has no assets"):  # nothing was ingested
        tenant_assets(ems.settings, "pipeb", None)
    run = execute("backfill", ems, {"ingest": config, "materialize_from": config})
    (ingested,) = run.outputs["ingest"]
    assert ingested["inserted"] == 3 * 24 * 6 and run.outputs["refresh_backfill"]["rows"]
    assert all(v[0].startswith("2017-03-01") or v[0] < "2017-03-01" for v in run.outputs["materialize_from"].values())
    again = execute("backfill", ems, {"ingest": config, "materialize_from": config})
    assert again.outputs["ingest"][0]["inserted"] == 0 and again.outputs["ingest"][0]["updated"] == 0


def _hourly_means(start: str, end: str) -> pd.Series:
    """Zone 1's hourly means straight from the data file (no spike in this range), by hour start UTC."""
    f = pd.read_csv(TETOUAN, usecols=["timestamp", "zone1_power_consumption"])
    s = pd.Series(f["zone1_power_consumption"].to_numpy(), index=pd.to_datetime(f["timestamp"]).dt.tz_localize("UTC"))
    return s[start:end].resample("1h").mean()


@pytest.mark.warehouse  # also on TimescaleDB
def test_live_accuracy_of_logged_forecasts_equals_a_pandas_computation(ems):
    client = Client(ems.settings, ems.store, model_ttl_seconds=0)
    origins = [pd.Timestamp("2017-02-19T00:00:00Z"), pd.Timestamp("2017-02-19T12:00:00Z"),
               pd.Timestamp("2017-02-20T06:00:00Z")]
    served = [client.forecast(TENANT, "zone1", horizon=30, as_of=o.to_pydatetime()) for o in origins]
    for r in served:
        assert log_forecast(ems.settings, r) == 30
    assert log_forecast(ems.settings, served[0]) == 30  # logging again replaces, never duplicates
    run = execute("hourly", ems, {"score": {"tenants": [TENANT]}, "accuracy": {"days": 30}})
    pooled = run.outputs["accuracy"][TENANT]["pooled"]
    table, _ = report(ems.settings, TENANT, days=30)

    # The same numbers from the data file and the forecasts as returned, in pandas.
    hourly = _hourly_means("2017-02-05", "2017-02-23")
    f = pd.concat([r.frame.assign(model_id=r.model_id) for r in served], ignore_index=True)
    f["actual"] = hourly.reindex(pd.DatetimeIndex(f["timestamp"])).to_numpy()
    f["naive"] = hourly.reindex(pd.DatetimeIndex(f["timestamp"]) - pd.Timedelta(hours=168)).to_numpy()
    f = f.dropna(subset=["actual"])
    model = served[0].model_id
    expect = {"rows": len(f), "mae": (f["actual"] - f["point"]).abs().mean(),
              "coverage": ((f["p10"] <= f["actual"]) & (f["actual"] <= f["p90"])).mean(),
              "pinball": sum(((f["actual"] - f[c]) * a).where(f["actual"] >= f[c],
                                                                (f["actual"] - f[c]) * (a - 1)).mean()
                             for c, a in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))) / 3,
              "naive_168_mae": (f["actual"] - f["naive"]).abs().mean()}
    got = table.set_index(["model_id", "asset_id", "bucket"]).loc[(model, "(all)", "all")]
    assert got["rows"] == expect["rows"] == 90
    for k in ("mae", "coverage", "pinball", "naive_168_mae"):
        assert got[k] == pytest.approx(expect[k], rel=1e-9), k
    short = f[f["horizon_h"] <= 6]
    assert table.set_index(["model_id", "asset_id", "bucket"]).loc[(model, "zone1", "1-6h"), "mae"] == \
        pytest.approx((short["actual"] - short["point"]).abs().mean(), rel=1e-9)
    assert [p for p in pooled if p["model_id"] == model][0]["mae"] == pytest.approx(expect["mae"], rel=1e-9)
    run_id = lifecycle.show(ems.mlflow, model).run_id
    assert ems.mlflow.get_run(run_id).data.metrics["live_mae_all"] == pytest.approx(expect["mae"], rel=1e-9)


def test_ems_up_with_scheduler_serves_the_pipelines_and_their_schedules(ems, monkeypatch):
    import urllib.request

    from stack.scheduler import Scheduler
    from tests.helpers.stack import TEST_PORTS
    from tests.helpers.stack import ems as ems_cli

    monkeypatch.setenv("EMS_SCHEDULER_PORT", str(TEST_PORTS["mlflow"] + 20))
    scheduler = Scheduler(Settings())
    try:
        ems_cli("up", "--with-scheduler")
        assert scheduler.pidfile.read() is not None and scheduler.healthy()
        query = b'{"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } ' \
                b'schedules { name cronSchedule } } } } }"}'
        request = urllib.request.Request(f"http://127.0.0.1:{scheduler.port}/graphql", data=query,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            (repo,) = json.loads(r.read())["data"]["repositoriesOrError"]["nodes"]
        assert {"hourly", "daily", "backfill"} <= {j["name"] for j in repo["jobs"]}
        assert {(s["name"], s["cronSchedule"]) for s in repo["schedules"]} == {
            ("hourly_schedule", "5 * * * *"), ("daily_schedule", "30 2 * * *")}
    finally:
        scheduler.down()
    assert scheduler.pidfile.read() is None and not scheduler.healthy()


@pytest.mark.warehouse  # also on TimescaleDB: the new tables' migrations and RLS
def test_psi_crosses_the_threshold_on_a_level_shift_and_not_on_the_same_series_without_it(ems):
    from inference.drift import check
    from warehouse.monitor import open_alerts

    shifted = pd.Timestamp("2017-02-19T00:00:00")
    for tenant, scale in (("pipen", 1.0), ("pipes", 1.6)):  # the same real series, the last week x1.6
        f = pd.read_csv(zone1(ems.tmp / f"{tenant}.csv", "2017-01-15", "2017-02-26"))
        f.loc[pd.to_datetime(f["timestamp"]) >= shifted, "value"] *= scale
        f.to_csv(ems.tmp / f"{tenant}.csv", index=False)
        ingest_readings(ems.settings, ems.tmp / f"{tenant}.csv", tenant)
    refresh(ems.settings)
    reference = (pd.Timestamp("2017-01-22T00:00:00Z").to_pydatetime(), shifted.tz_localize("UTC").to_pydatetime())
    now = pd.Timestamp("2017-02-26T01:00:00Z").to_pydatetime()
    stable = check(ems, "pipen", reference=reference, recent_days=7, now=now)
    moved = check(ems, "pipes", reference=reference, recent_days=7, now=now)
    assert stable.recent == moved.recent == ("2017-02-19T00:00:00+00:00", "2017-02-26T00:00:00+00:00")
    assert set(stable.psi["zone1"]) == {"lag_1h", "lag_24h", "lag_168h"}  # no weather for this asset
    assert max(stable.psi["zone1"].values()) < 0.25
    assert [c for c in stable.crossings if c["kind"] == "psi"] == []
    assert moved.psi["zone1"]["lag_1h"] > 0.25 and moved.psi["zone1"]["lag_24h"] > 0.25
    # lag_168h looks a week back, so it reads the unshifted week for most of the window
    assert moved.psi["zone1"]["lag_168h"] < moved.psi["zone1"]["lag_1h"]
    kinds = {(a.kind, a.subject) for a in open_alerts(ems.settings, "pipes")}
    assert ("psi", "lag_1h") in kinds and ("feature_age", "online") in kinds  # never materialized
    assert ("psi", "lag_1h") not in {(a.kind, a.subject) for a in open_alerts(ems.settings, "pipen")}
    again = check(ems, "pipes", reference=reference, recent_days=7, now=now)
    assert again.recorded["opened"] == 0 and again.recorded["updated"] == len(again.crossings)
    assert len(open_alerts(ems.settings, "pipes")) == len(moved.crossings)


@pytest.mark.warehouse  # also on TimescaleDB: the new tables' migrations and RLS
def test_a_tenant_database_role_sees_only_its_own_alerts_forecast_log_and_drift_alerts(ems):
    import secrets

    import psycopg

    from warehouse.tenant_roles import create_tenant_role, role_name

    password = secrets.token_urlsafe(18)
    create_tenant_role(ems.settings, "pipen", password)
    a = ems.settings.postgres
    with psycopg.connect(host=a.host, port=a.port, dbname=a.database, user=role_name("pipen"), password=password,
                         sslmode=a.sslmode) as conn:
        for table in ("anomaly_alerts", "forecast_log", "monitor_alerts"):
            seen = {t for (t,) in conn.execute(f"SELECT DISTINCT tenant_id FROM {table}")}  # noqa: S608 (fixed)
            assert seen <= {"pipen"}, table
        assert {t for (t,) in conn.execute("SELECT DISTINCT tenant_id FROM monitor_alerts")} == {"pipen"}
    with psycopg.connect(ems.settings.postgres.conninfo()) as operator:  # the operator sees every tenant
        assert {t for (t,) in operator.execute("SELECT DISTINCT tenant_id FROM monitor_alerts")} >= {"pipes", "pipen"}
        assert {t for (t,) in operator.execute("SELECT DISTINCT tenant_id FROM anomaly_alerts")} >= {"pipe"}


def test_cli_monitor_alerts_and_drift_print_one_json_document(ems):
    from tests.helpers.stack import ems as ems_cli

    plot = ems.tmp / "monitor.png"
    rows = json.loads(ems_cli("monitor", "--tenant", TENANT, "--days", "30", "--json", "--plot", str(plot)).stdout)
    assert {r["bucket"] for r in rows} >= {"1-6h", "7-24h", "25-72h", "all"} and plot.stat().st_size > 10_000
    listed = json.loads(ems_cli("alerts", "list", "--tenant", TENANT, "--json").stdout)
    assert listed and {a["state"] for a in listed} <= {"open", "acknowledged"}
    opened = [a for a in listed if a["state"] == "open"]
    if opened:
        acked = json.loads(ems_cli("alerts", "ack", "--tenant", TENANT, str(opened[0]["id"]), "--json").stdout)
        assert acked["state"] == "acknowledged"
    bad = ems_cli("alerts", "list", "--tenant", TENANT, "--state", "closed", check=False)
    assert bad.returncode == 1 and "state 'closed' is not one of open, acknowledged" in bad.stderr
    report = json.loads(ems_cli("drift", "--tenant", "pipes", "--reference-start", "2017-01-22T00:00:00",
                                "--reference-end", "2017-02-19T00:00:00", "--json").stdout)
    assert report["psi"]["zone1"]["lag_1h"] > 0.25
    bad = ems_cli("monitor", "--tenant", TENANT, "--days", "0", check=False)
    assert bad.returncode == 1 and "days=0 is out of range 1..3650" in bad.stderr
    run = json.loads(ems_cli("pipelines", "run", "hourly", "--tenant", TENANT, "--json").stdout)
    assert run["success"] and run["pipeline"] == "hourly" and set(run["steps"]) == {
        "refresh", "materialize", "score", "record", "accuracy"}
    bad = ems_cli("pipelines", "run", "hourly", "--tenant", TENANT, "--lookback-hours", "500", check=False)
    assert bad.returncode == 1 and "lookback_hours=500 is out of range 1..168" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.warehouse  # also on TimescaleDB
def test_alert_records_merge_consecutive_hours_and_an_acknowledged_alert_is_not_extended(ems):
    t = pd.Timestamp("2017-03-10T05:00:00Z").to_pydatetime()
    hour = pd.Timedelta(hours=1).to_pytimedelta()

    def h(i: int, score: float, severity: str = "medium") -> alerts.AnomalousHour:
        return alerts.AnomalousHour(t + i * hour, score, severity, f"hour {i}")

    def mine() -> list[alerts.Alert]:
        return sorted(alerts.list_alerts(ems.settings, "pipea", asset="m1"), key=lambda a: a.window_start)

    r = alerts.record(ems.settings, "pipea", "m1", "anomaly_z_score", "pipea:anomaly_z_score:1",
                      [h(1, 3.0), h(0, 2.6), h(5, 2.2, "low")])
    assert (r.opened, r.extended, r.unchanged) == (2, 1, 0)
    first, second = mine()
    assert (first.window_start, first.window_end, first.score, first.explanation) == (t, t + 2 * hour, 3.0, "hour 1")
    assert (second.window_start, second.window_end, second.severity) == (t + 5 * hour, t + 6 * hour, "low")
    r = alerts.record(ems.settings, "pipea", "m1", "anomaly_z_score", "pipea:anomaly_z_score:1",
                      [h(0, 4.0, "high"), h(1, 1.0)])  # re-scored: only a higher score changes anything
    assert (r.opened, r.extended, r.unchanged) == (0, 0, 2)
    assert [(a.score, a.severity) for a in mine()][0] == (4.0, "high")
    alerts.acknowledge(ems.settings, "pipea", first.id, by="tester")
    r = alerts.record(ems.settings, "pipea", "m1", "anomaly_z_score", "pipea:anomaly_z_score:1", [h(2, 2.4, "low")])
    assert r.opened == 1 and len(mine()) == 3  # next to an acknowledged alert: a new one
    with pytest.raises(InvalidArgumentError, match="severity 'huge' is not one of low, medium, high, critical"):
        alerts.record(ems.settings, "pipea", "m1", "anomaly_z_score", "x", [h(9, 9.0, "huge")])


def _what_users_see(ems) -> dict:
    """Tenant `pipe` as its users see it: its feature rows (count, newest hour, a digest of every
    column), zone 1's online load features with their event time (Feast's own read of Redis), its
    alerts and the version each of its models serves."""
    from psycopg import sql

    from warehouse.db import connect

    tables = {}
    with connect(ems.settings) as conn:
        for table in ("load_lag_features", "load_rolling_features"):
            query = sql.SQL("SELECT count(*), max(event_timestamp), md5(string_agg(f::text, '|' ORDER BY "
                            "f.asset_id, f.event_timestamp)) FROM {} f WHERE tenant_id = %s")
            tables[table] = conn.execute(query.format(sql.Identifier(table)), (TENANT,)).fetchone()
    views = ("load_lags", "load_rolling")
    features = [f"{v}:{f.name}" for v in views for f in ems.store.get_feature_view(v).features]
    online = ems.store.get_online_features(features=features, entity_rows=[{"tenant_id": TENANT, "asset_id": "zone1"}]
                                           ).to_dict(include_event_timestamps=True)
    return {"tables": tables, "online": online,
            "alerts": sorted((a.id, a.window_start, a.window_end, a.severity, a.score, a.state)
                             for a in alerts.list_alerts(ems.settings, TENANT)),
            "serving": sorted(m.id for m in lifecycle.list_models(ems.mlflow, TENANT, metrics=False) if m.serving)}


def _outage_run(ems, name: str, hours: tuple[str, str], runtime=None):
    """New hours of zone 1 ingested, then an hourly run with service `name` stopped once refresh is done
    and started again on the first transient failure; then the same run again with every service up.
    Returns (the run under the outage, the handler, the clean run, what users saw after each run)."""
    ingest_readings(ems.settings, zone1(ems.tmp / f"{name}.csv", *hours), TENANT)
    config = {"score": {"tenants": [TENANT]}}
    with outage(ems, name) as down:
        run = execute("hourly", runtime or ems, config)
    after = _what_users_see(ems)
    clean = execute("hourly", ems, config)
    return run, down, clean, after, _what_users_see(ems)


def _assert_recovered(run, down, clean, after, again, failing: set[str]):
    """The run under the outage retried (only) the steps that need the service, with backoff, succeeded,
    and left what a run without the outage leaves: the clean rerun finds nothing to do and changes
    nothing a user sees."""
    assert run.success, run.error
    assert down.stopped is not None and down.restarted is not None
    assert run.steps["refresh"]["attempts"] == 1
    retried = {k for k, s in run.steps.items() if s["attempts"] > 1}
    assert retried and retried <= failing and all(run.steps[k]["status"] == "succeeded" for k in run.steps)
    assert down.seen[0].split(":")[0] in failing and ": transient failure on attempt 1 (" in down.seen[0]
    assert clean.success and not clean.outputs["refresh"]["rows"]
    assert sum(clean.outputs["materialize"]["written"].values()) == 0  # nothing was left queued
    assert clean.outputs["record"]["opened"] == clean.outputs["record"]["extended"] == 0
    assert [(s["detector"], s["scored_to"]) for s in run.outputs["score"]] == \
        [(s["detector"], s["scored_to"]) for s in clean.outputs["score"]]
    assert after == again
    newest = after["tables"]["load_lag_features"][1]
    assert after["online"]["lag_1h__ts"] == [int(newest.timestamp())]  # the new hours reached Redis


@pytest.mark.warehouse  # also on TimescaleDB: the restarted server preloads it again
def test_postgres_stopped_mid_run_is_retried_with_backoff_and_leaves_what_a_clean_run_leaves(ems):
    run, down, clean, after, again = _outage_run(ems, "postgres", ("2017-02-28T00:00", "2017-02-28T03:00"))
    _assert_recovered(run, down, clean, after, again, failing={"materialize", "score", "record", "accuracy"})
    assert after["tables"]["load_lag_features"][1] == pd.Timestamp("2017-02-28T03:00:00Z")
    assert "materialize" in {s.split(":")[0] for s in down.seen}
    assert run.outputs["materialize"]["written"] and sum(run.outputs["materialize"]["written"].values()) >= 1
    (Path(ems.tmp) / "postgres_outage.json").write_text(json.dumps(
        {"restart_s": down.restarted - down.stopped, "steps": run.steps, "seen": down.seen}, indent=1))


def test_mlflow_stopped_mid_run_is_retried_with_backoff_and_leaves_what_a_clean_run_leaves(ems):
    run, down, clean, after, again = _outage_run(ems, "mlflow", ("2017-02-28T03:00", "2017-02-28T06:00"))
    _assert_recovered(run, down, clean, after, again, failing={"score", "accuracy"})
    assert run.steps["materialize"]["attempts"] == 1  # Postgres and Redis were up
    (Path(ems.tmp) / "mlflow_outage.json").write_text(json.dumps(
        {"restart_s": down.restarted - down.stopped, "steps": run.steps, "seen": down.seen}, indent=1))


def test_s3_stopped_mid_run_is_retried_with_backoff_and_leaves_what_a_clean_run_leaves(ems):
    # A fresh SDK client: the detector is not loaded yet, so scoring must read its files from S3.
    fresh = Runtime(ems.settings, ems.store)
    run, down, clean, after, again = _outage_run(ems, "s3", ("2017-02-28T06:00", "2017-02-28T09:00"), fresh)
    _assert_recovered(run, down, clean, after, again, failing={"score"})
    (Path(ems.tmp) / "s3_outage.json").write_text(json.dumps(
        {"restart_s": down.restarted - down.stopped, "steps": run.steps, "seen": down.seen}, indent=1))
