"""Fresh features at any history length (issue 17) on the real stack, both schema paths.

1. The feature tables that `ems refresh` maintains incrementally equal, row for row and bit for bit,
   the window-function views they replaced (their SQL is read from the original migrations
   060/061/070), after every step of a sequence: first load with gaps, duplicates, DST days and
   three time zones; a correction of old hours; late data filling a gap; new hours; an asset moved
   to another site.
2. Change-driven materialization: after ingest -> refresh -> materialize, every changed asset's
   online row equals its latest feature row (new asset, late hour, correction of the latest hour,
   backfill), with no --start.
3. kill -9 of `ems refresh` and `ems materialize` part way, then a rerun: the same tables and Redis
   as an uninterrupted run. Two refreshes at once: the second waits, nothing is computed twice.
4. Staleness: `ems features` and the SDK say when the online row trails the readings.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from psycopg import sql

from core.settings import ROOT
from inference.freshness import materialization_lag, stale_warnings
from tests.helpers.stack import ems
from tests.integration import test_faults as faults
from tests.integration.test_faults import kill_group, poll, query, wait_backend_gone
from warehouse.db import connect
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.migrate import flavour
from warehouse.refresh import refresh
from warehouse.store import materialize

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
spawn = faults.spawn  # the real `ems` CLI in its own process group (fixture)
TENANT = "fresh"
ZONES = {"utc1": "UTC", "ny1": "America/New_York", "ber1": "Europe/Berlin", "syd1": "Australia/Sydney"}
START, DAYS = "2021-03-05", 30  # US DST starts 14 March, EU 28 March; Sydney's ends 4 April
SQL_DIR = ROOT / "feature_repo" / "sql"
# (feature table, migration holding the view it replaced)
REPLACED = (("load_lag_features", "060_load_lag_features.sql"),
            ("load_rolling_features", "061_load_rolling_features.sql"),
            ("asset_weather_features", "070_asset_weather_features.sql"))
LOAD_VIEWS = ("load_lags", "load_rolling")


# ------------------------------------------------------------------ reference: the replaced views
def _view_select(migration: str) -> str:
    text = (SQL_DIR / migration).read_text()
    return re.search(r"CREATE OR REPLACE VIEW \w+ AS\s*(.*?);\s*$", text, re.S).group(1)


def mismatches(settings, tenant: str) -> dict[str, tuple[int, int, int]]:
    """Per feature table: (rows, rows only in the table, rows only in the replaced view) for a tenant."""
    out = {}
    with connect(settings) as conn:
        for table, migration in REPLACED:
            old = sql.SQL("SELECT * FROM ({}) AS v WHERE tenant_id = %(t)s").format(sql.SQL(_view_select(migration)))
            new = sql.SQL("SELECT * FROM {} WHERE tenant_id = %(t)s").format(sql.Identifier(table))
            count = sql.SQL("SELECT count(*) FROM ({} EXCEPT ALL {}) AS d")
            rows = conn.execute(sql.SQL("SELECT count(*) FROM ({}) AS n").format(new), {"t": tenant}).fetchone()[0]
            out[table] = (rows,
                          conn.execute(count.format(new, old), {"t": tenant}).fetchone()[0],
                          conn.execute(count.format(old, new), {"t": tenant}).fetchone()[0])
    return out


def assert_equal_to_replaced_views(settings, tenant: str, min_rows: int = 1) -> None:
    found = mismatches(settings, tenant)
    for table, (rows, only_new, only_old) in found.items():
        assert (only_new, only_old) == (0, 0), (table, found)
        assert rows >= (min_rows if table != "asset_weather_features" else 0), (table, found)


# ------------------------------------------------------------------ data
def meter_file(path, asset: str, tz: str, start: str = START, days: int = DAYS, seed: int = 0,
               drop_hours: int = 12, gap: tuple[int, int] | None = (200, 230)) -> pd.DataFrame:
    """10-minute readings of one meter, timestamps naive in `tz` (DST repeats included), a daily
    shape plus noise, `drop_hours` random hours missing and a `gap` of hours missing."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 144, freq="10min")
    hours = np.arange(len(ts)) // 6
    keep = ~np.isin(hours, rng.choice(hours.max(), drop_hours, replace=False))
    if gap:
        keep &= ~((hours >= gap[0]) & (hours < gap[1]))
    value = 100 + 30 * np.sin(2 * np.pi * ts.hour / 24) + rng.normal(0, 3, len(ts))
    frame = pd.DataFrame({"asset_id": asset, "timestamp": ts.tz_convert(tz).tz_localize(None)[keep],
                          "value": value[keep].round(3)})
    if tz == "UTC":  # exact duplicate rows, as re-sent exports carry them
        frame = pd.concat([frame, frame.iloc[::97]]).sort_values("timestamp", kind="stable")
    frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return frame


