"""`ems`: the EMS AI Hub command line. Thin: parse, call the library, render. Heavy imports stay
inside command bodies so `ems --help` is fast."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

import core  # noqa: F401  (before Feast: its import is 4.5 s cheaper, see core/__init__.py)


class _Group(TyperGroup):
    """Usage errors name the bad value: typer's type checks (pydantic) only name the option."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except typer.BadParameter as e:
            errors = getattr(e.__cause__, "errors", None)  # pydantic's ValidationError
            if callable(errors) and errors() and "input" in errors()[0]:
                e.message = f"{errors()[0]['input']!r}: {e.message}"
            raise


class _App(typer.Typer):
    """The root app: an unexpected error is one line on stderr and exit code 1, like a domain error;
    `--debug` lets it propagate with its traceback (locals hidden)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as e:
            if _State.debug:
                raise
            _error(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)")
            sys.exit(1)


app = _App(cls=_Group, no_args_is_help=True, help="EMS AI Hub: features, models, forecasts.",
           pretty_exceptions_show_locals=False)
# No emoji codes: ids such as `t:m:1` hold `:m:` (rich would print Ⓜ in their place).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

Tenant = Annotated[str, typer.Option("--tenant", "-t", envvar="EMS_TENANT", help="Tenant id.")]
# Default: core.names.DEFAULT_FORECAST_SERVICE (a literal here keeps `ems --help` free of imports).
ForecastService = Annotated[str, typer.Option("--features", help="Feature service to train on.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]


class _State:
    debug = False
    verbose = False
    settings = None


def settings():
    """The project settings, built once per invocation."""
    if _State.settings is None:
        from core.settings import Settings

        _State.settings = Settings()
    return _State.settings


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    _State.debug = debug
    _State.verbose = verbose or debug
    _quiet_mlflow()
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _State.verbose:  # connection retries end in one error line of ours; their warnings only repeat it
        logging.getLogger("urllib3").setLevel(logging.ERROR)


def _fail(e: Exception) -> typer.Exit:
    """Domain errors: one clear line on stderr, exit code 1 (`--debug` shows the traceback)."""
    if _State.debug:
        err_console.print_exception()
    _error(str(e))
    return typer.Exit(code=1)


def _error(message: str, label: str = "[bold red]error:[/]") -> None:
    """One line on stderr; the message is shown as is (user values may hold rich markup or `:emoji:`)."""
    err_console.print(f"{label} {escape(message)}", soft_wrap=True, emoji=False)


@contextlib.contextmanager
def _library_output_to_stderr() -> Iterator[None]:
    """What libraries print while an SDK call runs (Feast's "Materializing …", MLflow's run links, a
    child process's output) goes to stderr, at the Python and the file-descriptor level, so stdout holds
    only what `ems` renders: exactly one document with --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(fn, *args, **kwargs):
    from core.errors import EmsError

    try:
        with _library_output_to_stderr():
            return fn(*args, **kwargs)
    except EmsError as e:
        raise _fail(e) from None
    except Exception as e:
        from inference.models import registry_unreachable

        if not registry_unreachable(e):
            raise
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise _fail(RuntimeError(f"model registry at {settings().mlflow_tracking_uri} did not answer ({reason}); "
                                 "check it with `ems status`")) from None


def _print_json(doc) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- local stack
@app.command()
def up(
    auth: Annotated[bool | None, typer.Option(
        "--auth/--no-auth", help="MLflow with its basic-auth app (users, per-tenant access) and Redis without its "
                                 "default user (a client without credentials gets NOAUTH); default: as last time.")
    ] = None,
    with_api: Annotated[bool, typer.Option("--with-api", help="Also start the AI Hub API (`ems serve`).")] = False,
    with_scheduler: Annotated[bool, typer.Option("--with-scheduler", help="Also start the pipelines' scheduler and "
                                                 "UI (Dagster: hourly and daily schedules, run history).")] = False,
    as_json: AsJson = False,
) -> None:
    """Start the local stack (Postgres, Redis, S3, MLflow) and apply the schema; idempotent."""
    from stack.services import up as stack_up
    from warehouse.migrate import migrate

    if auth is not None:
        settings().mlflow_auth = auth
    with console.status("starting services…") as status:
        statuses = _run(stack_up, settings(), on_service=lambda s: status.update(f"{s.name} ready, next…"))
        status.update("applying schema migrations…")
        applied = _run(migrate, settings())
        if with_api:  # after the schema: the API serves from it
            status.update("starting the AI Hub API…")
            statuses = _run(stack_up, settings(), with_api=True)
        if with_scheduler:  # after the schema: its pipelines read and write it
            from stack.scheduler import Scheduler

            status.update("starting the pipelines' scheduler…")
            statuses = [*statuses, _run(Scheduler(settings()).up)]
    if as_json:
        _print_json({"services": [s.as_dict() for s in statuses], "migrations_applied": applied})
        return
    _services_table(statuses)
    if applied:
        console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    if auth:
        console.print("MLflow asks for a login (MLFLOW_TRACKING_USERNAME / _PASSWORD) and Redis for a user "
                      "(the Feast yaml's username= / password=, or EMS_REDIS_USERNAME / _PASSWORD): README, "
                      "trust model")


@app.command()
def down() -> None:
    """Stop the services `ems up` started (by PID); external services are left alone."""
    from stack.scheduler import Scheduler
    from stack.services import down as stack_down

    stopped = (["scheduler"] if Scheduler(settings()).down() else []) + _run(stack_down, settings())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@app.command()
def status(as_json: AsJson = False) -> None:
    """Show each service, its URL (with the MLflow UI) and health, and how far the online store lags."""
    from stack.services import status as stack_status

    statuses = _run(stack_status, settings())
    healthy = {s.name: s.healthy for s in statuses}
    lag = _materialization_lag() if healthy.get("postgres") and healthy.get("redis") else None
    if as_json:
        _print_json({"services": [s.as_dict() for s in statuses], "materialization": lag})
    else:
        _services_table(statuses)
        _lag_table(lag)
    if not all(healthy.values()):
        raise typer.Exit(code=1)


def _materialization_lag() -> dict | None:
    """Materialization lag over every asset, or None (logged) when the schema or Feast is not set up."""
    from core.errors import EmsError
    from inference.freshness import materialization_lag

    try:
        return materialization_lag(settings())
    except (EmsError, OSError) as e:
        _error(f"materialization lag unknown: {e}", "[yellow]warning:[/]")
        return None


def _lag_table(lag: dict | None) -> None:
    if lag is None:
        return
    console.print(f"online store: {lag['assets'] - lag['stale']:,} of {lag['assets']:,} assets current"
                  + (f"; {lag['stale']:,} behind their readings (worst {_lag_text(lag['max_lag_hours'])})"
                     if lag["stale"] else ""))
    if lag["stale"]:
        table = Table("tenant", "asset", "online features end", "hourly features end", "readings end", "lag",
                      title="most behind (`ems refresh` then `ems materialize`)")
        for w in lag["worst"]:
            table.add_row(w["tenant_id"], w["asset_id"], _hour(w["online_end"]) or "never",
                          _hour(w["features_end"]) or "none", _hour(w["readings_end"]), _lag_text(w["lag_hours"]))
        console.print(table)


def _hour(iso: str | None) -> str | None:
    return iso and f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M}"


def _lag_text(hours: float | None) -> str:
    return "never materialized" if hours is None else f"{hours:,.0f} h"


def _services_table(statuses) -> None:
    table = Table("service", "url", "health", "pid", "state")
    for s in statuses:
        health = "[green]ok[/]" if s.healthy else "[red]down[/]"
        url = s.url + ("  (UI)" if s.name == "mlflow" else "")
        table.add_row(s.name, url, health, str(s.pid or "-"), s.detail)
    console.print(table)


@app.command()
def migrate() -> None:
    """Apply pending SQL migrations from feature_repo/sql/ (also done by `ems up`)."""
    from warehouse.migrate import migrate as run_migrate

    applied = _run(run_migrate, settings())
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


# ---------------------------------------------------------------- data
def _progress_callback(progress, label: str):
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


def _parse_duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    import pandas as pd

    try:
        delta = pd.Timedelta(value).to_pytimedelta()
    except ValueError:
        delta = None
    if delta is None or delta <= timedelta(0) or delta > timedelta(days=1):
        raise typer.BadParameter(f"{value!r} is not a duration between 1s and 1d (e.g. 1h, 15min)")
    return delta


