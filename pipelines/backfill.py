"""The on-demand backfill: ingest files (all validated before anything is written, each in one
transaction), refresh the hours they touched, then materialize every view from `start` with Feast's
window load (`ems materialize --start`). Ingest is an upsert and materialize skips what Redis holds,
so a rerun of the same backfill changes nothing."""
# No `from __future__ import annotations`: Dagster resolves the ops' Config annotations when decorating.


from dataclasses import asdict

import dagster as dg

from pipelines.transient import RETRY, step


class BackfillConfig(dg.Config):
    files: list[str] = []  # CSV / Parquet readings files, as `ems ingest` takes them
    tenant: str = ""
    wide: bool = False
    columns: str | None = None
    site: str | None = None
    tz: str | None = None
    start: str = ""  # ISO 8601 UTC: materialize every view from this time


def _ingest_all(settings, config: BackfillConfig) -> list[dict]:
    from pathlib import Path

    from core.errors import InvalidArgumentError
    from core.names import check_tenant_id
    from warehouse.ingest import ingest_readings

    start_time(config.start)  # a bad start fails before anything is written
    if config.files:
        check_tenant_id(config.tenant)
    missing = [f for f in config.files if not Path(f).is_file()]
    if missing:
        raise InvalidArgumentError(f"backfill file(s) {', '.join(map(repr, missing))} do not exist")
    reports = []
    for f in config.files:
        given = {"columns": config.columns, "site": config.site, "tz": config.tz}
        r = ingest_readings(settings, Path(f), config.tenant, wide=config.wide,
                            **{k: v for k, v in given.items() if v is not None})
        reports.append({k: v for k, v in r.as_dict().items() if k not in ("phases", "copied", "missing")})
    return reports


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def ingest(context: dg.OpExecutionContext, config: BackfillConfig) -> list[dict]:
    return step(context, "ingest", _ingest_all, context.resources.ems.settings, config)


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def refresh_backfill(context: dg.OpExecutionContext, ingested: list[dict]) -> dict:
    from warehouse.refresh import refresh as run

    return asdict(step(context, "refresh", run, context.resources.ems.settings))


def start_time(start: str):
    import pandas as pd

    from core.errors import InvalidRangeError

    try:
        when = pd.Timestamp(start) if start else None
    except ValueError:
        when = None
    if when is None or when is pd.NaT:
        raise InvalidRangeError(f"start {start!r} is not an ISO 8601 time (e.g. 2017-04-01T00:00:00Z)")
    return (when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")).to_pydatetime()


def _materialize_from(ems, start: str) -> dict:
    from warehouse.store import materialize as run

    done = run(ems.settings, store=ems.store, start=start_time(start))
    return {view: [a.isoformat(), b.isoformat()] for view, (a, b) in done.items()}


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def materialize_from(context: dg.OpExecutionContext, config: BackfillConfig, refreshed: dict) -> dict:
    return step(context, "materialize", _materialize_from, context.resources.ems, config.start)


@dg.job(description="ingest files -> refresh -> materialize every view from a start time")
def backfill():
    materialize_from(refresh_backfill(ingest()))