def weather_file(path, start: str = START, days: int = DAYS, offset: float = 0.0):
    ts = pd.date_range(pd.Timestamp(start), periods=days * 24 * 2, freq="30min")
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "temperature": (10 + 5 * np.sin(np.arange(len(ts)) / 20) + offset).round(2),
                  "humidity": 60.0}).to_csv(path, index=False)
    return path


def online_rows(store, tenant: str, assets: list[str]) -> pd.DataFrame:
    """Each asset's online load features with their event time (Feast's own online read)."""
    features = [f"{v}:{f.name}" for v in LOAD_VIEWS for f in store.get_feature_view(v).features]
    got = store.get_online_features(features=features, entity_rows=[{"tenant_id": tenant, "asset_id": a}
                                                                    for a in assets]).to_df()
    return got.set_index("asset_id")


def latest_rows(settings, tenant: str, assets: list[str]) -> pd.DataFrame:
    with connect(settings) as conn:
        cur = conn.execute(
            "SELECT DISTINCT ON (l.asset_id) l.*, r.* FROM load_lag_features l JOIN load_rolling_features r"
            " USING (tenant_id, asset_id, event_timestamp) WHERE l.tenant_id = %s AND l.asset_id = ANY(%s)"
            " ORDER BY l.asset_id, l.event_timestamp DESC", (tenant, assets))
        names = [d.name for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    return frame.loc[:, ~frame.columns.duplicated()].set_index("asset_id")


def assert_online_is_latest(settings, store, tenant: str, assets: list[str]) -> None:
    """Redis holds each asset's latest feature row, value for value."""
    online, latest = online_rows(store, tenant, assets), latest_rows(settings, tenant, assets)
    for asset in assets:
        for col in ("lag_1h", "lag_24h", "lag_168h", "historical_avg_168h", "historical_std_168h", "hours_168h"):
            want, got = latest.loc[asset, col], online.loc[asset, col]
            assert (pd.isna(want) and pd.isna(got)) or got == pytest.approx(float(want)), (asset, col, got, want)
    stamps = online_stamps(store, tenant, assets)
    assert stamps == {a: latest.loc[a, "event_timestamp"] for a in assets}


def online_stamps(store, tenant: str, assets: list[str]) -> dict[str, datetime | None]:
    from inference.online import online_reader

    secs = online_reader(store).event_times([(tenant, a) for a in assets], "load_lags")
    return {a: datetime.fromtimestamp(s, UTC) if s else None for a, s in zip(assets, secs, strict=True)}


# ------------------------------------------------------------------ 1. equality with the replaced views
def test_feature_tables_equal_the_replaced_views_after_every_step(stack, tmp_path):
    tenant = f"{TENANT}-eq"
    weather_file(tmp_path / "w1.csv")
    ingest_weather(stack, tmp_path / "w1.csv", "eq-site-a", columns="temperature,humidity")
    ingest_weather(stack, weather_file(tmp_path / "w2.csv", offset=3.0), "eq-site-b", columns="temperature,humidity")
    files = {}
    for i, (asset, tz) in enumerate(ZONES.items()):
        files[asset] = meter_file(tmp_path / f"{asset}.csv", asset, tz, seed=i)
        ingest_readings(stack, tmp_path / f"{asset}.csv", tenant, tz=tz, site="eq-site-a" if i % 2 else None)
    report = refresh(stack)
    assert report.rows["load_lag_features"] > 4 * 600
    assert_equal_to_replaced_views(stack, tenant, min_rows=4 * 600)

    # a correction of old hours (values of 3 hours of utc1, 20 days back)
    utc = files["utc1"].drop_duplicates()
    when = pd.to_datetime(utc["timestamp"]) - pd.Timestamp(START)
    old = utc[(when >= pd.Timedelta("10D")) & (when < pd.Timedelta("10D3h"))].assign(value=lambda f: f["value"] + 50)
    assert old["timestamp"].dt.floor("h").nunique() == 3
    old.to_csv(tmp_path / "old.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    ingest_readings(stack, tmp_path / "old.csv", tenant)
    report = refresh(stack)
    # 3 hourly buckets; their rows, the rows with them as lag_24h / lag_168h, the rolling windows after them
    # (TimescaleDB: also the other assets' buckets of those hours whose rematerialized means moved by an ulp)
    if flavour(stack) == "plain":
        assert report.rows["readings_hourly"] == 3 and 3 <= report.rows["load_lag_features"] <= 9
        assert 24 <= report.rows["load_rolling_features"] <= 170
    else:
        assert report.rows["readings_hourly"] >= 3 and report.rows["load_rolling_features"] >= 24
    assert_equal_to_replaced_views(stack, tenant)

    # late data: the 30-hour gap of ny1 arrives
    full = meter_file(tmp_path / "ny_full.csv", "ny1", ZONES["ny1"], seed=1, drop_hours=0, gap=None)
    ts = pd.to_datetime(full["timestamp"])
    hole = full[(ts >= ts.min() + pd.Timedelta("200h")) & (ts < ts.min() + pd.Timedelta("230h"))]
    hole.to_csv(tmp_path / "hole.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    ingest_readings(stack, tmp_path / "hole.csv", tenant, tz=ZONES["ny1"])
    assert refresh(stack).rows["readings_hourly"] >= 29
    assert_equal_to_replaced_views(stack, tenant)

    # new hours for every asset, and ber1 moves to site b
    for i, (asset, tz) in enumerate(ZONES.items()):
        meter_file(tmp_path / f"{asset}-new.csv", asset, tz, start="2021-04-04", days=2, seed=10 + i, gap=None)
        ingest_readings(stack, tmp_path / f"{asset}-new.csv", tenant, tz=tz,
                        site="eq-site-b" if asset == "ber1" else None)
    refresh(stack)
    assert_equal_to_replaced_views(stack, tenant)
    with connect(stack) as conn:
        sites = dict(conn.execute("SELECT DISTINCT a.asset_id, w.temperature IS NOT NULL FROM asset_weather_features w"
                                  " JOIN assets a USING (tenant_id, asset_id) WHERE tenant_id = %s", (tenant,)))
    assert sites == {"ny1": True, "ber1": True, "syd1": True}

    # nothing queued: a refresh recomputes nothing
    assert refresh(stack).rows == {}


# ------------------------------------------------------------------ 2. change-driven materialization
def test_every_changed_asset_reaches_redis_without_start(stack, store, env, tmp_path):
    tenant = f"{TENANT}-mat"
    for i, asset in enumerate(("a1", "a2", "a3")):
        meter_file(tmp_path / f"{asset}.csv", asset, "UTC", seed=20 + i, drop_hours=0, gap=None)
        ingest_readings(stack, tmp_path / f"{asset}.csv", tenant)
    refresh(stack)
    ems("materialize", env=env)
    assert_online_is_latest(stack, store, tenant, ["a1", "a2", "a3"])

    # a new asset whose readings end long before the latest event time materialized so far
    meter_file(tmp_path / "b1.csv", "b1", "UTC", start="2020-06-01", days=10, seed=30, gap=None)
    ingest_readings(stack, tmp_path / "b1.csv", tenant)
    refresh(stack)
    doc = json.loads(ems("materialize", "--json", env=env).stdout)
    assert doc["queued"] == 1 and doc["written"]["load_lags"] == 1
    assert doc["written"]["asset_profile"] == 1  # a new asset: every view of it, its static row too
    assert_online_is_latest(stack, store, tenant, ["a1", "a2", "a3", "b1"])

    # a late hour of a1, 30 h before its latest: the latest row's rolling windows change
    before = online_rows(store, tenant, ["a1"]).loc["a1", "historical_avg_168h"]
    last = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=DAYS)
    late = pd.DataFrame({"asset_id": "a1", "timestamp": pd.date_range(last - pd.Timedelta("30h"), periods=6,
                                                                       freq="10min"), "value": 5000.0})
    late.to_csv(tmp_path / "late.csv", index=False)
    ingest_readings(stack, tmp_path / "late.csv", tenant)
    refresh(stack)
    with connect(stack) as conn:
        queued = conn.execute("SELECT DISTINCT tenant_id, asset_id, relation FROM online_refresh_queue").fetchall()
    # a1's load feature tables changed (TimescaleDB: also any asset whose rematerialized buckets of that
    # window moved by an ulp, with the features computed from them), nothing of weather or profile
    # (its 10-minute readings also feed the 30-minute step table; 10 minutes do not divide 15)
    changed = {(t, a) for t, a, _ in queued}
    load_views = {"load_lag_features": "load_lags", "load_rolling_features": "load_rolling",
                  "load_features_30min": "load_30min", "load_features_15min": "load_15min"}
    assert (tenant, "a1") in changed and {r for _, _, r in queued} <= set(load_views)
    assert (tenant, "a1", "load_features_30min") in queued
    assert flavour(stack) == "timescale" or changed == {(tenant, "a1")}
    doc = json.loads(ems("materialize", "--json", env=env).stdout)
    # only the views reading the load feature tables are rewritten, not a1's static or weather rows
    by_relation = {rel: sum(r == rel for _, _, r in queued) for rel in load_views}
    assert doc["written"] == {"weather_hourly": 0, "asset_profile": 0,
                              **{view: by_relation[rel] for rel, view in load_views.items()}}
    assert online_rows(store, tenant, ["a1"]).loc["a1", "historical_avg_168h"] != pytest.approx(before)
    assert_online_is_latest(stack, store, tenant, ["a1"])

    # a correction of the latest hour of a2: same event time, new values (Feast alone would skip it)
    stamp_before = online_stamps(store, tenant, ["a2"])["a2"]
    fix = pd.DataFrame({"asset_id": "a2", "timestamp": pd.date_range(last - pd.Timedelta("1h"), periods=6,
                                                                      freq="10min"), "value": 1.0})
    fix.to_csv(tmp_path / "fix.csv", index=False)
    assert ingest_readings(stack, tmp_path / "fix.csv", tenant).updated == 6
    refresh(stack)
    ems("materialize", env=env)
    assert online_rows(store, tenant, ["a2"]).loc["a2", "lag_1h"] == pytest.approx(1.0)
    assert online_stamps(store, tenant, ["a2"])["a2"] == stamp_before
    assert_online_is_latest(stack, store, tenant, ["a2"])

    # a backfill of a3's history before its first reading: its latest row keeps lag_168h etc.
    meter_file(tmp_path / "a3-old.csv", "a3", "UTC", start="2021-02-01", days=32, seed=40, gap=None)
    ingest_readings(stack, tmp_path / "a3-old.csv", tenant)
    refresh(stack)
    ems("materialize", env=env)
    assert_online_is_latest(stack, store, tenant, ["a1", "a2", "a3", "b1"])

    # nothing changed: nothing written
    doc = json.loads(ems("materialize", "--json", env=env).stdout)
    assert doc["queued"] == 0 and set(doc["written"].values()) == {0}


# ------------------------------------------------------------------ 3. faults and concurrency
def _snapshot(settings, store, tenant: str, assets: list[str]) -> tuple:
    with connect(settings) as conn:
        tables = {t: conn.execute(sql.SQL("SELECT * FROM {} WHERE tenant_id = %s ORDER BY 1, 2, 3").format(
            sql.Identifier(t)), (tenant,)).fetchall() for t, _ in REPLACED}
        queues = {q: conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.Identifier(q)),
                                  (tenant,)).fetchone()[0] for q in ("readings_refresh_queue", "online_refresh_queue")}
    return tables, queues, online_rows(store, tenant, assets).to_dict()