def _ingest_report(report, as_json: bool) -> None:
    if as_json:
        _print_json(report.as_dict())
        return
    table = Table("", "rows", title=f"{Path(report.path).name} → {report.target}", show_header=False)
    for label, value in (("read", report.rows_read), ("inserted", report.inserted), ("updated", report.updated),
                         ("unchanged", report.unchanged), ("rejected", report.rejected)):
        table.add_row(label, f"{value:,}")
    table.add_row("seconds", f"{report.seconds:.2f}")
    console.print(table)
    if report.assets:
        console.print(f"assets: {', '.join(report.assets[:10])}{' …' if len(report.assets) > 10 else ''}")
    if report.missing:
        console.print("missing values kept as NULL (the row's other values loaded): " +
                      ", ".join(f"{k} {n:,}" for k, n in report.missing.items()))
    if report.reject_file:
        console.print(f"[yellow]rejected rows written to {report.reject_file}[/]")
    console.print("next: `ems refresh` to update the hourly aggregates")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet (gzip ok): asset_id,timestamp,value[,unit].")],
    tenant: Tenant,
    wide: Annotated[bool, typer.Option("--wide", help="Each value column is an asset.")] = False,
    columns: Annotated[
        str | None, typer.Option(help="Columns to load, `name` or `name=file_column`, comma-separated.")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Site of the assets (its weather applies).")] = None,
    tz: Annotated[str, typer.Option(help="IANA zone of naive timestamps; also the assets' zone.")] = "UTC",
    asset_tz: Annotated[str | None, typer.Option(help="Assets' time zone if it differs from --tz.")] = None,
    period_ending: Annotated[
        str | None, typer.Option(help="Timestamps label the END of a period this long (e.g. 1h).")
    ] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows.", dir_okay=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Load meter readings (validated, COPY + one upsert transaction; re-running adds nothing)."""
    from rich.progress import Progress

    from warehouse.ingest import ingest_readings

    with Progress(console=err_console, transient=True) as progress:
        report = _run(ingest_readings, settings(), path, tenant, wide=wide, columns=columns, site=site, tz=tz,
                      asset_tz=asset_tz, period_ending=_parse_duration(period_ending), reject_file=rejects,
                      progress=_progress_callback(progress, f"loading {path.name}"))
    _ingest_report(report, as_json)


@app.command("ingest-weather")
def ingest_weather(
    path: Annotated[
        Path, typer.Argument(help="CSV or Parquet: timestamp + temperature, humidity, solar_irradiance, wind_speed.")
    ],
    site: Annotated[str, typer.Option(help="Site id the weather belongs to.")],
    columns: Annotated[str | None, typer.Option(help="Columns to load, `name` or `name=file_column`.")] = None,
    tz: Annotated[str, typer.Option(help="IANA zone of naive timestamps.")] = "UTC",
    period_ending: Annotated[
        str | None, typer.Option(help="Timestamps label the END of a period this long (e.g. 1h; irradiance is "
                                      "often hour-ending).")
    ] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows.", dir_okay=False)] = None,
    forecast: Annotated[bool, typer.Option(
        "--forecast", help="The file holds weather FORECASTS: issue_time, target_time and any of temperature, "
                           "humidity, solar_irradiance, wind_speed, wind_u, wind_v (or, for a market zone's site, "
                           "its day-ahead load_forecast, wind_forecast, zonal_load_forecast in MW); a forecast at "
                           "origin T uses only what was issued by T.")] = False,
    as_json: AsJson = False,
) -> None:
    """Load observed weather for a site (a missing cell is that variable's NULL; the row's others load), or
    with --forecast the weather forecasts issued for it."""
    from rich.progress import Progress

    if forecast and period_ending:
        raise _fail(ValueError(f"--period-ending {period_ending} does not apply to --forecast: a forecast's "
                               "target_time is the start of the hour it is for"))
    if forecast:
        from warehouse.covariates import ingest_forecasts as load

        call = partial(load, settings(), path, site, columns=columns, tz=tz, reject_file=rejects)
    else:
        from warehouse.ingest import ingest_weather as load

        call = partial(load, settings(), path, site, columns=columns, tz=tz,
                       period_ending=_parse_duration(period_ending), reject_file=rejects)
    with Progress(console=err_console, transient=True) as progress:
        report = _run(call, progress=_progress_callback(progress, f"loading {path.name}"))
    _ingest_report(report, as_json)


assets_app = typer.Typer(no_args_is_help=True,
                         help="What each asset is: consumption meter, generation unit, market zone.")
app.add_typer(assets_app, name="assets")


@assets_app.command("set")
def assets_set(
    tenant: Tenant,
    asset: Annotated[str, typer.Option("--asset", "-a", help="Asset id.")],
    kind: Annotated[str, typer.Option("--kind", help="consumption (load forecasts) | generation | market (prices).")],
    capacity: Annotated[float | None, typer.Option(
        help="Generation units: capacity (> 0) in the readings' unit.")] = None,
    technology: Annotated[str | None, typer.Option(help="Generation units: wind | pv.")] = None,
    # text, checked by set_kind: a non-number gets the same one-line error as an out-of-range value
    latitude: Annotated[str | None, typer.Option(
        help="Decimal degrees in [-90, 90], with --longitude (a PV unit's forecast needs its position); "
             "unset: the stored position is kept.")] = None,
    longitude: Annotated[str | None, typer.Option(help="Decimal degrees in [-180, 180], with --latitude.")] = None,
    as_json: AsJson = False,
) -> None:
    """Say what an ingested asset is (and where); a forecast of a type its kind does not have is refused."""
    from warehouse.assets import set_kind

    row = _run(set_kind, settings(), tenant, asset, kind, capacity, technology, latitude, longitude)
    if as_json:
        _print_json(row)
    else:
        where = f" at {row['latitude']:g}, {row['longitude']:g}" if row["latitude"] is not None else ""
        console.print(f"{tenant}/{asset}: {row['kind']}" + (f" ({row['technology']}, capacity {row['capacity']:g})"
                                                          if row["kind"] == "generation" else "") + where)


@assets_app.command("list")
def assets_list(tenant: Tenant, as_json: AsJson = False) -> None:
    """The tenant's assets with kind, capacity, technology, site, time zone, position and native step."""
    from warehouse.assets import list_assets

    frame = _run(list_assets, settings(), tenant)
    if as_json:
        _print_json(json.loads(frame.to_json(orient="records")))
        return
    table = Table("asset", "kind", "capacity", "technology", "site", "time zone", "position", "step (min)",
                  title=f"assets of {tenant}")
    for r in frame.itertuples():
        table.add_row(r.asset_id, r.kind, _cell(r.capacity) if r.capacity == r.capacity and r.capacity is not None
                      else "", r.technology or "", r.site_id or "", r.timezone,
                      f"{r.latitude:g}, {r.longitude:g}" if r.latitude is not None and r.latitude == r.latitude
                      else "", "" if r.step_minutes is None or r.step_minutes != r.step_minutes
                      else str(int(r.step_minutes)))
    console.print(table)


@app.command()
def refresh(as_json: AsJson = False) -> None:
    """Recompute the hourly aggregates and feature tables for what was ingested since the last run."""
    from dataclasses import asdict

    from warehouse.refresh import refresh as run_refresh

    with console.status("refreshing hourly aggregates and feature tables…"):
        report = _run(run_refresh, settings())
    if as_json:
        _print_json(asdict(report))
        return
    for relation, n in report.rows.items():
        console.print(f"{relation}: {n:,} rows recomputed")
    if not report.rows:
        console.print("nothing queued: every hourly aggregate and feature table is current")
    else:
        console.print("next: `ems materialize` to bring the changed assets to the online store")


# ---------------------------------------------------------------- features
@app.command()
def materialize(
    end: Annotated[datetime | None, typer.Option(help="Latest event time to load (UTC); default now.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Reload every asset's latest row of every view.")] = False,
    start: Annotated[datetime | None, typer.Option(help="Run Feast's window materialization of every view from "
                                                   "this time (UTC) instead (a deliberate reload).")] = None,
    as_json: AsJson = False,
) -> None:
    """Write the latest features of every asset that `ems refresh` changed to the online store (Redis)."""
    from rich.progress import Progress

    from warehouse.store import materialize as run_materialize

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("materializing", total=None)

        def step(view: str, done: int, total: int) -> None:
            progress.update(task, description=f"materializing {view}", completed=done, total=total)

        out = _run(run_materialize, settings(), end=end, on_view=step, start=start, full=full)
    if isinstance(out, dict):  # Feast's window materialization (--start)
        if as_json:
            _print_json({view: [str(a), str(b)] for view, (a, b) in out.items()})
            return
        table = Table("feature view", "from", "to")
        for view, (a, b) in out.items():
            table.add_row(view, str(a), str(b))
        console.print(table)
        return
    if as_json:
        _print_json({"written": out.written, "full": out.full, "queued": out.queued, "end": str(out.end)})
        return
    table = Table("feature view", "assets written", "how", title=f"online store up to {out.end:%Y-%m-%d %H:%M} UTC")
    for view, n in out.written.items():
        table.add_row(view, f"{n:,}", "whole view" if view in out.full else f"changed ({out.queued:,} queued)")
    console.print(table)


export_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Warehouse history as Parquet for Spark and Dask.")
app.add_typer(export_app, name="export")


@export_app.command("history")
def export_history(
    tenant: Tenant,
    to: Annotated[str | None, typer.Option("--to", envvar="EMS_HISTORY_URI", help="s3://BUCKET/PREFIX, file:///PATH or "
                                           "a path; default s3://<EMS_S3_BUCKET>/history.")] = None,
    since: Annotated[datetime | None, typer.Option(help="First day to export (UTC); default all history.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Export times before this (UTC), whole days.")] = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="Only these relations (repeatable).")] = None,
    as_json: AsJson = False,
) -> None:
    """Write the tenant's feature tables and readings to date-partitioned Parquet, only the days that changed."""
    from rich.progress import Progress

    from warehouse.history import export_history as run_export

    s = settings()
    uri = to or f"s3://{s.s3_bucket}/history"
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("exporting", total=None)

        def step(name: str, done: int, total: int) -> None:
            progress.update(task, description=f"exporting {name}", completed=done, total=total or None)

        out = _run(run_export, s, tenant, uri, since=since, until=until, tables=table, progress=step)
    if as_json:
        _print_json({"uri": out.uri, "written": out.written, "deleted": out.deleted, "unchanged": out.unchanged,
                     "rows": out.rows})
        return
    summary = Table("relation", "days written", "days deleted", title=f"{tenant} -> {out.uri} "
                    f"({out.rows:,} rows written, {out.unchanged:,} days unchanged)")
    for name in sorted(set(out.written) | set(out.deleted)):
        summary.add_row(name, f"{len(out.written.get(name, [])):,}", f"{len(out.deleted.get(name, [])):,}")
    console.print(summary)


