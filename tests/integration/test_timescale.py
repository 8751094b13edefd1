"""TimescaleDB-specific behaviour (run by the TimescaleDB pass: EMS_TEST_PG_FLAVOUR=timescale).

Compressed chunks: TimescaleDB caps the rows one DML transaction may decompress
(timescaledb.max_tuples_decompressed_per_dml_transaction, 100,000 by default). Re-ingesting a file
whose rows are stored unchanged must write nothing and leave the chunks compressed; a correction of
a compressed reading is applied and reaches the feature tables; a correction larger than the limit
is refused with one message that says what to do, and nothing is half-written. Retention follows
EMS_RAW_RETENTION on every hypertable.
"""

from __future__ import annotations

import pandas as pd
import pytest
from psycopg import sql

from core.errors import EmsError
from tests.integration.test_freshness import assert_equal_to_replaced_views, meter_file
from warehouse.db import connect
from warehouse.ingest import ingest_readings
from warehouse.migrate import RETAINED, flavour, migrate
from warehouse.refresh import refresh

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT = "tsdb"


@pytest.fixture(autouse=True)
def timescale_only(stack):
    if flavour(stack) != "timescale":
        pytest.skip("TimescaleDB path only (the TimescaleDB pass runs it: EMS_TEST_PG_FLAVOUR=timescale)")


def compress(settings, table: str) -> int:
    """Compress every chunk of `table` now (what the compression policy does after 30 days)."""
    with connect(settings, autocommit=True) as conn:
        chunks = [c for (c,) in conn.execute("SELECT show_chunks(%s::regclass)", (table,))]
        for chunk in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
        return len(chunks)


def uncompressed_chunks(settings, table: str) -> int:
    with connect(settings) as conn:
        return conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = %s"
                            " AND NOT is_compressed", (table,)).fetchone()[0]


def test_reingest_into_compressed_chunks_writes_nothing_and_decompresses_nothing(stack, tmp_path):
    frame = meter_file(tmp_path / "m.csv", "c1", "UTC", days=40, seed=80, gap=None)
    ingest_readings(stack, tmp_path / "m.csv", TENANT)
    refresh(stack)
    assert compress(stack, "readings") > 0 and uncompressed_chunks(stack, "readings") == 0
    report = ingest_readings(stack, tmp_path / "m.csv", TENANT)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, len(frame.drop_duplicates()))
    assert uncompressed_chunks(stack, "readings") == 0
    assert refresh(stack).rows.get("load_lag_features", 0) == 0


def test_a_correction_under_compression_is_applied_and_reaches_the_features(stack, tmp_path):
    tenant = f"{TENANT}-fix"
    frame = meter_file(tmp_path / "m.csv", "c2", "UTC", days=20, seed=81, gap=None, drop_hours=0)
    ingest_readings(stack, tmp_path / "m.csv", tenant)
    refresh(stack)
    compress(stack, "readings")
    compress(stack, "load_lag_features")
    compress(stack, "load_rolling_features")
    fix = frame.drop_duplicates().iloc[600:606].assign(value=9999.0)  # one hour, ten days in
    fix.to_csv(tmp_path / "fix.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    assert ingest_readings(stack, tmp_path / "fix.csv", tenant).updated == 6
    report = refresh(stack)
    assert report.rows["load_lag_features"] >= 3 and report.rows["load_rolling_features"] >= 168
    hour = pd.Timestamp(fix["timestamp"].iloc[0], tz="UTC").floor("h")
    with connect(stack) as conn:
        stored = conn.execute("SELECT lag_1h FROM load_lag_features WHERE tenant_id = %s AND asset_id = 'c2'"
                              " AND event_timestamp = %s", (tenant, hour + pd.Timedelta("1h"))).fetchone()[0]
    assert stored == 9999.0
    assert_equal_to_replaced_views(stack, tenant)


def test_a_correction_beyond_the_decompression_limit_is_refused_whole(stack, tmp_path):
    tenant = f"{TENANT}-big"
    frame = meter_file(tmp_path / "m.csv", "c3", "UTC", days=20, seed=82, gap=None, drop_hours=0)
    ingest_readings(stack, tmp_path / "m.csv", tenant)
    compress(stack, "readings")
    frame.assign(value=frame["value"] + 1).to_csv(tmp_path / "all.csv", index=False,
                                                  date_format="%Y-%m-%dT%H:%M:%S")
    with connect(stack) as conn:
        before = conn.execute("SELECT sum(value), count(*) FROM readings WHERE tenant_id = %s", (tenant,)).fetchone()
        queued = conn.execute("SELECT count(*) FROM readings_refresh_queue WHERE tenant_id = %s",
                              (tenant,)).fetchone()[0]
        conn.execute(sql.SQL("ALTER DATABASE {} SET timescaledb.max_tuples_decompressed_per_dml_transaction = 1000")
                     .format(sql.Identifier(stack.postgres.database)))
    try:
        with pytest.raises(EmsError, match="max_tuples_decompressed_per_dml_transaction.*Split the file"):
            ingest_readings(stack, tmp_path / "all.csv", tenant)
    finally:
        with connect(stack) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET timescaledb.max_tuples_decompressed_per_dml_transaction")
                         .format(sql.Identifier(stack.postgres.database)))
            conn.commit()
    with connect(stack) as conn:
        assert conn.execute("SELECT sum(value), count(*) FROM readings WHERE tenant_id = %s",
                            (tenant,)).fetchone() == before
        assert conn.execute("SELECT count(*) FROM readings_refresh_queue WHERE tenant_id = %s",
                            (tenant,)).fetchone()[0] == queued


def test_retention_follows_ems_raw_retention(stack):
    def policies() -> dict[str, str]:
        with connect(stack) as conn:
            return dict(conn.execute(
                "SELECT hypertable_name, (config->>'drop_after')::interval::text FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_retention'").fetchall())

    assert set(policies()) == set(RETAINED)
    try:
        migrate(stack, raw_retention="5 years")
        assert set(policies().values()) == {"5 years"}
    finally:
        migrate(stack)
    assert set(policies().values()) == {"30 years"}