@pytest.mark.parametrize("blocked", ["load_rolling_features", "online_views", "online_refresh_queue"])
def test_killed_refresh_or_materialize_then_rerun_equals_an_uninterrupted_run(stack, store, env, spawn, tmp_path,
                                                                              blocked):
    """The run is held at a lock on `blocked` (refresh: inside its transaction, after the hourly
    buckets; materialize: before any Redis write / after every Redis write, before the queue is
    cleared), killed with SIGKILL, then run again."""
    tenant = f"{TENANT}-kill-{blocked.split('_')[-1]}"
    assets = [f"k{i}" for i in range(6)]
    for i, asset in enumerate(assets):
        meter_file(tmp_path / f"{asset}.csv", asset, "UTC", seed=50 + i, days=12, drop_hours=0, gap=None)
        ingest_readings(stack, tmp_path / f"{asset}.csv", tenant)
    if blocked != "load_rolling_features":
        refresh(stack)
    command = "refresh" if blocked == "load_rolling_features" else "materialize"
    mode = "EXCLUSIVE" if blocked == "online_refresh_queue" else "ACCESS EXCLUSIVE"
    with connect(stack) as blocker:
        blocker.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier(blocked)))
        proc = spawn(command, command)
        (backend,) = poll(lambda: query(stack, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                               " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"),
                          f"{command} waiting at {blocked}", proc)[0]
        kill_group(proc)
        blocker.rollback()
    wait_backend_gone(stack, backend)
    if command == "refresh":
        with connect(stack) as conn:  # nothing of the killed transaction is left, the queue is whole
            assert conn.execute("SELECT count(*) FROM load_lag_features WHERE tenant_id = %s",
                                (tenant,)).fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM readings_refresh_queue WHERE tenant_id = %s",
                                (tenant,)).fetchone()[0] == len(assets)
        ems("refresh", env=env)
    ems("materialize", env=env)
    assert_equal_to_replaced_views(stack, tenant, min_rows=6 * 12 * 24)
    assert_online_is_latest(stack, store, tenant, assets)
    tables, queues, online = _snapshot(stack, store, tenant, assets)
    assert queues == {"readings_refresh_queue": 0, "online_refresh_queue": 0}
    # a rerun changes nothing
    ems("refresh", env=env)
    ems("materialize", env=env)
    assert _snapshot(stack, store, tenant, assets) == (tables, queues, online)