@app.command()
def features(
    tenant: Tenant,
    asset: Annotated[list[str], typer.Option("--asset", "-a", help="Asset id (repeatable).")],
    service: Annotated[str, typer.Option("--service", "-s", help="Feature service.")] = "forecast_advanced",
    at: Annotated[
        datetime | None,
        typer.Option(help="Target time for calendar features (UTC); default: the asset's latest hour."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Print the online features of assets for a feature service (from Redis)."""
    from inference.freshness import stale_warnings
    from warehouse.store import online_features

    frame = _run(online_features, settings(), service, tenant, asset, target_time=at)
    for warning in _run(stale_warnings, settings(), tenant, asset):
        _error(warning, "[yellow]warning:[/]")
    if as_json:
        _print_json(frame.to_dict(orient="records"))
        return
    table = Table("feature", *frame["asset_id"], title=f"{service} · tenant {tenant} (online, Redis)")
    for column in frame.columns.drop(["tenant_id", "asset_id"]):
        table.add_row(column, *[_cell(x) for x in frame[column]])
    console.print(table)


def _cell(value) -> str:
    from core.formats import number

    return number(value, ",.2f")


# ---------------------------------------------------------------- inference
PlotFile = Annotated[Path | None, typer.Option("--plot", help="Write the plot to this PNG file.", dir_okay=False)]
AssetId = Annotated[str, typer.Option("--asset", "-a", help="Asset id.")]
ModelOption = Annotated[str | None, typer.Option("--model", help="Model id or name; default: production.")]


def _client():
    from inference import default_client

    return default_client()


def _save_plot(result, path: Path | None) -> None:
    if path is None:
        return
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = result.plot()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    err_console.print(f"plot written to {path}")


def _warnings(result) -> None:
    for w in result.warnings:
        _error(w, "[yellow]warning:[/]")


IntervalMinutes = Annotated[int, typer.Option("--interval-minutes", help="60 (hourly), 15 or 30 (assets whose readings "
                                            "are that fine; their own model, load_forecaster_{N}min) or 1440 (the "
                                            "hourly forecast summed/averaged to local days).")]

@app.command("forecast")
def forecast_cmd(
    tenant: Tenant,
    asset: Annotated[str | None, typer.Option("--asset", "-a", help="Asset id (or --all-assets).")] = None,
    horizon: Annotated[int, typer.Option("--horizon", "-H", help="Hours ahead, 1..168.")] = 24,
    model: ModelOption = None,
    as_json: AsJson = False,
    plot: PlotFile = None,
    log: Annotated[bool, typer.Option("--log", help="Also write it to the forecast log (live accuracy, "
                                      "`ems monitor`; hourly forecasts only).")] = False,
    all_assets: Annotated[bool, typer.Option("--all-assets", help="Every asset of the tenant with one model "
                                             "version, written to the forecast log (hourly: the log holds "
                                             "hourly rows only).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="With --all-assets: local | spark (the Feast yaml's "
                                        "spark.engine session).")] = "local",
    out: Annotated[Path | None, typer.Option("--out", help="With --all-assets: also write Parquet here.")] = None,
    forecast_type: Annotated[str, typer.Option(
        "--type", help="load | generation | price: what the asset's kind has (`ems assets list`).")] = "load",
    weather_forecast: Annotated[Path | None, typer.Option(
        "--weather-forecast", help="CSV of your weather forecast for the target hours: target_time (hour start, "
        "ISO 8601 with zone) and any of temperature, humidity, solar_irradiance, wind_speed; for a model on a "
        "service with target-hour weather (forecast_weather_ahead). Replaces the stored forecasts.")] = None,
    interval_minutes: IntervalMinutes = 60,
) -> None:
    """Forecast an asset's hourly load (p10/p50/p90 + point) with the production model."""
    if all_assets or asset is None:
        _forecast_all(tenant, asset, all_assets, horizon, model, engine, out, as_json, interval_minutes, log)
        return
    if log:  # before forecasting: the log's rows are hours
        from core.names import check_interval
        from inference.batch import check_loggable

        _run(check_loggable, _run(check_interval, interval_minutes))
    weather = _weather_file(weather_forecast) if weather_forecast else None
    result = _run(_client().forecast, tenant, asset, horizon, model=model, forecast_type=forecast_type,
                  weather_forecast=weather, interval_minutes=interval_minutes)
    if log:
        from inference.accuracy import log_forecast

        _run(log_forecast, settings(), result)
    _warnings(result)
    if as_json:
        _print_json(result.to_dict())
    else:
        table = Table({60: "hour (UTC)", 1440: "day (local)"}.get(interval_minutes, "step (UTC)"), "h", "point",
                      "p10", "p50", "p90",
                      title=f"{tenant}/{asset} · {result.model_id} ({result.stage}) · features {result.source} "
                            f"@ {result.feature_time:%Y-%m-%d %H:%M}")
        for r in result.frame.itertuples():
            table.add_row(f"{r.timestamp:%Y-%m-%d %H:%M}", str(r.horizon_h), _cell(r.point), _cell(r.p10),
                          _cell(r.p50), _cell(r.p90))
        console.print(table)
    _save_plot(result, plot)


def _weather_file(path: Path):
    """A weather forecast CSV as a frame indexed by target_time (checked by the SDK)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise _fail(ValueError(f"--weather-forecast {path}: cannot read it as CSV ({e})")) from e
    if "target_time" not in frame.columns:
        raise _fail(ValueError(f"--weather-forecast {path}: no target_time column; it has {', '.join(frame.columns)}"))
    times = pd.to_datetime(frame.pop("target_time"), utc=True, errors="coerce")
    if times.isna().any():
        raise _fail(ValueError(f"--weather-forecast {path}: target_time on line {int(times.isna().argmax()) + 2} "
                               "is not an ISO 8601 time"))
    frame.index = pd.DatetimeIndex(times)
    return frame


def _forecast_all(tenant, asset, all_assets, horizon, model, engine, out, as_json, interval_minutes=60,
                  log=False) -> None:
    if all_assets == (asset is not None):
        raise _fail(ValueError("give --asset ID or --all-assets" + (", not both" if asset else "")))
    from inference.batch import LOG_INTERVAL, forecast_all

    # hourly batches always go to the forecast log; another interval only with --log, which is refused
    run = _run(forecast_all, settings(), tenant, horizon, model=model, engine=engine, out=out,
               log=log or interval_minutes == LOG_INTERVAL, interval_minutes=interval_minutes)
    rows = int(run.rows["error"].isna().sum())
    if as_json:
        _print_json({"tenant": tenant, "model_id": run.model_id, "engine": engine, "assets": run.assets,
                     "interval_minutes": run.interval_minutes, "rows": rows, "logged": run.logged,
                     "seconds": round(run.seconds, 3), "skipped": run.skipped})
        return
    where = "in the forecast log" if run.logged else "not logged: the forecast log holds hourly rows only"
    console.print(f"{run.assets} assets of {tenant} forecast at {run.interval_minutes} min with {run.model_id} on "
                  f"{engine} in {run.seconds:.1f} s ({rows} rows, {where})")
    for skipped, reason in run.skipped.items():
        err_console.print(f"skipped {skipped}: {reason}")


@app.command("anomaly")
def anomaly_cmd(
    tenant: Tenant,
    asset: AssetId,
    start: Annotated[datetime | None, typer.Option("--start", help="First hour (UTC unless an offset is given).")]
    = None,
    end: Annotated[datetime | None, typer.Option("--end", help="End of the range (exclusive).")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="z_score | iqr | isolation_forest | "
                                        "local_outlier_factor | forecast_residual")] = "z_score",
    sensitivity: Annotated[int, typer.Option("--sensitivity", "-s", help="1 (critical only) .. 5.")] = 3,
    lookback_hours: Annotated[int, typer.Option("--lookback-hours", help="Hours before the latest, without "
                                                "--start.")] = 168,
    as_json: AsJson = False,
    plot: PlotFile = None,
) -> None:
    """Score an asset's hourly load for anomalies with the production detector."""
    result = _run(_client().detect_anomalies, tenant, asset, start=start, end=end, method=method,
                  sensitivity=sensitivity, lookback_hours=lookback_hours)
    _warnings(result)
    if as_json:
        _print_json(result.to_dict())
    else:
        s = result.summary
        console.print(f"{tenant}/{asset} · {result.model_id} · {s['method']}, sensitivity {s['sensitivity']} "
                      f"(> {s['threshold_sigma']} σ): [bold]{s['anomalies']}[/] anomalies in {s['points']} h "
                      f"({s['rate']:.1%}); max score {s['max_score']:.2f} σ; by severity {s['by_severity']}")
        table = Table("hour (UTC)", "value", "score σ", "severity", "explanation", title="anomalies")
        for r in result.frame[result.frame["is_anomaly"]].itertuples():
            table.add_row(f"{r.timestamp:%Y-%m-%d %H:%M}", _cell(r.value), f"{r.score:.2f}", r.severity, r.explanation)
        console.print(table)
    _save_plot(result, plot)


@app.command("explain")
def explain_cmd(
    tenant: Tenant,
    asset: AssetId,
    horizon: Annotated[int, typer.Option("--horizon", "-H", help="Which forecast hour to explain, 1..168.")] = 1,
    model: ModelOption = None,
    as_json: AsJson = False,
    plot: PlotFile = None,
) -> None:
    """Explain one forecast hour: SHAP contribution of each feature (waterfall)."""
    result = _run(_client().explain, tenant, asset, horizon, model=model)
    _warnings(result)
    if as_json:
        _print_json(result.to_dict())
    else:
        console.print(result.summary, soft_wrap=True)
        table = Table("feature", "value", "contribution", title=f"{result.model_id} · base {_cell(result.base_value)}"
                      f" → prediction {_cell(result.prediction)}")
        for r in result.contributions.itertuples():
            table.add_row(r.feature, _cell(r.value), f"{r.contribution:+,.2f}")
        console.print(table)
    _save_plot(result, plot)


# ---------------------------------------------------------------- train
train_app = typer.Typer(no_args_is_help=True, help="Train models from Feast point-in-time features and register them.")
app.add_typer(train_app, name="train")
Assets = Annotated[list[str] | None, typer.Option("--asset", "-a", help="Asset id (repeat); default: all assets.")]
HistoryDays = Annotated[int, typer.Option("--history-days", min=21, max=20000, help="Days of history per asset.")]
HoldoutDays = Annotated[int, typer.Option("--holdout-days", min=1, max=365, help="Last days held out for evaluation.")]


def _train_progress(fn, *args, **kwargs):
    """Run a training function under a rich progress bar fed by its progress callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # MLflow writes its run links to stdout; keep stdout for our result (and --json) alone.
    with contextlib.redirect_stdout(sys.stderr), Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=err_console) as progress:
        task = progress.add_task("training", total=None)

        def update(step: str, done: int, total: int) -> None:
            progress.update(task, description=f"training: {step}", completed=done, total=total)

        try:
            return _run(fn, *args, progress=update, **kwargs)
        except typer.Exit:  # the error's one line stays alone: no half bar under it
            progress.update(task, visible=False)
            raise


def _split(history_days: int, holdout_days: int):
    from registry.training_data import SplitConfig

    try:
        return SplitConfig(history_days=history_days, holdout_days=holdout_days).check()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@train_app.command("forecast")
def train_forecast(
    tenant: Tenant,
    asset: Assets = None,
    features: ForecastService = "forecast_weather",
    name: Annotated[str, typer.Option("--name", help="Registered as {tenant}.{name}.")] = "load_forecaster",
    history_days: HistoryDays = 730,
    holdout_days: HoldoutDays = 14,
    as_json: AsJson = False,
    forecast_type: Annotated[str, typer.Option(
        "--type", help="load | generation (the tenant's wind or PV units over their capacity, with their sites' "
                       "weather forecasts; all their history, --holdout-days held out and as many before them to "
                       "calibrate the band; registered as generation_forecaster (wind) or pv_forecaster (PV) unless "
                       "--name) | price (one market zone's day-ahead prices, --asset, with its site's day-ahead "
                       "covariates; price_forecaster).")
    ] = "load",
    technology: Annotated[str | None, typer.Option(
        "--technology", help="--type generation: wind | pv, the units to train (one model per technology); unset: "
                             "the one the tenant's (or --asset's) units have.")] = None,
    boost_rounds: Annotated[int, typer.Option("--boost-rounds", min=1, max=5000, help="load: boosting rounds per "
                                              "quantile booster "
                                              "(1..5000; fewer: faster and coarser, e.g. the demo's 100).")] = 300,
    shift_share: Annotated[float, typer.Option("--shift-share", min=0.0, max=1.0, help="load: share of training "
                                               "issue times copied after a random level shift (0..1; 0.2 for "
                                               "loads that step to new levels, README Evaluation).")] = 0.0,
    interval_minutes: IntervalMinutes = 60,
    engine: Annotated[str, typer.Option("--engine", help="load: local (this process) | dask (lightgbm.dask on a "
                                        "Dask cluster, from the Parquet training set; README Scaling out).")
                      ] = "local",
    dask_scheduler: Annotated[str, typer.Option("--dask-scheduler", envvar="EMS_DASK_SCHEDULER", help="--engine "
                                                "dask: a running scheduler (tcp://host:8786); unset: a local "
                                                "cluster of --dask-workers processes.")] = "",
    dask_workers: Annotated[int, typer.Option("--dask-workers", min=1, max=256, help="--engine dask without "
                                              "--dask-scheduler: worker processes of the local cluster.")] = 2,
    training_set: Annotated[str, typer.Option("--training-set", help="--engine dask: an exported Parquet training "
                                              "set (s3://bucket/key or a path) to train from; unset: export the "
                                              "windows to S3 first.")] = "",
) -> None:
    """Train the LightGBM p10/p50/p90 forecaster (1-168 h) and register a new staging version."""
    from dataclasses import replace

    from registry import train_forecast as tf
    from warehouse.store import get_store

    dask = _dask_config(engine, forecast_type, interval_minutes, dask_scheduler, dask_workers, training_set)
    if forecast_type == "generation":
        _train_generation(tenant, asset, None if name == "load_forecaster" else name, holdout_days, as_json,
                          technology)
        return
    if technology is not None:
        raise _fail(ValueError(f"--technology {technology} is for --type generation, not --type {forecast_type}"))
    if forecast_type == "price":
        _train_price(tenant, asset, None if name == "load_forecaster" else name, holdout_days, as_json)
        return
    if forecast_type != "load":
        raise _fail(ValueError(f"--type {forecast_type!r} is not one of load, generation, price"))
    if interval_minutes != 60:
        _train_step(tenant, asset, None if name == "load_forecaster" else name, interval_minutes, history_days,
                    holdout_days, boost_rounds, as_json)
        return
    result = _train_progress(tf.train, settings(), get_store(settings()), tenant, asset, features, name,
                             replace(_split(history_days, holdout_days), shift_share=shift_share),
                             tf.BoosterConfig(num_boost_round=boost_rounds), engine=engine, dask=dask)
    if as_json:
        _print_json(vars(result))
        return
    m = result.metrics
    console.print(f"[bold]{result.model_id}[/] (staging) · run {result.run_id} · {result.timings['total_s']:.1f} s")
    console.print(f"day-ahead MASE {m['dayahead_mase_168']:.3f} (seasonal-naive 168 h: "
                  f"{m['dayahead_naive_168_mase']:.3f}) · p10-p90 coverage {m['dayahead_coverage_p10_p90']:.1%}")
    table = Table("asset", "MAE", "MAPE %", "MASE", "naive-168 MASE", "coverage", title="held-out days, day-ahead")
    for a, s in result.per_asset.items():
        table.add_row(a, _cell(s["mae"]), _cell(s["mape"]), f"{s['mase_168']:.3f}", f"{s['naive_168_mase']:.3f}",
                      f"{s['coverage_p10_p90']:.1%}")
    console.print(table)
    sys.stdout.write(f"{result.model_id}\n")  # last line: the new id alone, for scripts


def _train_step(tenant: str, asset, name: str | None, interval: int, history_days: int, holdout_days: int,
                boost_rounds: int, as_json: bool) -> None:
    from registry import train_step as ts
    from warehouse.store import get_store

    _run(ts.check_step, interval)  # before the store is opened
    cfg = ts.StepConfig(history_days=history_days, holdout_days=holdout_days, num_boost_round=min(boost_rounds, 300))
    result = _run(ts.train, settings(), get_store(settings()), tenant, interval, asset, name, cfg)
    if as_json:
        _print_json({"model_id": result.model_id, "run_id": result.run_id, "metrics": result.metrics,
                     "worst_days": result.worst_days})
        return
    m = result.metrics
    console.print(f"[bold]{result.model_id}[/] (staging, {interval}-minute) · run {result.run_id}")
    console.print(f"held-out day-ahead MAE {m['dayahead_mae']:.4g} (seasonal-naive same step 1 d: "
                  f"{m['dayahead_naive_1d_mae']:.4g}, 7 d: {m['dayahead_naive_7d_mae']:.4g}) · p10-p90 coverage "
                  f"{m['dayahead_coverage_p10_p90']:.1%}")
    sys.stdout.write(f"{result.model_id}\n")


def _dask_config(engine: str, forecast_type: str, interval_minutes: int, scheduler: str, workers: int,
                 training_set: str):
    """--engine and the Dask options, checked together: one error naming the value and the allowed ones."""
    from registry.train_forecast import ENGINES

    if engine not in ENGINES:
        raise _fail(ValueError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}"))
    scheduler = "" if engine == "local" and scheduler == os.environ.get("EMS_DASK_SCHEDULER") else scheduler
    given = [f"{flag} {value}" for flag, value, unset in (("--dask-scheduler", scheduler, ""),
                                                           ("--dask-workers", workers, 2),
                                                           ("--training-set", training_set, "")) if value != unset]
    if engine == "local":
        if given:
            raise _fail(ValueError(f"{', '.join(given)}: Dask option(s) need --engine dask, not --engine local"))
        return None
    if forecast_type != "load" or interval_minutes != 60:
        raise _fail(ValueError(f"--engine dask trains hourly load models: --type {forecast_type} --interval-minutes "
                               f"{interval_minutes} needs --engine local (allowed with dask: --type load, "
                               "--interval-minutes 60)"))
    if scheduler and workers != 2:
        raise _fail(ValueError(f"--dask-workers {workers} sizes a local cluster; with --dask-scheduler {scheduler} "
                               "the workers are the scheduler's: give one of the two"))
    from registry.dask_training import DaskConfig

    try:
        return DaskConfig(scheduler=scheduler, workers=workers, training_set=training_set).check()
    except ValueError as e:
        raise _fail(e) from None


def _train_price(tenant: str, asset, name: str | None, holdout_days: int, as_json: bool) -> None:
    from registry import train_price as tp
    from warehouse.store import get_store

    if not asset or len(asset) != 1:
        raise _fail(ValueError("give the market zone with one --asset for --type price"))
    result = _train_progress(tp.train, settings(), get_store(settings()), tenant, asset[0], holdout_days=holdout_days,
                             **({"name": name} if name else {}))
    if as_json:
        _print_json(vars(result))
        return
    m = result.metrics
    console.print(f"[bold]{result.model_id}[/] (staging) · run {result.run_id} · {result.timings['total_s']:.1f} s")
    console.print(f"held-out days: MAE {m['mae']:.3f} · naive d-1 {m['naive_d1_mae']:.3f} · naive d-7 "
                  f"{m['naive_d7_mae']:.3f} ({int(m['holdout_days'])} days after {int(m['train_days'])} training days)")
    sys.stdout.write(f"{result.model_id}\n")


def _train_generation(tenant: str, asset, name: str | None, holdout_days: int, as_json: bool,
                      technology: str | None = None) -> None:
    from registry import train_generation as tg
    from warehouse.store import get_store

    kwargs = {"name": name} if name else {}
    result = _train_progress(tg.train, settings(), get_store(settings()), tenant, asset, holdout_days=holdout_days,
                             calibration_days=holdout_days, technology=technology, **kwargs)
    if as_json:
        _print_json(vars(result))
        return
    m = result.metrics
    console.print(f"[bold]{result.model_id}[/] (staging) · run {result.run_id} · {result.timings['total_s']:.1f} s")
    baseline = "same hour, last known day" if "persistence_mae" in m else "last hour"  # PV : wind
    table = Table("asset", "RMSE", "persistence RMSE", "MAE", "pinball", "p10–p90 cov.",
                  title=f"held-out days, 1-48 h, power / capacity (persistence: {baseline})")
    for a, s in {**result.per_asset, "all": m}.items():
        table.add_row(a, f"{s['rmse']:.4f}", f"{s['persistence_rmse']:.4f}", f"{s['mae']:.4f}", f"{s['pinball']:.4f}",
                      f"{s['coverage_p10_p90']:.1%}")
    console.print(table)
    sys.stdout.write(f"{result.model_id}\n")  # last line: the new id alone, for scripts


@train_app.command("anomaly")
def train_anomaly(
    tenant: Tenant,
    method: Annotated[str, typer.Option("--method", "-m",
                                        help="z_score | iqr | isolation_forest | local_outlier_factor")],
    asset: Assets = None,
    features: Annotated[str, typer.Option("--features", help="Feature service to train on.")] = "anomaly_detection",
    name: Annotated[str | None, typer.Option("--name", help="Model name; default anomaly_{method}.")] = None,
    history_days: HistoryDays = 365,
    holdout_days: HoldoutDays = 14,
    as_json: AsJson = False,
) -> None:
    """Fit an anomaly detector (scores in sigma units, severity bands) and register a staging version."""
    from core.names import check_anomaly_method
    from registry import train_anomaly as ta
    from warehouse.store import get_store

    _run(check_anomaly_method, method)
    result = _train_progress(ta.train, settings(), get_store(settings()), tenant, method, asset, features, name,
                             _split(history_days, holdout_days))
    if as_json:
        _print_json(vars(result))
        return
    m = result.metrics
    shares = " · ".join(f"s{s}: {m[f'flagged_share_s{s}']:.2%}" for s in range(1, 6))
    console.print(f"[bold]{result.model_id}[/] (staging) · run {result.run_id} · {m['total_s']:.1f} s")
    console.print(f"held-out hours flagged by sensitivity: {shares}")
    sys.stdout.write(f"{result.model_id}\n")


# ---------------------------------------------------------------- model search (issue 21)
tune_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Model search logged to MLflow (Optuna TPE).")
app.add_typer(tune_app, name="tune")


@tune_app.command("forecast")
def tune_forecast(
    tenant: Tenant,
    asset: Assets = None,
    trials: Annotated[int, typer.Option("--trials", help="Trials at most (1..10000).")] = 30,
    time_budget: Annotated[float, typer.Option("--time-budget", help="Seconds for the search (> 0): training sets, "
                                               "baselines and trials; the refit of the best comes on top.")] = 1800,
    windows: Annotated[int, typer.Option("--windows", help="Validation windows before the held-out days "
                                         "(1..12).")] = 3,
    window_days: Annotated[int, typer.Option("--window-days", help="Days per validation window (1..56).")] = 7,
    name: Annotated[str, typer.Option("--name", help="The best is registered as {tenant}.{name}.")] = "load_forecaster",
    history_days: HistoryDays = 730,
    holdout_days: HoldoutDays = 14,
    issue_every_h: Annotated[int, typer.Option("--issue-every-h", help="Training issue times every N hours "
                                               "(1..168; more: a lighter search).")] = 6,
    horizons_per_issue: Annotated[int, typer.Option("--horizons-per-issue", help="Horizons 25..168 sampled per "
                                                    "training issue time (1..168).")] = 24,
    as_json: AsJson = False,
) -> None:
    """Search the forecaster's design and boosting on validation windows before the held-out days; register the best."""
    from dataclasses import replace

    from registry import tune
    from warehouse.store import get_store

    cfg = _run(tune.SearchConfig(trials, time_budget, windows, window_days).check)  # before any I/O
    try:
        split = replace(_split(history_days, holdout_days), issue_every_h=issue_every_h,
                        horizons_per_issue=horizons_per_issue).check()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    result = _steps("model search", tune.search, settings(), get_store(settings()), tenant, asset, name, split, cfg)
    if as_json:
        _print_json(result.as_dict())
        return
    _tune_tables(result)
    sys.stdout.write(f"{result.model_id}\n")  # last line: the new id alone, for scripts


def _ratio(value) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


def _tune_tables(result) -> None:
    table = Table("rank", "model", "design", "MASE", "MAE", "MAE / naive-168", "skill vs best naive", "state",
                  title="validation windows, day-ahead (pooled; lower MASE is better)")
    shown = [r for r in result.leaderboard if r["kind"] != "lightgbm" or (r["rank"] or 99) <= 15]
    for r in shown:
        skill = r.get("skill_vs_best_naive")
        table.add_row(str(r["rank"] or "-"), r["name"], r["design"] or "", _ratio(r.get("val_mase_168")),
                      _cell(r.get("val_mae")), _ratio(r.get("val_relmae_168")),
                      "" if skill is None else f"{skill:+.3f}", r["state"])
    console.print(table)
    holdout = Table("model", "MAE", "MASE", "MAE / naive-24", "MAE / naive-168", title="held-out days, day-ahead")
    for label, s in result.holdout.items():
        holdout.add_row(label, _cell(s.get("mae")), _ratio(s.get("mase_168")), _ratio(s.get("relmae_24")),
                        _ratio(s.get("relmae_168")))
    console.print(holdout)
    best = {k: v for k, v in result.best.items() if k not in ("trial", "val_mase_168")}
    console.print(f"best: trial {result.best['trial']} {best} · {result.trials_done} trials done, "
                  f"{result.trials_pruned} pruned in {result.timings['search_s']:.0f} s · search run {result.search_id}"
                  + (f" · left out: {result.skipped_designs}" if result.skipped_designs else ""))
    console.print(f"[bold]{result.model_id}[/] (staging, tag tune_search_id={result.search_id})")


# ---------------------------------------------------------------- models
models_app = typer.Typer(no_args_is_help=True, help="Model versions in the MLflow registry and their stages.")
app.add_typer(models_app, name="models")
ModelId = Annotated[str, typer.Argument(help="Model id tenant:name:version, e.g. demo:load_forecaster:3.")]


# ---------------------------------------------------------------- evaluation
evaluate_app = typer.Typer(no_args_is_help=True, help="Accuracy on already-ingested data, against baselines.")
app.add_typer(evaluate_app, name="evaluate")


def _steps(label: str, fn, *args, **kwargs):
    """Run a library function under a rich progress bar fed by its (step, done, total) callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with contextlib.redirect_stdout(sys.stderr), Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(step: str, done: int, total: int) -> None:
            progress.update(task, description=f"{label}: {step}", completed=done, total=total)

        return _run(fn, *args, progress=update, **kwargs)


def _hours_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of hours, e.g. 24,168") from None


@evaluate_app.command("forecast")
def evaluate_forecast(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", envvar="EMS_TENANT", help="Tenant id (the "
                                               "backtest protocol).")] = None,
    asset: Assets = None,
    horizons: Annotated[str, typer.Option("--horizons", help="Horizon sets, comma-separated: H scores horizons "
                                          "1..H (each 1..168).")] = "24,168",
    origins: Annotated[int, typer.Option("--origins", help="Daily forecast origins: the last N days are the test "
                                         "window.")] = 56,
    features: ForecastService = "forecast_weather",
    history_days: Annotated[int, typer.Option("--history-days", help="Days of history per asset, test window "
                                              "included.")] = 1095,
    out: Annotated[Path | None, typer.Option("--out", file_okay=False, help="Report folder (default "
                                             "{EMS_HOME}/reports/backtest/<tenant>-<stamp>).")] = None,
    as_json: AsJson = False,
    protocol: Annotated[str, typer.Option("--protocol", help="backtest: the tenant's ingested data | epf: the "
                                          "epftoolbox day-ahead price protocol on the shared data (--market).")]
    = "backtest",
    market: Annotated[str, typer.Option("--market", help="epf: np | pjm.")] = "np",
    data: Annotated[Path, typer.Option("--data", file_okay=False, help="epf: the shared data folder.")]
    = Path("../shared/data"),
    recalibrate_days: Annotated[int, typer.Option("--recalibrate-days", help="epf: refit the price forecaster "
                                                  "every N days (1..91).")] = 28,
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="epf: PNG of the last test week.")]
    = None,
    target_weather: Annotated[str, typer.Option("--target-weather", help="backtest, services with target-hour "
                                                "weather (forecast_weather_ahead): forecast (archived forecasts, "
                                                "else observed weather with a forecast's error) | oracle (observed "
                                                "weather: the upper bound).")] = "forecast",
    retrain_days: Annotated[int, typer.Option("--retrain-days", help="gefcom: retrain the generation forecaster "
                                              "every N days on all data known by then (0: once, before "
                                              "2011).")] = 0,
) -> None:
    """Rolling-origin backtest: train once before the last N days, forecast each day, score vs seasonal-naive.
    --protocol epf | gefcom: the field's day-ahead price / GEFCom2012 wind protocol on the shared data."""
    if protocol == "epf":
        _evaluate_epf(market, data, recalibrate_days, plot, as_json)
        return
    if protocol == "gefcom":
        _evaluate_gefcom(data, retrain_days, plot, as_json)
        return
    if protocol != "backtest":
        raise _fail(ValueError(f"--protocol {protocol!r} is not one of backtest, epf, gefcom"))
    if tenant is None:
        raise _fail(ValueError("give --tenant (or EMS_TENANT) for the backtest protocol"))
    from evaluation import backtest, backtest_report
    from warehouse.store import get_store

    hours = _run(backtest.check, _hours_list(horizons), origins, history_days)  # before any I/O
    store = get_store(settings())
    result = _steps("backtest", backtest.run, settings(), store, tenant, asset, hours, origins, features,
                    history_days, target_weather=target_weather)
    with contextlib.redirect_stdout(sys.stderr), err_console.status("writing the report…"):
        report = backtest_report.publish(settings(), store, result, out)
    for w in report.warnings:
        _error(w, "[yellow]warning:[/]")
    if as_json:
        _print_json(report.doc)
        return
    _backtest_tables(result)
    console.print(f"report: {report.markdown}" + (f" · MLflow run {report.run_id}" if report.run_id else ""))


def _evaluate_epf(market: str, data: Path, recalibrate_days: int, plot: Path | None, as_json: bool) -> None:
    """The epftoolbox protocol (evaluation/epf.py): ours vs the LEAR and DNN ensembles on the same 728 days."""
    from evaluation import epf

    _run(epf.check, market, recalibrate_days)
    cache = settings().home / "cache" / "epf"  # per-block forecasts: a rerun reads them
    result = _steps(f"epf {market}", epf.run, market, data, recalibrate_days, cache)
    doc = result.doc()
    if plot is not None:
        doc["plot"] = str(epf.plot(result, plot))
    if as_json:
        _print_json(doc)
        return
    table = Table("model", "MAE", "RMSE", "sMAPE %", "DM p (ours better)", "DM p (ref better)",
                  title=f"{market.upper()} · {doc['test_period'][0]} – {doc['test_period'][1]} · refit every "
                        f"{recalibrate_days} d · weights {result.weights}")
    for name, row in result.metrics.iterrows():
        dm = result.dm.get(name)
        table.add_row(name, f"{row['mae']:.3f}", f"{row['rmse']:.3f}", f"{row['smape']:.2f}",
                      f"{dm['p_ours_better']:.3g}" if dm else "", f"{dm['p_ref_better']:.3g}" if dm else "")
    console.print(table)
    console.print(f"pinball (p10/p50/p90) {result.pinball:.3f} · p10–p90 coverage {result.coverage:.3f} · "
                  f"{result.seconds:.0f} s" + (f" · plot {doc['plot']}" if plot else ""))
    worst = Table("day", *result.worst.columns, title="worst days (daily MAE)")
    for day, row in result.worst.iterrows():
        worst.add_row(f"{day:%Y-%m-%d}", *[f"{v:.2f}" for v in row])
    console.print(worst)


def _evaluate_gefcom(data: Path, retrain_days: int, plot: Path | None, as_json: bool) -> None:
    """The GEFCom2012 wind protocol (evaluation/gefcom.py): RMSE per farm and all vs persistence on the test hours."""
    from evaluation import gefcom, gefcom_report

    if not 0 <= retrain_days <= 548:
        raise _fail(ValueError(f"--retrain-days {retrain_days} is out of range; use 0 (train once) to 548"))
    _run(gefcom.check_data, data)
    cache = settings().home / "cache" / "gefcom"  # the NWP join, the settings and each fit's forecasts
    result = _steps("gefcom", gefcom.run, data, cache, retrain_days)
    doc = gefcom_report.doc(result)
    if plot is not None:
        doc["plot"] = str(gefcom_report.plot(result, plot))
    if as_json:
        _print_json(doc)
        return
    table = Table("farm", "RMSE", "persistence RMSE", "RMSE p50", "MAE", "pinball", "p10–p90 cov.", "rows",
                  title=f"GEFCom2012 wind · {len(result.test) // 48 // 7} windows × 48 h · retrained every "
                        f"{retrain_days or '∞'} d ({result.settings['retrains']} fits)")
    for farm, s in result.scores.iterrows():
        table.add_row(f"[bold]{farm}[/]" if farm == "all" else farm, f"{s['rmse']:.4f}",
                      f"{s['persistence_rmse']:.4f}", f"{s['rmse_p50']:.4f}", f"{s['mae']:.4f}", f"{s['pinball']:.4f}",
                      f"{s['coverage_p10_p90']:.3f}", str(int(s["rows"])))
    console.print(table)
    by_h = Table("horizon", "RMSE", "persistence RMSE", "p10–p90 cov.", title="by horizon")
    for h, s in result.by_horizon.iterrows():
        by_h.add_row(h, f"{s['rmse']:.4f}", f"{s['persistence_rmse']:.4f}", f"{s['coverage_p10_p90']:.3f}")
    console.print(by_h)
    worst = Table("farm", "origin", "RMSE", "persistence RMSE", "p10–p90 cov.", "mean power", title="worst windows")
    for _, w in result.worst.iterrows():
        worst.add_row(w["unit"], f"{w['origin']:%Y-%m-%d %H:%M}", f"{w['rmse']:.3f}", f"{w['persistence_rmse']:.3f}",
                      f"{w['coverage_p10_p90']:.3f}", f"{w['mean_power']:.3f}")
    console.print(worst)
    console.print(f"{result.timings['total_s']:.0f} s (fits: {result.timings['train_s_each']} s)"
                  + (f" · plot {doc['plot']}" if plot else ""))


def _backtest_tables(result) -> None:
    """Per horizon set: each asset's MAE, MAPE, skill vs both seasonal-naive forecasts (and how many of
    their rows used a fallback), coverage; then the worst days."""
    from evaluation.backtest import ALL, horizon_label
    from evaluation.backtest_report import WORST_COLUMNS, fmt

    columns = {"mae": "MAE", "mape": "MAPE %", "skill_naive_24": "skill vs naive-24",
               "naive_24_fallback_rows": "fallback rows", "skill_naive_168": "skill vs naive-168",
               "naive_168_fallback_rows": "fallback rows", "coverage_p10_p90": "p10–p90 cov.", "rows": "rows"}
    for h in result.horizons:
        table = Table("asset", *columns.values(), title=f"{result.tenant} · {horizon_label(h)} · "
                                                        f"{result.origins} origins")
        for asset, s in result.table(h).iterrows():
            table.add_row("[bold]all[/]" if asset == ALL else asset, *[fmt(k, s[k]) for k in columns])
        console.print(table)
    console.print("fallback rows: baseline hours without a reading, scored with the other seasonal-naive "
                  "forecast, then the last value (all metrics on the same rows)")
    worst = result.worst
    if not worst.empty:
        table = Table("asset", "origin", *(label for _, label in WORST_COLUMNS), "gaps", "inputs unknown",
                      title=f"worst days: {horizon_label(min(24, max(result.horizons)))} MAE over the better "
                            "seasonal-naive", show_lines=True)
        for _, row in worst.iterrows():
            table.add_row(row["asset_id"], f"{row['issue_time']:%Y-%m-%d %H:%M}",
                          *[fmt(k, row[k]) for k, _ in WORST_COLUMNS], row["gaps"] or "—", row["missing_inputs"] or "—")
        console.print(table)


@evaluate_app.command("robustness")
def evaluate_robustness(
    tenant: Tenant,
    asset: Assets = None,
    gaps: Annotated[str, typer.Option("--gaps", help="Gap lengths in hours hidden before each origin, "
                                      "comma-separated (each 1..168); '' for none.")] = "6,18,30,72",
    level_shift: Annotated[str, typer.Option("--level-shift", help="Factors the load is multiplied by from one "
                                             "day on, comma-separated; '' for none.")] = "2,0.5",
    origins: Annotated[int, typer.Option("--origins", help="Gap origins per asset, a week apart (the test window "
                                         "is their weeks).")] = 6,
    features: ForecastService = "forecast_weather",
    history_days: Annotated[int, typer.Option("--history-days", help="Days of history per asset, test window "
                                              "included.")] = 400,
    gap_share: Annotated[float, typer.Option("--gap-share", help="Share of training issue times copied with a "
                                             "random 1-72 h gap (0: train without gap injection).")] = 0.3,
    shift_share: Annotated[float, typer.Option("--shift-share", help="Share of training issue times copied after "
                                               "a random level shift (0: without, the training default).")] = 0.2,
    as_json: AsJson = False,
) -> None:
    """Day-ahead accuracy after hidden gaps and level shifts, against the same origins and the seasonal-naive."""
    from evaluation import robustness
    from registry.training_data import SplitConfig

    hours = [int(v) for v in _float_list(gaps)]
    factors = _float_list(level_shift)
    _run(robustness.check, hours, factors, origins, history_days)  # before any I/O
    from warehouse.store import get_store

    for name, share in (("--gap-share", gap_share), ("--shift-share", shift_share)):
        if not 0 <= share <= 1:
            raise typer.BadParameter(f"{name}={share:g} is out of range 0..1")
    split = SplitConfig(gap_share=gap_share, shift_share=shift_share)
    result = _steps("robustness", robustness.run, settings(), get_store(settings()), tenant, asset, hours, factors,
                    origins, features, history_days, split=split)
    if as_json:
        _print_json(result.to_dict())
        return
    _robustness_tables(result)


def _float_list(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of numbers, e.g. 2,0.5") from None


def _robustness_tables(result) -> None:
    from evaluation.robustness import GAP_RATIO, SHIFT_BAR_DAY

    table = Table("gap", "origins", f"within {GAP_RATIO:g}x", "mean ratio", "worst ratio", "MAE", "MAE no gap",
                  "naive-168 MAE", "worse than naive-168", "same, no gap", "mean ratio in place",
                  title=f"{result.tenant} · day-ahead MAE after a gap ending at the origin vs the same origin "
                        "without it (served: issued at the last reading past the 3 h TTL)")
    for g, r in result.gap_table().iterrows():
        table.add_row(f"{g} h", f"{r['origins']:.0f}", f"{r['within']:.0f}", f"{r['mean_ratio']:.3f}",
                      f"{r['worst_ratio']:.3f}", f"{r['model_mae']:,.1f}", f"{r['clean_mae']:,.1f}",
                      f"{r['naive_168_mae']:,.1f}", f"{r['worse_than_naive_168']:.0f}",
                      f"{r['clean_worse_than_naive_168']:.0f}", f"{r['in_place_mean_ratio']:.3f}")
    if len(result.gaps):
        console.print(table)
    table = Table("factor", "day after the shift", "MAE", "naive-24 MAE", "skill vs naive-24", "same day, no shift",
                  title=f"{result.tenant} · level shift: day-ahead skill vs naive-24 (bar: > 0 from day "
                        f"{SHIFT_BAR_DAY})")
    for (f, d), r in result.shift_table().iterrows():
        table.add_row(f"x{f:g}", str(d), f"{r['model_mae']:,.1f}", f"{r['naive_24_mae']:,.1f}", f"{r['skill']:+.3f}",
                      f"{r['unshifted_skill']:+.3f}")
    if len(result.shifts):
        console.print(table)
    console.print("bars: " + ", ".join(f"{k} {'passed' if v else 'FAILED'}" for k, v in result.passed.items()))


@evaluate_app.command("anomaly")
def evaluate_anomaly(
    nab_dir: Annotated[Path, typer.Option("--nab", exists=True, file_okay=False, help="NAB corpus folder "
                                          "(data files, labels/, config/), e.g. data/nab.")],
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help="Streaming method to run (repeat; "
                                                     "default: all).")] = None,
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant the corpus is ingested into.")] = "nab",
    out: Annotated[Path | None, typer.Option("--out", file_okay=False, help="Report folder (default "
                                             "{EMS_HOME}/reports/nab/<tenant>-<stamp>).")] = None,
    as_json: AsJson = False,
) -> None:
    """NAB benchmark: ingest the corpus as a tenant, run each method streaming, score with NAB's rules."""
    from evaluation import anomaly as nab_eval
    from evaluation import anomaly_report as nab_report

    methods = _run(nab_eval.check_methods, method)  # before any I/O
    out = out or nab_report.default_out(settings(), tenant)
    result = _steps("NAB", nab_eval.run, settings(), nab_dir, tenant, methods, rejects=out / "ingest_rejects.csv")
    with contextlib.redirect_stdout(sys.stderr), err_console.status("writing the report…"):
        report = nab_report.publish(settings(), result, out)
    for w in report.warnings:
        _error(w, "[yellow]warning:[/]")
    if as_json:
        _print_json(report.doc)
        return
    _nab_tables(result)
    console.print(f"report: {report.markdown}" + (f" · MLflow run {report.run_id}" if report.run_id else ""))


def _nab_tables(result) -> None:
    """Normalised score per method and profile, then each profile's threshold and TP/FP/FN."""
    from evaluation.anomaly import NULL
    from evaluation.anomaly_report import PROFILE_TITLES

    profiles = result.profiles
    title = f"NAB · {len(result.files)} files" + ("" if result.complete else " (partial: not comparable)")
    scores = Table("method", *[PROFILE_TITLES.get(p, p) for p in profiles], title=title)
    for m in [*result.methods, NULL]:
        scores.add_row(f"[bold]{m}[/]" if m == result.best() else m,
                       *[f"{result.results[m][p].normalised:.1f}" for p in profiles])
    console.print(scores)
    counts = Table("method", "profile", "threshold", "TP", "FP", "FN", title="thresholds · TP/FN windows, FP rows")
    for m in result.methods:
        for p in profiles:
            r = result.results[m][p]
            counts.add_row(m, PROFILE_TITLES.get(p, p), f"{r.threshold:.4f}", str(r.tp), str(r.fp), str(r.fn))
    console.print(counts)


# ---------------------------------------------------------------- benchmarks
@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="100 assets, 100k-row training set, fewer repetitions, "
                                                        "no stock-Feast contrast (a few minutes).")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON + markdown report "
                                                  "(default .ems/bench/reports).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Run only these row groups: startup, ingest, materialize, online, serving, http, model_load, pit, "
             "scale (Spark local[1]/local[2], needs ems[spark] and Java), cycle.")] = None,
    assets: Annotated[int | None, typer.Option(
        help="Bench assets (default 500, 100 with --quick; 1-20,000): the size of every row on the bench tenant "
             "(e.g. --only scale --assets 2000). Assets are ingested once and kept.")] = None,
    training_rows: Annotated[list[int] | None, typer.Option(
        help="Entity rows of the scale group's training-set rows (repeatable; 1,000-10,000,000; default "
             "100,000 and 300,000, 20,000 and 60,000 with --quick), e.g. --training-rows 1000000.")] = None,
    as_json: AsJson = False,
) -> None:
    """Measure every hot path against a raw floor in the same run (needs `ems up`; adds tenant `bench`)."""
    from rich.progress import Progress

    from bench.core import fmt
    from bench.run import run

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("bench", total=None)

        def step(name: str, done: int, total: int) -> None:
            progress.update(task, description=f"bench: {name}", completed=done, total=total)

        rows, js, md = _run(run, settings(), quick=quick, out=out, only=only,
                            log=lambda msg: err_console.print(msg), step=step, assets=assets,
                            training_rows=training_rows)
    if as_json:
        _print_json(json.loads(js.read_text()))
    else:
        table = Table("row", "project", "floor", "ratio", "stock Feast", "target", "pass")
        for r in rows:
            stock = fmt(r.stock, r.unit) if r.stock is not None else r.stock_note or "-"
            table.add_row(r.name, fmt(r.project, r.unit), fmt(r.floor, r.unit),
                          "-" if r.ratio is None else f"{r.ratio:.2f}x",
                          stock, r.target, "[green]pass[/]" if r.passed else "[red]FAIL[/]")
        console.print(table)
        err_console.print(f"report: {md} and {js}")
    if not all(r.passed for r in rows):
        raise typer.Exit(2)


