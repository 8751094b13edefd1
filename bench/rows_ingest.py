"""Ingest throughput: `ingest_readings` of a tidy CSV into an empty tenant against a raw `COPY FROM`
of the same rows into the same table, as the operator and as the tenant's database role (row-level security on)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from bench.core import Context, Row, ratio_row, timed
from bench.tenant_role import tenant_settings
from core.settings import ROOT
from warehouse.db import connect
from warehouse.ingest import ingest_readings

TENANT = "bench_ingest"
SOURCES = {"aep": ROOT / "data" / "pjm_aep_hourly.csv.gz", "pjme": ROOT / "data" / "pjm_pjme_hourly.csv.gz"}
ASSETS_PER_SOURCE = 50
CLEANUP = (  # every table the ingest (or a refresh) writes for the tenant
    "DELETE FROM readings WHERE tenant_id = %s",
    "DELETE FROM readings_refresh_queue WHERE tenant_id = %s",
    "DELETE FROM readings_hourly WHERE tenant_id = %s",
    "DELETE FROM assets WHERE tenant_id = %s",
)


def ingest_file(ctx: Context) -> tuple[Path, int]:
    """A tidy file (asset_id,timestamp,value) cut from the real PJM hourly series: each source is
    split into consecutive windows of `days` days, one asset per window (100 assets)."""
    hours = 24 * (21 if ctx.quick else 90)
    n = hours * ASSETS_PER_SOURCE * len(SOURCES)
    path = ctx.work / f"ingest_{n}.csv"
    if not path.exists():
        parts = []
        for name, source in SOURCES.items():
            series = pd.read_csv(source, dtype=str).drop_duplicates("timestamp")  # DST repeats the 02:00 label
            for k in range(ASSETS_PER_SOURCE):
                window = series.iloc[k * hours:(k + 1) * hours]
                parts.append(pd.DataFrame({"asset_id": f"{name}-{k:03d}", "timestamp": window["timestamp"].to_numpy(),
                                           "value": window["load_mw"].to_numpy()}))
        frame = pd.concat(parts, ignore_index=True)
        assert len(frame) == n, f"the sources are too short for {n} rows"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return path, n


def _cleanup(settings) -> None:
    with connect(settings) as conn, conn.transaction():
        for statement in CLEANUP:
            conn.execute(statement, (TENANT,))


def ingest_rows(ctx: Context) -> list[Row]:
    path, n = ingest_file(ctx)
    # The floor's input: the same rows with the tenant column in front, no header, built outside the timing.
    lines = path.read_bytes().split(b"\n", 1)[1].splitlines()
    floor_bytes = b"".join(TENANT.encode() + b"," + line + b"\n" for line in lines)
    reps = 3

    def floor() -> None:
        with connect(ctx.settings) as conn, conn.transaction():
            with conn.cursor().copy("COPY readings (tenant_id, asset_id, ts, value) FROM STDIN (FORMAT csv)") as copy:
                copy.write(floor_bytes)

    tenant = tenant_settings(ctx.settings, TENANT, ctx.work)

    def ingest(settings):
        seconds, report = timed(lambda: ingest_readings(settings, path, tenant=TENANT))
        if (report.inserted, report.rejected) != (n, 0):
            raise RuntimeError(f"bench ingest loaded {report.inserted} of {n} rows: {report}")
        _cleanup(ctx.settings)
        return seconds, report

    ours, rls, raw, reports = [], [], [], []
    try:
        _cleanup(ctx.settings)
        for i in range(1 + reps):  # the first round warms up (imports, caches, connections) and is not counted
            seconds, report = ingest(ctx.settings)
            rls_seconds, _ = ingest(tenant)
            floor_seconds, _ = timed(floor)
            _cleanup(ctx.settings)
            if i:
                ours.append(seconds)
                rls.append(rls_seconds)
                reports.append(report)
                raw.append(floor_seconds)
    finally:
        _cleanup(ctx.settings)
    project, floor_rate = n / statistics.median(ours), n / statistics.median(raw)
    rls_rate = n / statistics.median(rls)
    ctx.log(f"ingest: {project:,.0f} rows/s (RLS on: {rls_rate:,.0f}) vs COPY {floor_rate:,.0f} rows/s")
    details = {"rows": n, "assets": len(reports[0].assets), "file": path.name, "repetitions": reps,
               "project_s": [round(s, 3) for s in ours], "floor_s": [round(s, 3) for s in raw]}
    median_run = reports[sorted(range(reps), key=ours.__getitem__)[reps // 2]]
    details["phases_s"] = {k: round(v, 3) for k, v in median_run.phases.items()}  # of the median run
    floor_desc = (f"raw `COPY readings (tenant_id, asset_id, ts, value) FROM STDIN (FORMAT csv)` of the same {n:,} "
                  "rows (the file's bytes with the tenant prepended) into the same table as the operator, one "
                  "transaction, median of the runs")
    return [ratio_row("ingest throughput (rows/s)", "rows/s", project, floor_rate, min_ratio=0.5,
                      floor_desc=floor_desc, details=details),
            ratio_row("ingest throughput, tenant role with row-level security (rows/s)", "rows/s", rls_rate,
                      floor_rate, min_ratio=0.5, floor_desc=floor_desc + f"; project as role tenant_{TENANT}, "
                      "alternated with the operator's run above",
                      details={"rows": n, "repetitions": reps, "project_s": [round(s, 3) for s in rls],
                               "operator_rows_per_s": round(project), "floor_s": details["floor_s"]})]