def test_a_second_refresh_waits_for_the_first(stack, env, spawn, tmp_path):
    tenant = f"{TENANT}-two"
    meter_file(tmp_path / "t.csv", "t1", "UTC", seed=60, days=10, drop_hours=0, gap=None)
    ingest_readings(stack, tmp_path / "t.csv", tenant)
    with connect(stack, autocommit=True) as holder:  # what a running refresh holds
        holder.execute("SELECT pg_advisory_lock(hashtext('ems_refresh'))")
        proc = spawn("second", "refresh", "--json")
        poll(lambda: query(stack, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                  " AND query LIKE '%%pg_advisory_lock%%' AND pid <> pg_backend_pid()"),
             "the second refresh waiting", proc)
        with connect(stack) as conn:  # it has computed nothing while it waits
            assert conn.execute("SELECT count(*) FROM readings_refresh_queue WHERE tenant_id = %s",
                                (tenant,)).fetchone()[0] == 1
        holder.execute("SELECT pg_advisory_unlock(hashtext('ems_refresh'))")
        assert proc.wait(120) == 0
    out, err = ((tmp_path / f"second.{s}").read_text() for s in ("out", "err"))
    doc = json.loads(out)
    assert doc["waited"] is True and doc["rows"]["readings_hourly"] >= 10 * 24
    assert "another `ems refresh` is running" in err
    assert_equal_to_replaced_views(stack, tenant)