def _quiet_mlflow() -> None:
    """MLflow's own INFO/WARNING chatter and download bars stay off unless --verbose/--debug."""
    if not _State.verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", module="mlflow")


def _mlflow():
    """The registry client of the `ems models` commands: a registry that cannot answer (its database
    down, it keeps retrying) fails the command in seconds."""
    from registry.lifecycle import client, fail_fast

    fail_fast(15)
    return client(settings().mlflow_tracking_uri)


def _metric_text(metrics: dict) -> str:
    short = {"dayahead_mae": "MAE", "dayahead_mase_168": "MASE", "dayahead_naive_168_mase": "naive MASE",
             "dayahead_coverage_p10_p90": "p10-p90", "precision": "precision", "recall": "recall", "f1": "F1"}
    return " · ".join(f"{short.get(k, k)} {v:.3g}" for k, v in metrics.items()) or "-"


def _models_table(models) -> None:
    table = Table(title=f"models · MLflow UI {settings().mlflow_tracking_uri}")
    for column in ("id", "serves", "stage", "aliases", "validation", "day-ahead metrics", "run"):
        table.add_column(column, no_wrap=column not in ("validation", "day-ahead metrics"))
    colour = {"production": "green", "staging": "yellow", "archived": "dim"}
    for m in models:
        validation = m.validation or "-"
        table.add_row(m.id, "[bold green]yes[/]" if m.serving else "", f"[{colour.get(m.stage, 'white')}]{m.stage}[/]",
                      ", ".join(m.aliases) or "-", f"[red]{validation}[/]" if m.doubtful else validation,
                      _metric_text(m.metrics), (m.run_id or "-")[:8])
    console.print(table)
    served = {f"{m.tenant}:{m.name}": m.id for m in models if m.serving}
    for key in dict.fromkeys(f"{m.tenant}:{m.name}" for m in models):
        console.print(f"{key} serves {served.get(key, '[red]nothing[/] (no production version)')}")
    for m in models:
        if m.disagreement:
            console.print(f"[yellow]{m.id}: {m.disagreement}[/] (`ems models promote {m.id} --to ...` makes "
                          "alias and stage agree)")


