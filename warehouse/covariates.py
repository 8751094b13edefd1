"""Covariates known for the target hours: forecasts stored with their issue time (feature_repo/sql/
110_covariate_forecasts.sql), one store and one point-in-time rule for every kind (a site's weather forecast
now; a market's day-ahead forecasts use the same table and rule).

The rule: at origin T, for each target hour, the value of the latest issue at or before T; a forecast issued
after T never reaches a training row or a forecast at T. `covariates_at` applies it in SQL; Feast's view
`weather_forecast` (entity tenant, asset, target_hour; event_timestamp = issue_time) gives the same rows
through `get_historical_features` (tests/integration/test_covariates.py proves both, with later issues that
must not leak).

Ingest (`ems ingest-weather --forecast`): a file of `issue_time`, `target_time` and variables; a row whose
target precedes its issue, a time that does not parse, a non-numeric cell or conflicting copies of one
(target, issue) is rejected with its reason, the rest loads in one transaction; re-ingesting changes nothing.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg import sql

from core.names import check_asset_id
from core.settings import Settings
from warehouse import validate as v
from warehouse.db import connect
from warehouse.ingest import IngestReport, Progress, copy_rows, write_rejects

# What a weather forecast may hold, and its physical range (a value outside it is a unit or parsing error).
WEATHER_FORECAST_VARIABLES = {
    "temperature": (-90.0, 60.0),  # deg C
    "humidity": (0.0, 100.0),  # % relative humidity
    "solar_irradiance": (0.0, 1500.0),  # W/m2
    "wind_speed": (0.0, 120.0),  # m/s
    "wind_u": (-120.0, 120.0),  # m/s, eastward component
    "wind_v": (-120.0, 120.0),  # m/s, northward component
}
# A market zone's exogenous day-ahead forecasts (112_market_covariates.sql), in MW: a load or a wind power
# forecast is never negative and has no upper bound a real system could not break.
MARKET_FORECAST_VARIABLES = {
    "load_forecast": (0.0, float("inf")),  # the zone's (NP: grid, PJM: system) load forecast
    "wind_forecast": (0.0, float("inf")),  # wind power forecast
    "zonal_load_forecast": (0.0, float("inf")),  # PJM: the zone's own load forecast (e.g. COMED)
}
# One ingest path for both (`ems ingest-weather --forecast`): the column names say what a value is.
COVARIATE_FORECAST_VARIABLES = {**WEATHER_FORECAST_VARIABLES, **MARKET_FORECAST_VARIABLES}
TIMES = ("issue_time", "target_time")
ISSUED_AFTER_TARGET = "issued_after_target"
OUT_OF_RANGE = "value_out_of_range"


def select(df: pd.DataFrame, columns: dict[str, str] | None, allowed: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Keep `line`, the two times and the chosen variables (renamed); refuse unknown and missing columns."""
    spec = columns or {c: c for c in df.columns if c != "line"}
    spec = {**{t: spec.get(t, t) for t in TIMES}, **{t: src for t, src in spec.items() if t not in TIMES}}
    missing = [src for src in spec.values() if src not in df.columns]
    if missing:
        raise v.IngestError(f"column(s) {', '.join(missing)} not in the file; it has {', '.join(df.columns[1:])} "
                            f"(a forecast file needs {' and '.join(TIMES)}, e.g. `--columns "
                            "issue_time=issued,target_time=valid`)")
    unknown = [t for t in spec if t not in allowed and t not in TIMES]
    if unknown:
        raise v.IngestError(f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join((*TIMES, *allowed))}")
    variables = [t for t in spec if t in allowed]
    if not variables:
        raise v.IngestError(f"no forecast variable to load; allowed: {', '.join(allowed)}")
    return df[["line", *spec.values()]].rename(columns={s: t for t, s in spec.items()})


def validate(df: pd.DataFrame, allowed: dict[str, tuple[float, float]], tz: str = "UTC",
             now: datetime | None = None) -> v.Validated:
    """(line, issue_time, target_time, variables) -> loadable rows (UTC times) and rejects with a reason.
    A missing cell is that variable's NULL; a row with every variable missing is rejected."""
    df = df.reset_index(drop=True)
    variables = [c for c in allowed if c in df.columns]
    rows, reason = v.variable_values(df, variables, allowed, OUT_OF_RANGE)
    issue, issue_reason = v.parse_times(df["issue_time"], tz, now, None)  # issued in the future: rejected
    target = v.parse_timestamps(df["target_time"], tz)  # targets are in the future by nature
    rows["issue_time"], rows["target_time"] = issue, target
    reason = reason.fillna(issue_reason).fillna(v.timestamp_reasons(df["target_time"], target))
    late = rows["issue_time"] > rows["target_time"]
    reason[late] = reason[late].fillna(ISSUED_AFTER_TARGET)
    ok = reason.isna()
    reason[ok] = v.duplicate_reasons(rows[ok], ["target_time", "issue_time"], variables)
    return v.split_rejects(df, rows, reason)


