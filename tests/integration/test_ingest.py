"""Ingest through the real `ems` CLI and library into the real Postgres: counts, rejects,
idempotency, DST handling, atomicity."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.helpers.data import pjm_slice, tetouan_slice
from tests.helpers.stack import ems
from warehouse import ingest as ingest_module
from warehouse.db import connect
from warehouse.validate import IngestError

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]


def _counts(settings, tenant: str) -> dict[str, int]:
    with connect(settings) as conn:
        return {
            "readings": conn.execute("SELECT count(*) FROM readings WHERE tenant_id = %s", (tenant,)).fetchone()[0],
            "assets": conn.execute("SELECT count(*) FROM assets WHERE tenant_id = %s", (tenant,)).fetchone()[0],
            "queue": conn.execute("SELECT count(*) FROM readings_refresh_queue WHERE tenant_id = %s",
                                  (tenant,)).fetchone()[0],
            "value_sum": conn.execute("SELECT coalesce(sum(value), 0) FROM readings WHERE tenant_id = %s",
                                      (tenant,)).fetchone()[0],
        }


@pytest.fixture
def tidy_file(tmp_path):
    """A tidy file from the real Tetouan data: two feeders, one week of 10-min readings."""
    wide = pd.read_csv(tetouan_slice(tmp_path / "t.csv", "2017-03-01", "2017-03-08"))
    tidy = wide.melt(id_vars="timestamp", value_vars=["zone1_power_consumption", "zone2_power_consumption"],
                     var_name="asset_id", value_name="value")
    tidy["asset_id"] = tidy["asset_id"].str.replace("_power_consumption", "")
    tidy["unit"] = "kW"
    path = tmp_path / "tidy.csv.gz"
    tidy[["asset_id", "timestamp", "value", "unit"]].to_csv(path, index=False)
    return path, len(tidy)


def test_tidy_ingest_counts_and_reingest_adds_nothing(stack, env, tidy_file):
    path, n = tidy_file
    first = json.loads(ems("ingest", str(path), "--tenant", "ing-tidy", "--json", env=env).stdout)
    assert (first["inserted"], first["updated"], first["unchanged"], first["rejected"]) == (n, 0, 0, 0)
    assert first["assets"] == ["zone1", "zone2"]
    again = json.loads(ems("ingest", str(path), "--tenant", "ing-tidy", "--json", env=env).stdout)
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, n)
    assert _counts(stack, "ing-tidy")["readings"] == n


def test_changed_values_are_updated_not_duplicated(stack, tidy_file, tmp_path):
    path, n = tidy_file
    ingest_module.ingest_readings(stack, path, "ing-upd")
    frame = pd.read_csv(path)
    frame.loc[:9, "value"] = frame.loc[:9, "value"] + 1.0
    changed = tmp_path / "changed.parquet"
    frame.to_parquet(changed)
    report = ingest_module.ingest_readings(stack, changed, "ing-upd")
    assert (report.inserted, report.updated, report.unchanged) == (0, 10, n - 10)
    assert _counts(stack, "ing-upd")["readings"] == n


def test_wide_file_with_period_ending_dst_labels_loads_every_hour(stack, tmp_path):
    """PJM labels are hour-ending US Eastern; the 2016 fall-back label 02:00 appears twice and
    both hours are real (01:00-02:00 EDT, then EST)."""
    path = pjm_slice(tmp_path / "aep.csv")
    rows = len(pd.read_csv(path))
    report = ingest_module.ingest_readings(stack, path, "ing-pjm", wide=True, columns="aep=load_mw",
                                           tz="America/New_York", period_ending=pd.Timedelta("1h"))
    assert report.rejected == 0 and report.inserted == rows
    with connect(stack) as conn:
        starts = [r[0] for r in conn.execute(
            "SELECT ts FROM readings WHERE tenant_id = 'ing-pjm' AND ts >= '2016-11-06 04:00+00'"
            " AND ts < '2016-11-06 08:00+00' ORDER BY ts")]
        tz = conn.execute("SELECT timezone FROM assets WHERE tenant_id = 'ing-pjm'").fetchone()[0]
    assert [t.astimezone(UTC).hour for t in starts] == [4, 5, 6, 7]  # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST
    assert tz == "America/New_York"


def test_bad_rows_are_rejected_with_reasons_and_the_rest_loads(stack, env, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "asset_id,timestamp,value\n"
        "m1,2024-01-01T00:00:00Z,1.5\n"          # ok
        "m1,2024-01-01T01:00:00+01:00,2.5\n"     # same instant as the line above, other value
        "m1,not-a-time,3\n"
        "m1,2024-01-01T02:00:00,abc\n"
        "m1,2024-01-01T03:00:00,NaN\n"
        "m1,2024-01-01T04:00:00,4\n"
        "m1,2024-01-01T04:00:00,4\n"             # identical copy: first kept
        "m1,2099-01-01T00:00:00,5\n"
        "bad id,2024-01-01T05:00:00,6\n"
        "m2,2024-01-01T05:00:00,7\n"
    )
    rejects = tmp_path / "rejects.csv"
    doc = json.loads(ems("ingest", str(path), "--tenant", "ing-bad", "--rejects", str(rejects), "--json",
                         env=env).stdout)
    assert (doc["inserted"], doc["rejected"]) == (2, 8)
    reasons = pd.read_csv(rejects).set_index("line")["reason"].to_dict()
    assert reasons == {
        2: "conflicting_duplicate_in_file", 3: "conflicting_duplicate_in_file", 4: "unparseable_timestamp",
        5: "non_numeric_value", 6: "missing_or_nan_value", 8: "duplicate_in_file", 9: "timestamp_in_future",
        10: "invalid_asset_id",
    }


def test_unknown_column_is_refused_before_anything_is_written(stack, env, tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("asset_id,timestamp,value,voltage\nm1,2024-01-01T00:00:00Z,1,230\n")
    proc = ems("ingest", str(path), "--tenant", "ing-cols", env=env, check=False)
    assert proc.returncode == 1
    assert "unknown column(s) voltage" in proc.stderr and "allowed:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _counts(stack, "ing-cols") == {"readings": 0, "assets": 0, "queue": 0, "value_sum": 0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "Bad.Tenant"], "tenant id 'Bad.Tenant' is invalid"),
        (["--tenant", "ok", "--tz", "Mars/Olympus"], "time zone 'Mars/Olympus' is not an IANA time zone"),
        (["--tenant", "ok", "--period-ending", "3d"], "'3d' is not a duration between 1s and 1d"),
    ],
)
def test_bad_options_get_one_clear_error(stack, env, tidy_file, args, message):
    proc = ems("ingest", str(tidy_file[0]), *args, env=env, check=False)
    assert proc.returncode in (1, 2)
    assert message in " ".join((proc.stderr + proc.stdout).split())
    assert "Traceback" not in proc.stderr


def test_failure_midway_leaves_the_database_as_it_was(stack, tidy_file, monkeypatch):
    path, n = tidy_file
    ingest_module.ingest_readings(stack, path, "ing-atomic")
    before = _counts(stack, "ing-atomic")
    frame = pd.read_csv(path)
    frame["value"] = frame["value"] * 2
    frame.to_csv(path, index=False)
    monkeypatch.setattr(ingest_module, "COPY_CHUNK_ROWS", 500)

    def fail_after_first_chunk(done, total):
        if done > 500:
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        ingest_module.ingest_readings(stack, path, "ing-atomic", progress=fail_after_first_chunk)
    assert _counts(stack, "ing-atomic") == before


def test_a_file_with_only_bad_rows_writes_nothing(stack, tmp_path):
    path = tmp_path / "allbad.csv"
    path.write_text("asset_id,timestamp,value\nm1,yesterday,1\nm1,2024-01-01T00:00:00Z,x\n")
    with pytest.raises(IngestError, match="all 2 rows were rejected"):
        ingest_module.ingest_readings(stack, path, "ing-allbad", now=datetime(2025, 1, 1, tzinfo=UTC))
    assert _counts(stack, "ing-allbad") == {"readings": 0, "assets": 0, "queue": 0, "value_sum": 0}


# ------------------------------------------------------------------ fast path (COPY) vs upsert path
def _stored(settings, tenant: str) -> tuple[list[tuple], dict[str, tuple]]:
    """Every stored reading, and the span queued for refresh per asset."""
    with connect(settings) as conn:
        rows = conn.execute("SELECT asset_id, ts, value, unit FROM readings WHERE tenant_id = %s"
                            " ORDER BY asset_id, ts", (tenant,)).fetchall()
        queued = conn.execute("SELECT asset_id, min(from_ts), max(to_ts) FROM readings_refresh_queue"
                              " WHERE tenant_id = %s GROUP BY asset_id", (tenant,)).fetchall()
    return rows, {asset: (lo, hi) for asset, lo, hi in queued}


def _counts_of(report) -> tuple[int, int, int, int]:
    return report.inserted, report.updated, report.unchanged, report.rejected


@pytest.fixture
def dup_file(tidy_file, tmp_path):
    """The tidy file plus an identical copy of row 0 and two copies of row 1, one with another value."""
    path, _ = tidy_file
    frame = pd.read_csv(path)
    extra = frame.iloc[[0, 1, 1]].copy()
    extra.iloc[2, extra.columns.get_loc("value")] += 1.0
    out = tmp_path / "dups.csv"
    pd.concat([frame, extra], ignore_index=True).to_csv(out, index=False)
    return out, len(frame)


def test_fast_and_upsert_paths_store_the_same_rows_and_counts(stack, dup_file):
    path, n = dup_file
    fast = ingest_module.ingest_readings(stack, path, "ing-fast")
    slow = ingest_module.ingest_readings(stack, path, "ing-slow", direct_copy=False)
    assert (fast.copied, slow.copied) == (["zone1", "zone2"], [])
    assert "upsert" not in fast.phases and "upsert" in slow.phases
    # row 0: the identical copy is rejected, the first kept; row 1: all three disagreeing copies rejected
    assert _counts_of(fast) == _counts_of(slow) == (n - 1, 0, 0, 4)
    assert _stored(stack, "ing-fast") == _stored(stack, "ing-slow")
    rows, queued = _stored(stack, "ing-fast")
    assert len(rows) == n - 1 and set(queued) == {"zone1", "zone2"}
    with connect(stack) as conn:
        assets = conn.execute("SELECT asset_id, site_id, timezone, unit FROM assets"
                              " WHERE tenant_id IN ('ing-fast', 'ing-slow') ORDER BY asset_id, tenant_id").fetchall()
    assert assets == [("zone1", None, "UTC", "kW")] * 2 + [("zone2", None, "UTC", "kW")] * 2


def test_reingesting_the_same_file_reports_everything_unchanged(stack, tidy_file):
    path, n = tidy_file
    first = ingest_module.ingest_readings(stack, path, "ing-again")
    before = _stored(stack, "ing-again")
    again = ingest_module.ingest_readings(stack, path, "ing-again")
    assert _counts_of(first) == (n, 0, 0, 0) and _counts_of(again) == (0, 0, n, 0)
    assert (first.copied, again.copied, again.copy_conflict) == (["zone1", "zone2"], [], False)
    assert _stored(stack, "ing-again") == before  # nothing rewritten, nothing more queued


def test_new_asset_is_copied_and_overlapping_asset_upserted_in_one_file(stack, tidy_file, tmp_path):
    path, n = tidy_file
    frame = pd.read_csv(path)
    zone1 = frame[frame["asset_id"] == "zone1"]
    first = tmp_path / "zone1.csv"
    zone1.to_csv(first, index=False)
    assert ingest_module.ingest_readings(stack, first, "ing-mixed").copied == ["zone1"]
    changed = frame.copy()
    changed.loc[:4, "value"] += 1.0  # five zone1 readings corrected
    second = tmp_path / "both.csv"
    changed.to_csv(second, index=False)
    report = ingest_module.ingest_readings(stack, second, "ing-mixed")
    assert report.copied == ["zone2"]
    assert _counts_of(report) == (n - len(zone1), 5, len(zone1) - 5, 0)
    rows, _ = _stored(stack, "ing-mixed")
    assert len(rows) == n
    stored = pd.DataFrame(rows, columns=["asset_id", "ts", "value", "unit"])
    assert stored["value"].sum() == pytest.approx(changed["value"].sum())
    with connect(stack) as conn:
        spans = conn.execute("SELECT asset_id, from_ts, to_ts FROM readings_refresh_queue WHERE tenant_id = 'ing-mixed'"
                             " ORDER BY id").fetchall()
    ts = pd.to_datetime(changed["timestamp"], utc=True)
    z2 = ts[changed["asset_id"] == "zone2"]
    assert [s[0] for s in spans] == ["zone1", "zone2", "zone1"]
    assert (spans[1][1], spans[1][2]) == (z2.min(), z2.max())  # the new asset's whole span
    assert (spans[2][1], spans[2][2]) == (ts[:5].min(), ts[:5].max())  # only the corrected readings


def test_later_readings_of_a_known_asset_take_the_copy_path(stack, tidy_file, tmp_path):
    path, n = tidy_file
    frame = pd.read_csv(path)
    ts = pd.to_datetime(frame["timestamp"])
    early, late = tmp_path / "early.csv", tmp_path / "late.csv"
    frame[ts < "2017-03-05"].to_csv(early, index=False)
    frame[ts >= "2017-03-05"].to_csv(late, index=False)
    first = ingest_module.ingest_readings(stack, early, "ing-append")
    report = ingest_module.ingest_readings(stack, late, "ing-append")
    assert first.copied == report.copied == ["zone1", "zone2"]
    assert _counts_of(report) == ((ts >= "2017-03-05").sum(), 0, 0, 0)
    assert _counts(stack, "ing-append")["readings"] == n


def test_a_conflict_the_check_missed_falls_back_to_the_upsert(stack, tidy_file):
    """A writer that does not take the ingest lock adds the same rows in a transaction still open at
    the check (so the check cannot see them): the COPY waits on them, hits the primary key when they
    commit, is undone, and the rows are upserted instead."""
    path, n = tidy_file
    ingest_module.ingest_readings(stack, path, "ing-race-ref")
    with connect(stack) as conn:
        reference = conn.execute("SELECT asset_id, ts, value, unit FROM readings WHERE tenant_id = 'ing-race-ref'"
                                 " ORDER BY 1, 2").fetchall()
    reports = []
    with connect(stack) as writer, connect(stack, autocommit=True) as watcher:
        writer.execute("INSERT INTO readings (tenant_id, asset_id, ts, value, unit) SELECT 'ing-race', asset_id, ts,"
                       " value, unit FROM readings WHERE tenant_id = 'ing-race-ref'")
        loader = threading.Thread(target=lambda: reports.append(ingest_module.ingest_readings(stack, path, "ing-race")))
        loader.start()
        deadline = time.monotonic() + 60
        while not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                  " AND query LIKE 'COPY%readings%'").fetchone():
            assert loader.is_alive() and time.monotonic() < deadline, "the ingest's COPY never waited on the writer"
            time.sleep(0.02)
        writer.commit()
    loader.join(60)
    (report,) = reports
    assert report.copy_conflict and report.copied == [] and "upsert" in report.phases
    assert _counts_of(report) == (0, 0, n, 0)
    with connect(stack) as conn:
        assert conn.execute("SELECT asset_id, ts, value, unit FROM readings WHERE tenant_id = 'ing-race'"
                            " ORDER BY 1, 2").fetchall() == reference


def test_concurrent_ingests_of_one_file_store_each_row_once(stack, tidy_file):
    """The tenant lock makes the second ingest wait and then see the first one's rows."""
    path, n = tidy_file
    start = threading.Barrier(2)
    reports = []

    def load():
        start.wait()
        reports.append(ingest_module.ingest_readings(stack, path, "ing-twice"))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(_counts_of(r) for r in reports) == [(0, 0, n, 0), (n, 0, 0, 0)]
    # one COPY: the second never tried (and never fell back)
    assert sorted((r.copied, r.copy_conflict) for r in reports) == [([], False), (["zone1", "zone2"], False)]
    rows, queued = _stored(stack, "ing-twice")
    assert len(rows) == len({(a, ts) for a, ts, *_ in rows}) == n
    assert set(queued) == {"zone1", "zone2"}


def test_failure_during_the_fast_copy_leaves_nothing(stack, tidy_file, monkeypatch):
    path, _ = tidy_file
    monkeypatch.setattr(ingest_module, "COPY_CHUNK_ROWS", 500)

    def fail_after_first_chunk(done, total):
        if done > 500:
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        ingest_module.ingest_readings(stack, path, "ing-atomic-new", progress=fail_after_first_chunk)
    assert _counts(stack, "ing-atomic-new") == {"readings": 0, "assets": 0, "queue": 0, "value_sum": 0}