@models_app.command("list")
def models_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", envvar="EMS_TENANT", help="Only this tenant.")] = None,
    as_json: AsJson = False,
) -> None:
    """List model versions (newest first): which one serves per model, stage and aliases as MLflow
    holds them, validation, key metrics, and any disagreement between alias and stage."""
    from registry.lifecycle import list_models

    models = _run(list_models, _mlflow(), tenant)
    if as_json:
        _print_json([m.as_dict() for m in models])
    else:
        _models_table(models)


@models_app.command("show")
def models_show(model_id: ModelId, as_json: AsJson = False) -> None:
    """Show one model version: whether it serves, stage, aliases, validation, metrics, tags, run."""
    from registry.lifecycle import show

    info = _run(show, _mlflow(), model_id)
    if as_json:
        _print_json(info.as_dict())
        return
    table = Table("field", "value", title=info.id, show_header=False)
    for key, value in [("serves", "yes" if info.serving else "no"), ("stage", info.stage),
                       ("aliases", ", ".join(info.aliases) or "-"), ("validation", info.validation or "-"),
                       ("disagreement", info.disagreement or "-"), ("metrics", _metric_text(info.metrics)),
                       ("type", info.model_type), ("run", info.run_id), *sorted(info.tags.items())]:
        table.add_row(key, str(value))
    console.print(table)


