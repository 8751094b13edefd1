"""`ems bench`: run every row against the local stack, write JSON + markdown, show the table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import core

QUICK_ASSETS, FULL_ASSETS = 100, 500
MAX_ASSETS, MAX_TRAINING_ROWS = 20_000, 10_000_000


def run(settings, quick: bool = False, out: Path | None = None, only: list[str] | None = None,
        log: Callable[[str], None] = print, step: Callable[[str, int, int], None] | None = None,
        assets: int | None = None, training_rows: list[int] | None = None) -> tuple[list[core.Row], Path, Path]:
    from bench import data as bench_data
    from bench.rows_features import materialize_rows, online_rows, pit_rows
    from bench.rows_serving import ensure_model, serving_rows, startup_rows
    from warehouse.store import get_store

    check_sizes(assets, training_rows)
    ctx = core.Context(settings, quick, settings.home / "bench", log,
                       tuple(sorted(set(training_rows))) if training_rows else None)
    ctx.work.mkdir(parents=True, exist_ok=True)
    store = get_store(settings)
    state: dict = {}

    def data() -> bench_data.DataSet:
        """The 500-asset set (100 with --quick, or --assets), ingested on first use: the cycle group has its
        own tenants."""
        if "data" not in state:
            state["data"] = bench_data.ensure(ctx, assets or (QUICK_ASSETS if quick else FULL_ASSETS))
        return state["data"]

    def model_id() -> str:
        if "model" not in state:
            state["model"] = ensure_model(ctx, data(), store)
        return state["model"]

    def ingest():
        from bench.rows_ingest import ingest_rows

        return ingest_rows(ctx)

    def cycle():
        from bench.rows_cycle import cycle_rows

        return cycle_rows(ctx)

    def http():
        from bench.rows_http import http_rows

        return http_rows(ctx, data(), store, model_id())

    def model_load():
        from bench.rows_model_load import model_load_rows

        return model_load_rows(ctx, model_id())

    def serving():
        from bench.rows_generation_price import generation_price_rows

        return serving_rows(ctx, data(), store, model_id()) + generation_price_rows(ctx, store)

    def scale():
        from bench.rows_dask import dask_rows
        from bench.rows_scale import scale_rows

        return scale_rows(ctx, data(), store, model_id()) + dask_rows(ctx, data(), store)

    groups: list[tuple[str, Callable[[], list[core.Row]]]] = [
        ("startup", lambda: startup_rows(ctx)),
        ("ingest", ingest),
        ("materialize", lambda: materialize_rows(ctx, data(), store)),  # also loads the bench assets online
        ("online", lambda: online_rows(ctx, data(), store)),
        ("serving", serving),  # load, then generation (wind) and price: the bench tenant's unit and zone
        ("http", http),  # `ems serve --workers 2` under load, against the same calls without HTTP
        ("model_load", model_load),
        ("pit", lambda: pit_rows(ctx, data())),
        ("scale", scale),  # Spark local[1]/local[2] against the single-process paths (issue 22)
        ("cycle", cycle),  # its own tenants (bench/data.py History); last: it appends hours on every run
    ]
    groups = select(groups, only)
    rows: list[core.Row] = []
    for i, (name, fn) in enumerate(groups):
        if step:
            step(name, i, len(groups))
        rows += fn()
    if step:
        step("done", len(groups), len(groups))
    described = state["data"].describe() if "data" in state else "cycle tenants only (see the cycle rows' details)"
    js, md = core.write_report(rows, core.meta(quick, described), out or ctx.work / "reports")
    return rows, js, md


def check_sizes(assets: int | None, training_rows: list[int] | None) -> None:
    """--assets and --training-rows are checked before anything runs (one error naming the value and range)."""
    from core.errors import InvalidRangeError

    if assets is not None and not 1 <= assets <= MAX_ASSETS:
        raise InvalidRangeError(f"--assets {assets} is out of range: 1 to {MAX_ASSETS:,} bench assets")
    for n in training_rows or ():
        if not 1_000 <= n <= MAX_TRAINING_ROWS:
            raise InvalidRangeError(f"--training-rows {n} is out of range: 1,000 to {MAX_TRAINING_ROWS:,} entity rows")


def select(groups: list[tuple[str, Callable]], only: list[str] | None) -> list[tuple[str, Callable]]:
    """The groups named in `only` (all without it), in run order, with `materialize` ahead of `online` and
    `serving` and `http`: they read the bench assets from the online store, which materialize loads."""
    if not only:
        return groups
    unknown = sorted(set(only) - {g for g, _ in groups})
    if unknown:
        raise ValueError(f"unknown bench group(s) {', '.join(unknown)}; choose from {', '.join(g for g, _ in groups)}")
    needs_online = {"online", "serving", "http"} & set(only)
    return [g for g in groups if g[0] in only or g[0] == "materialize" and needs_online]