def ingest_forecasts(settings: Settings, path: Path, series: str, *, columns: str | None = None, tz: str = "UTC",
                     allowed: dict[str, tuple[float, float]] = COVARIATE_FORECAST_VARIABLES,
                     now: datetime | None = None,
                     reject_file: Path | None = None, progress: Progress | None = None) -> IngestReport:
    """Load forecasts of `series` (a site id): only the variables in the file are written; a stored value is
    never erased by a missing cell; the whole file in one transaction."""
    started = time.perf_counter()
    check_asset_id(series, "site")
    v.check_timezone(tz)
    table = select(v.read_table(path), v.parse_column_spec(columns), allowed)
    checked = validate(table, allowed, tz=tz, now=now)
    report = IngestReport(str(path), series, checked.rows_read, 0, 0, 0, len(checked.rejects))
    report.reject_file = write_rejects(settings, path, checked.rejects, reject_file)
    if checked.rows.empty:
        raise v.IngestError(
            f"{Path(path).name}: nothing to load, all {checked.rows_read} rows were rejected: "
            f"{v.describe_rejects(checked.rejects)}" + (f" (see {report.reject_file})" if report.reject_file else ""))
    variables = [c for c in allowed if c in checked.rows.columns]
    report.missing = {c: int(n) for c, n in checked.rows[variables].isna().sum().items() if n}
    ident = sql.SQL(", ").join(map(sql.Identifier, variables))
    staged = checked.rows[["target_time", "issue_time", *variables]].rename(columns={"target_time": "ts"})
    with connect(settings) as conn, conn.transaction():
        conn.execute(sql.SQL("CREATE TEMP TABLE ingest_forecasts (ts timestamptz, issue_time timestamptz, {}) "
                             "ON COMMIT DROP").format(
            sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(c)) for c in variables)))
        conn.execute("SET LOCAL TIME ZONE 'UTC'")  # copy_rows writes naive UTC text
        staged["issue_time"] = staged["issue_time"].dt.tz_convert("UTC").dt.tz_localize(None)
        copy_rows(conn, "ingest_forecasts", staged, progress)
        new = sql.SQL(", ").join(sql.SQL("coalesce(EXCLUDED.{c}, f.{c})").format(c=sql.Identifier(c))
                                 for c in variables)
        report.inserted, report.updated = conn.execute(sql.SQL(
            """
            WITH up AS (
                INSERT INTO covariate_forecasts AS f (series_id, target_time, issue_time, {cols})
                SELECT %(series)s, ts, issue_time, {cols} FROM ingest_forecasts
                ON CONFLICT (series_id, target_time, issue_time) DO UPDATE SET ({cols}) = ROW({new}),
                    ingested_at = now()
                 WHERE ({old}) IS DISTINCT FROM ({new})
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
            """).format(cols=ident, new=new,
                        old=sql.SQL(", ").join(sql.SQL("f.{}").format(sql.Identifier(c)) for c in variables)),
            {"series": series}).fetchone()
    report.unchanged = len(checked.rows) - report.inserted - report.updated
    report.seconds = time.perf_counter() - started
    return report


def covariates_at(settings: Settings, series: str, origin: datetime, targets, variables=None) -> pd.DataFrame:
    """Per target hour (UTC hour starts), the latest forecast of `series` issued at or before `origin`:
    a frame indexed by target_time with `issue_time` and the variables (NaN where nothing was issued by then)."""
    variables = list(variables or WEATHER_FORECAST_VARIABLES)
    unknown = [c for c in variables if c not in COVARIATE_FORECAST_VARIABLES]
    if unknown:
        raise ValueError(f"unknown forecast variable(s) {', '.join(unknown)}; known: "
                         f"{', '.join(COVARIATE_FORECAST_VARIABLES)}")
    origin = pd.Timestamp(origin)
    if origin.tzinfo is None:
        raise ValueError(f"origin {origin} has no time zone; give it in UTC")
    wanted = pd.DatetimeIndex(pd.to_datetime(list(targets), utc=True), name="target_time")
    with connect(settings) as conn:
        rows = conn.execute(sql.SQL(
            "SELECT DISTINCT ON (target_time) target_time, issue_time, {cols} FROM covariate_forecasts "
            "WHERE series_id = %s AND target_time = ANY(%s) AND issue_time <= %s "
            "ORDER BY target_time, issue_time DESC").format(cols=sql.SQL(", ").join(map(sql.Identifier, variables))),
            (series, list(wanted.to_pydatetime()), origin.to_pydatetime())).fetchall()
    found = pd.DataFrame(rows, columns=["target_time", "issue_time", *variables])
    found["target_time"] = pd.to_datetime(found["target_time"], utc=True)
    found["issue_time"] = pd.to_datetime(found["issue_time"], utc=True)
    out = found.set_index("target_time").reindex(wanted)
    out[variables] = out[variables].astype("float64")
    return out


def latest_issues(conn, series: list[str], origin: datetime, start: datetime, end: datetime, variables,
                  depth: int = 2) -> list[tuple]:
    """`covariates_at`'s rule for several series and the target hours in [start, end] in one read on `conn`:
    per series and target hour the `depth` latest issues at or before `origin`, as rows (series_id,
    target_time, rank, issue_time, *variables); rank 1 is the latest issue (covariates_at's row), rank 2 the
    one before it, and so on. Nothing for an hour nobody issued a forecast of by `origin`."""
    variables = list(variables)
    unknown = [c for c in variables if c not in COVARIATE_FORECAST_VARIABLES]
    if unknown:
        raise ValueError(f"unknown forecast variable(s) {', '.join(unknown)}; known: "
                         f"{', '.join(COVARIATE_FORECAST_VARIABLES)}")
    cols = sql.SQL(", ").join(map(sql.Identifier, variables))
    return conn.execute(sql.SQL(
        "SELECT series_id, target_time, k, issue_time, {cols} FROM ("
        " SELECT series_id, target_time, issue_time, {cols}, row_number() OVER (PARTITION BY series_id, target_time"
        " ORDER BY issue_time DESC) AS k FROM covariate_forecasts WHERE series_id = ANY(%s) AND target_time >= %s"
        " AND target_time <= %s AND issue_time <= %s) f WHERE k <= %s").format(cols=cols),
        (list(series), start, end, origin, depth)).fetchall()


def target_hour(ts) -> np.ndarray:
    """Hours since 1970-01-01 UTC of each (UTC) time: the `target_hour` entity key of the Feast view."""
    return (pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).asi8 // 3_600_000_000_000).astype("int64")