@models_app.command("promote")
def models_promote(
    model_id: ModelId,
    to: Annotated[str, typer.Option("--to", help="staging | production | archived")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept on the version with who and when).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote a version validated worse than its baseline.")]
    = False,
) -> None:
    """Move a version to a stage (alias and stage together); promoting to production archives the
    previous one. Recorded on the version: who, when, from which version, --reason."""
    from registry.lifecycle import promote

    info = _run(promote, _mlflow(), model_id, to, force=force, reason=reason)
    console.print(f"{info.id} is now [bold]{info.stage}[/]" + (" and serves" if info.serving else ""))


@models_app.command("history")
def models_history(
    model: Annotated[str, typer.Argument(help="tenant:name, e.g. demo:load_forecaster")],
    as_json: AsJson = False,
) -> None:
    """Promotions and rollbacks of one model, oldest first: those made with `ems` (who, when, from
    which version, why) and those made in the MLflow UI as far as MLflow keeps them."""
    from dataclasses import asdict

    from core.names import InvalidModelIdError
    from registry.lifecycle import history

    tenant, sep, name = model.partition(":")
    if not sep or ":" in name:
        raise _fail(InvalidModelIdError(f"model {model!r} is not tenant:name (e.g. demo:load_forecaster)"))
    events, unknown = _run(history, _mlflow(), tenant, name)
    if as_json:
        _print_json({"model": model, "events": [asdict(e) for e in events], "not_recoverable": unknown})
        return
    table = Table("when (UTC)", "version", "to", "by", "via", "from version", "reason", title=f"{model} history")
    for e in events:
        when = "-" if e.at is None else datetime.fromtimestamp(e.at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, str(e.version), e.to, e.by, e.source, e.from_version or "-", e.reason or "-")
    console.print(table)
    for line in unknown:
        err_console.print(f"[dim]{line}[/]")