# ------------------------------------------------------------------ 4. staleness
def test_stale_online_rows_are_reported_with_both_times(stack, store, env, tmp_path):
    tenant = f"{TENANT}-stale"
    meter_file(tmp_path / "s.csv", "s1", "UTC", seed=70, days=10, drop_hours=0, gap=None)
    ingest_readings(stack, tmp_path / "s.csv", tenant)
    refresh(stack)
    materialize(stack, store=store)
    assert stale_warnings(stack, tenant, ["s1"], store=store) == []
    end = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=10)
    more = pd.DataFrame({"asset_id": "s1", "timestamp": pd.date_range(end, periods=18, freq="10min"), "value": 7.0})
    more.to_csv(tmp_path / "more.csv", index=False)
    ingest_readings(stack, tmp_path / "more.csv", tenant)
    (warning,) = stale_warnings(stack, tenant, ["s1"], store=store)
    assert f"end at {end.isoformat()}" in warning and "reach " + (end + pd.Timedelta("3h")).isoformat() in warning
    assert "ems refresh" in warning
    proc = ems("features", "--tenant", tenant, "--asset", "s1", "--json", env=env)
    json.loads(proc.stdout)  # still one JSON document on stdout; the warning goes to stderr
    assert "warning:" in proc.stderr and "s1" in proc.stderr
    lag = materialization_lag(stack, store, worst=100_000)
    worst = {(w["tenant_id"], w["asset_id"]): w for w in lag["worst"]}
    assert worst[(tenant, "s1")]["lag_hours"] == 3 and lag["stale"] == len(lag["worst"])
    assert json.loads(ems("status", "--json", env=env).stdout)["materialization"]["stale"] == lag["stale"]
    refresh(stack)
    assert "`ems materialize`" in stale_warnings(stack, tenant, ["s1"], store=store)[0]
    materialize(stack, store=store)
    assert stale_warnings(stack, tenant, ["s1"], store=store) == []


def test_json_output_is_one_document_while_feast_prints_its_progress(stack, env):
    """Feast prints "Materializing …" to stdout during a window materialization; with --json, stdout
    holds only the document (library output goes to stderr)."""
    proc = ems("materialize", "--start", "2021-03-01T00:00:00", "--end", "2021-03-02T00:00:00", "--json", env=env)
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"load_lags", "load_rolling"} and "Materializing" in proc.stderr