@models_app.command("delete")
def models_delete(
    model_id: ModelId,
    force: Annotated[bool, typer.Option("--force", help="Allow deleting the production version.")] = False,
) -> None:
    """Delete a model version (a production version needs --force)."""
    from registry.lifecycle import delete

    info = _run(delete, _mlflow(), model_id, force)
    console.print(f"deleted {info.id} (was {info.stage})")


# ---------------------------------------------------------------- the AI Hub API
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind; default EMS_API_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default EMS_API_PORT (8003).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Run the AI Hub HTTP API (FastAPI on uvicorn; docs at /docs, OpenAPI at /openapi.json). Bearer
    JWTs are verified against EMS_API_JWKS_URL; without it auth is off, allowed on loopback only."""
    import logging.config
    import tempfile

    import uvicorn

    from service.auth import check_auth_off_allowed
    from service.telemetry import log_config

    cfg = settings()
    host, port = host or cfg.api_host, port or cfg.api_port
    if not cfg.api_jwks_url:
        _run(check_auth_off_allowed, host)
    # A server's output is its log: JSON lines from here on (service.telemetry), in every worker too.
    logs = log_config("debug" if _State.debug else "info")
    logging.config.dictConfig(logs)
    log = logging.getLogger("ems.serve")
    if not cfg.api_jwks_url:
        log.warning("auth off (EMS_API_JWKS_URL unset): loopback only")
    log.info("AI Hub API on http://%s:%s (docs: /docs) with %s worker(s)", host, port, workers)
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's loggers propagate to ours, as JSON
    # /metrics sums the workers' files in a folder this server owns. Both of prometheus_client's names are
    # set: `import feast` points any unset one at a folder of its own, and a value inherited from a process
    # that imported Feast would make servers share (and add up) each other's counts.
    with tempfile.TemporaryDirectory(prefix="ems-api-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROCESS_DIR"] = metrics_dir
        uvicorn.run("service.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_config=logs, timeout_graceful_shutdown=10)


# ---------------------------------------------------------------- users (MLflow basic auth)
users_app = typer.Typer(no_args_is_help=True, help="MLflow users of tenants (a server started with `ems up --auth`).")
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    tenant: Tenant,
    username: Annotated[str | None, typer.Option(help="Login name; default: the tenant id.")] = None,
    db: Annotated[bool, typer.Option("--db", help="Also a database role `tenant_<tenant>` that sees the "
                                     "tenant's rows only (row-level security), same password.")] = False,
    s3: Annotated[bool, typer.Option("--s3", help="Also a read-only key of the local S3 server for the "
                                     "tenant's artifact prefix (printed once).")] = False,
    as_json: AsJson = False,
) -> None:
    """Create a tenant's MLflow user, who reads and promotes that tenant's models only (admin login needed).

    The password comes from EMS_NEW_USER_PASSWORD; otherwise one is generated and printed once. The MLflow user,
    the database role (--db) and the S3 key (--s3) are created together or not at all: after a failure the same
    command can be run again."""
    from registry.access import create_tenant_access

    password = os.environ.get("EMS_NEW_USER_PASSWORD")
    made = _run(create_tenant_access, settings(), tenant, username, password, db=db, s3=s3)
    user, key, shown = made.user, made.s3_key or (None, None), made.user.password
    if as_json:
        _print_json({**user.as_dict(), "password": shown, "database_role": made.database_role,
                     "s3_access_key": key[0], "s3_secret_key": key[1]})
        return
    console.print(f"created MLflow user {user.username} for tenant {user.tenant}; models granted: "
                  f"{', '.join(user.models) or 'none yet'}", markup=False)
    if made.database_role:
        console.print(f"created database role {made.database_role} (row-level security: tenant {tenant} only)",
                      markup=False)
    if key[0]:
        console.print(f"S3 key, read-only on the tenant's artifacts (shown once): EMS_S3_ACCESS_KEY={key[0]} "
                      f"EMS_S3_SECRET_KEY={key[1]}", markup=False, highlight=False)
    if shown:
        console.print(f"password (shown once, stored nowhere): {shown}", markup=False, highlight=False)


@users_app.command("grant")
def users_grant(tenant: Tenant) -> None:
    """Give a tenant's users each of the tenant's models they lack (admin login needed)."""
    from registry.access import grant_tenant_models

    granted = _run(grant_tenant_models, settings().mlflow_tracking_uri, tenant)
    console.print(f"granted: {', '.join(granted)}" if granted else f"tenant {tenant}'s users have all its models",
                  markup=False)


# ---------------------------------------------------------------- pipelines (Dagster, issue 23)
pipelines_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Scheduled pipelines, run here in process.")
app.add_typer(pipelines_app, name="pipelines")
PIPELINES = ("hourly", "daily", "backfill")


@pipelines_app.command("run")
def pipelines_run(
    name: Annotated[str, typer.Argument(help="hourly | daily | backfill")],
    tenant: Annotated[list[str] | None, typer.Option("--tenant", "-t", help="Only these tenants (hourly, daily); "
                                                     "the tenant of the files (backfill).")] = None,
    lookback_hours: Annotated[int, typer.Option(help="hourly: hours scored per asset (1..168).")] = 3,
    sensitivity: Annotated[int, typer.Option(help="hourly: anomaly sensitivity 1..5.")] = 3,
    window_days: Annotated[int, typer.Option(help="daily: backtest window (the challenger's holdout).")] = 7,
    history_days: Annotated[int, typer.Option(help="daily: the challenger's training window.")] = 365,
    margin: Annotated[float, typer.Option(help="daily: day-ahead MAE improvement needed, a share (0..1).")] = 0.02,
    file: Annotated[list[Path] | None, typer.Option("--file", help="backfill: a readings file (repeatable).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="backfill: one column per asset.")] = False,
    columns: Annotated[str | None, typer.Option(help="backfill: as `ems ingest --columns`.")] = None,
    site: Annotated[str | None, typer.Option(help="backfill: as `ems ingest --site`.")] = None,
    start: Annotated[str | None, typer.Option(help="backfill: materialize every view from this time (UTC).")] = None,
    as_json: AsJson = False,
) -> None:
    """Run one pipeline now, in this process (Dagster's in-process executor; retries on transient errors)."""
    from pipelines.run import execute
    from pipelines.runtime import Runtime

    if name not in PIPELINES:
        raise _fail(ValueError(f"pipeline {name!r} is not one of {', '.join(PIPELINES)}"))
    config = {"hourly": {"score": {"tenants": tenant or [], "lookback_hours": lookback_hours,
                                   "sensitivity": sensitivity}},
              "daily": {op: {"tenants": tenant or [], "window_days": window_days, "history_days": history_days,
                             "margin": margin} for op in ("drift", "train_challengers", "backtest", "decide")},
              "backfill": {op: {"files": [str(f) for f in file or []], "tenant": (tenant or [""])[0], "wide": wide,
                                "columns": columns, "site": site, "start": start or ""}
                           for op in ("ingest", "materialize_from")}}[name]
    with console.status(f"running pipeline {name}…"):
        # Dagster's own event log on stderr only with --verbose: a failure is our one error line
        run = _run(execute, name, Runtime(settings()), config, log_level="INFO" if _State.verbose else "CRITICAL")
    if as_json:
        _print_json(run.as_dict())
        return
    table = Table("step", "status", "attempts", "seconds", title=f"pipeline {name}: {run.seconds:.1f} s")
    for step, info in run.steps.items():
        table.add_row(step, info["status"], str(info["attempts"]), f"{info['seconds']:.1f}")
    console.print(table)
    for d in run.outputs.get("decide", []):
        console.print(f"{d['tenant']}: {d['challenger']} {d['decision']}: {d['reason']}", markup=False)
    if "record" in run.outputs:
        console.print(f"alerts: {run.outputs['record']}", markup=False)


alerts_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Anomaly alerts raised by the hourly pipeline.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    tenant: Tenant,
    state: Annotated[str | None, typer.Option(help="open | acknowledged")] = None,
    asset: Annotated[str | None, typer.Option(help="Only this asset.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1..10000).")] = 100,
    as_json: AsJson = False,
) -> None:
    """The tenant's anomaly alerts, newest window first."""
    from warehouse.alerts import list_alerts

    found = _run(list_alerts, settings(), tenant, state=state, asset=asset, limit=limit)
    if as_json:
        _print_json([a.as_dict() for a in found])
        return
    table = Table("id", "asset", "detector", "window (UTC)", "severity", "score", "state", "explanation")
    for a in found:
        table.add_row(str(a.id), a.asset_id, a.detector, f"{a.window_start:%Y-%m-%d %H:%M} - {a.window_end:%H:%M}",
                      a.severity, f"{a.score:.2f}", a.state, escape(a.explanation))
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(
    tenant: Tenant,
    alert_id: Annotated[int, typer.Argument(help="The alert's id (`ems alerts list`).")],
    note: Annotated[str | None, typer.Option(help="Why, what was done.")] = None,
    as_json: AsJson = False,
) -> None:
    """Acknowledge one alert."""
    import getpass

    from warehouse.alerts import acknowledge

    alert = _run(acknowledge, settings(), tenant, alert_id, by=getpass.getuser(), note=note)
    if as_json:
        _print_json(alert.as_dict())
        return
    console.print(f"alert {alert.id} acknowledged by {alert.acknowledged_by} at {alert.acknowledged_at:%Y-%m-%d %H:%M}",
                  markup=False)


@app.command()
def monitor(
    tenant: Tenant,
    days: Annotated[int, typer.Option(help="Target hours of the last N days (1..3650) with actuals.")] = 7,
    plot: Annotated[Path | None, typer.Option(help="Write MAE and coverage per day to this PNG.")] = None,
    to_mlflow: Annotated[bool, typer.Option("--mlflow", help="Also log the pooled scores as metrics of each "
                                            "model version's run.")] = False,
    as_json: AsJson = False,
) -> None:
    """Live accuracy of logged forecasts against actuals, per model, asset and horizon bucket."""
    from inference.accuracy import log_to_mlflow, report
    from inference.accuracy import plot as draw

    table, per_day = _run(report, settings(), tenant, days=days)
    if to_mlflow and len(table):
        _run(log_to_mlflow, _mlflow(), table)
    if plot is not None:
        draw(per_day, plot)
        err_console.print(f"plot written to {plot}")
    if as_json:
        _print_json(json.loads(table.to_json(orient="records")))
        return
    if table.empty:
        console.print(f"no logged forecast of tenant {tenant} has an actual yet (log with `ems forecast --log`)")
        return
    out = Table("model", "asset", "horizon", "rows", "MAE", "MAPE %", "pinball", "coverage", "naive-168 MAE", "skill",
                title=f"{tenant}: live accuracy, last {days} days")
    for r in table.itertuples():
        out.add_row(r.model_id, r.asset_id, r.bucket, str(r.rows), _cell(r.mae), _cell(r.mape), _cell(r.pinball),
                    _cell(r.coverage), _cell(r.naive_168_mae), _cell(r.skill_naive_168))
    console.print(out)


@app.command()
def drift(
    tenant: Tenant,
    recent_days: Annotated[int, typer.Option(help="The last N days (1..90) compared with the reference.")] = 7,
    psi: Annotated[float, typer.Option(help="PSI threshold (> 0).")] = 0.25,
    reference_start: Annotated[datetime | None, typer.Option(help="Reference window start (UTC); default: the "
                                                             "serving forecaster's training window.")] = None,
    reference_end: Annotated[datetime | None, typer.Option(help="Reference window end (UTC).")] = None,
    as_json: AsJson = False,
) -> None:
    """Drift (PSI, nulls) and freshness (feature age, materialization lag) of a tenant's features; records alerts."""
    from inference.drift import Thresholds, check
    from pipelines.runtime import Runtime

    if (reference_start is None) != (reference_end is None):
        raise _fail(ValueError("give both --reference-start and --reference-end, or neither"))
    reference = (reference_start.replace(tzinfo=UTC), reference_end.replace(tzinfo=UTC)) if reference_start else None
    report = _run(check, Runtime(settings()), tenant, reference=reference, recent_days=recent_days,
                  thresholds=Thresholds(psi=psi))
    if as_json:
        _print_json(report.as_dict())
        return
    table = Table("asset", "kind", "subject", "value", "threshold",
                  title=f"{tenant}: recent {report.recent[0]} .. {report.recent[1]} vs {report.reference[0]} .. "
                        f"{report.reference[1]}")
    for c in report.crossings:
        table.add_row(c["asset"] or "-", c["kind"], c["subject"], _cell(c["value"]), _cell(c["threshold"]))
    console.print(table if report.crossings else f"{tenant}: no threshold crossed")


if __name__ == "__main__":
    app()
