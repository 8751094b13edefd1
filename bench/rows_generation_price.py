"""Serving rows of the generation (wind) and price forecasts next to the load row (issue 26): the warm
`Client.forecast` call against the floor of the same job, timed in alternation.

Floors: what these forecasters read, by the fewest raw SQL reads on one open connection (they read the
warehouse, not Redis: recent readings and the covariate store), plus their models' raw predict on the
prepared matrix with the same post-processing, so the floor's numbers equal the forecast's
(tests/unit/bench/test_bench_generation_price.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from psycopg import sql

from bench import core
from bench.generation_price import Units

HORIZON = 24
HOUR = pd.Timedelta(hours=1)
REACH = 3  # hours either side of the target hours whose weather forecasts the wind design reads (t-3 .. t+3)

GENERATION_READS = (
    # the unit's capacity and site and the sites of the model's other units (whose forecasts it reads)
    "SELECT asset_id, capacity, site_id FROM assets WHERE tenant_id = %s AND asset_id = ANY(%s)",
    "SELECT bucket, avg_value FROM readings_hourly WHERE tenant_id = %s AND asset_id = %s AND bucket >= %s "
    "AND bucket < %s ORDER BY bucket",
    # per site, per target hour (and the REACH hours either side), the two newest issues by the issue time: the
    # latest and the one before it (ws_prev)
    "SELECT series_id, target_time, issue_time, wind_speed, wind_u, wind_v FROM ("
    " SELECT series_id, target_time, issue_time, wind_speed, wind_u, wind_v,"
    "  row_number() OVER (PARTITION BY series_id, target_time ORDER BY issue_time DESC) AS k FROM covariate_forecasts"
    " WHERE series_id = ANY(%s) AND target_time >= %s AND target_time <= %s AND issue_time <= %s) f WHERE k <= 2",
)
PRICE_ZONE = "SELECT site_id, timezone FROM assets WHERE tenant_id = %s AND asset_id = %s"
PRICE_READ = ("SELECT bucket, avg_value FROM readings_hourly WHERE tenant_id = %s AND asset_id = %s AND bucket >= %s "
              "AND bucket < %s ORDER BY bucket")
# per target hour, the latest covariate issued by ISSUE_HOUR local on the day before the target's local day
PRICE_COVARIATES = sql.SQL(
    "SELECT DISTINCT ON (target_time) target_time, {cols} FROM covariate_forecasts"
    " WHERE series_id = %(site)s AND target_time >= %(start)s AND target_time < %(end)s"
    "  AND issue_time <= (date_trunc('day', target_time AT TIME ZONE %(tz)s) - interval '1 day'"
    "                     + make_interval(hours => %(hour)s)) AT TIME ZONE %(tz)s"
    " ORDER BY target_time, issue_time DESC")


# ------------------------------------------------------------------------------------ raw predicts
def generation_predict(model, X: np.ndarray, horizon: np.ndarray, capacity: float) -> np.ndarray:
    """(n, 4) p10, p50, p90, point in capacity units: the four boosters (registry/generation.GenerationModel's)
    and the unit's own L2 booster on the prepared matrix, clipped to [0, 1], quantiles sorted, the band widened
    per horizon bucket, the point the model's weighted mean (`mix`) of the L2, p50 and the unit's own."""
    from registry.generation import OUTPUTS, bucket

    raw = np.column_stack([model.boosters[o].predict(X, num_threads=1) for o in OUTPUTS]).clip(0, 1)
    mix = getattr(model, "mix", {"point": 1.0})
    point = mix.get("point", 0) * raw[:, 3] + mix.get("p50", 0) * raw[:, 1]
    weight = np.full(len(X), mix.get("point", 0) + mix.get("p50", 0))
    for code, booster in getattr(model, "unit_boosters", {}).items() if mix.get("unit") else ():
        rows = X[:, 0] == code
        point[rows] += mix["unit"] * booster.predict(X[rows, 1:], num_threads=1).clip(0, 1)
        weight[rows] += mix["unit"]
    q = np.sort(raw[:, :3], axis=1)
    d = model.widen[bucket(horizon)]
    q[:, 0] = (q[:, 0] - d).clip(0, 1)
    q[:, 2] = (q[:, 2] + d).clip(0, 1)
    return np.column_stack([np.sort(q, axis=1), point / weight]) * capacity


@dataclass(frozen=True)
class PriceMatrix:
    """The target day's prepared inputs: the linear parts' one design row, the trees' 24 rows and the level
    they are relative to, and the band offsets per hour."""

    linear: np.ndarray
    tree: np.ndarray
    level: np.ndarray
    low: np.ndarray
    high: np.ndarray


def price_matrix(pyfunc, rows: pd.DataFrame) -> PriceMatrix:
    """PriceMatrix of hourly rows ending with the target day (registry/train_price.PricePyfunc's input)."""
    from registry import price

    days = price.forecast_days(rows, pyfunc.exog)
    idx = [len(days) - 1]
    tree, level = price.tree_design(days, idx)
    low, high = pyfunc.forecaster.bands()
    return PriceMatrix(price.lear_design(days, idx), tree.to_numpy(dtype=float), level, low, high)


def price_predict(pyfunc, m: PriceMatrix) -> np.ndarray:
    """(24, 4) p10, p50, p90, point: the weighted parts (the linear windows' predict, the LightGBM booster's
    raw predict) on the prepared matrix, plus the band offsets."""
    f = pyfunc.forecaster
    point = np.zeros(len(m.level))
    for part, w in f.weights.items():
        if not w:
            continue
        if part == "tree":
            point += w * (f.models[part].booster_.predict(m.tree, num_threads=1) + m.level)
        else:
            point += w * np.mean([window.predict(m.linear) for window in f.models[part]], axis=0)[0]
    return np.column_stack([point + m.low, point, point + m.high, point])


# ------------------------------------------------------------------------------------------- rows
def generation_row(ctx, client, units: Units, model_id: str) -> core.Row:
    from inference.generation import inputs
    from registry.generation import design
    from warehouse.db import open_connection
    from warehouse.generation import sites

    t = units.wind_issue

    def ours():
        return client.forecast(units.tenant, units.wind, HORIZON, forecast_type="generation", as_of=t)

    f = ours()
    missing = [w for w in f.warnings if "weather forecast" in w]
    if f.model_id != model_id or missing:
        raise AssertionError(f"bench generation forecast came from {f.model_id} ({missing}), expected {model_id} "
                             "with every weather input")
    model = client.models.version(model_id).python_model.model
    others = [u for u in model.units if u != units.wind]  # the model's other units: their sites' forecasts are inputs
    other_sites = list(sites(ctx.settings, units.tenant, others).values())
    rows, _ = inputs(ctx.settings, None, units.tenant, units.wind, units.wind_site, units.capacity, t, HORIZON,
                     other_sites)
    X = design(rows, model.units)
    matrix, horizon = X[model.features].to_numpy(dtype=float), X["horizon"].to_numpy()
    same = generation_predict(model, matrix, horizon, units.capacity)
    np.testing.assert_allclose(same, f.frame[["p10", "p50", "p90", "point"]].to_numpy(), rtol=1e-9, atol=1e-9)
    conn = open_connection(ctx.settings, autocommit=True)  # one open connection, as the client keeps one
    args = ((units.tenant, [units.wind, *others]), (units.tenant, units.wind, t - 7 * HOUR, t),
            ([units.wind_site, *other_sites], t - REACH * HOUR, t + (HORIZON - 1 + REACH) * HOUR, t))

    def floor():
        for query, a in zip(GENERATION_READS, args, strict=True):
            conn.execute(query, a).fetchall()
        generation_predict(model, matrix, horizon, units.capacity)

    try:
        a, b = core.paired(ours, floor, ctx.reps, ctx.warmup)
    finally:
        conn.close()
    return core.ratio_row(
        f"forecast call p99, generation (wind), 1 unit, {HORIZON} h x p10/p50/p90 (+ point), vs floor", "ms",
        core.p(a, 99), core.p(b, 99), max_ratio=2.0,
        floor_desc="3 raw SQL reads on one open connection (the unit's capacity and site and the model's other units' "
                   "sites; its last 7 hourly means; per site, target hour and the 3 hours either side the two newest "
                   "weather forecasts issued by the issue time, ROW_NUMBER() OVER (PARTITION BY series_id, "
                   "target_time)) + the 4 LightGBM boosters and the unit's own L2 booster predicting the "
                   "same 24 prepared rows, clipped, sorted, widened and mixed as the model does",
        details={"ours": core.summary(a), "floor": core.summary(b), "model": model_id, "unit": units.wind,
                 "other_units": others, "issue_time": t.isoformat()})


def price_row(ctx, client, units: Units, model_id: str) -> core.Row:
    from warehouse import market
    from warehouse.db import open_connection

    def ours():
        return client.forecast(units.tenant, units.zone, HORIZON, forecast_type="price")

    f = ours()
    if f.model_id != model_id or len(f.frame) != HORIZON:
        raise AssertionError(f"bench price forecast came from {f.model_id} with {len(f.frame)} hours, expected "
                             f"{model_id} with {HORIZON}")
    pyfunc = client.models.version(model_id).python_model
    t = pd.Timestamp(f.feature_time)
    rows, _ = market.frame(ctx.settings, units.tenant, units.zone, units.zone_site, units.zone_tz, until=t,
                           extra_day=True)
    m = price_matrix(pyfunc, market.trailing_days(rows)[["timestamp", "price", *pyfunc.exog]])
    np.testing.assert_allclose(price_predict(pyfunc, m), f.frame[["p10", "p50", "p90", "point"]].to_numpy(),
                               rtol=1e-9, atol=1e-9)
    day = pd.Timestamp(f.frame["timestamp"].iloc[0]).tz_convert(units.zone_tz)  # the target day's first hour
    first = (day - pd.Timedelta(days=7)).tz_convert("UTC")  # d-7: the oldest day the model reads
    covariates = PRICE_COVARIATES.format(cols=sql.SQL(", ").join(map(sql.Identifier, pyfunc.exog)))
    cov_args = {"site": units.zone_site, "start": first, "end": day + pd.Timedelta(days=1), "tz": units.zone_tz,
                "hour": market.ISSUE_HOUR}
    conn = open_connection(ctx.settings, autocommit=True)

    def floor():
        conn.execute(PRICE_ZONE, (units.tenant, units.zone)).fetchall()
        conn.execute(PRICE_READ, (units.tenant, units.zone, first, day.tz_convert("UTC"))).fetchall()
        conn.execute(covariates, cov_args).fetchall()
        price_predict(pyfunc, m)

    try:
        got = conn.execute(covariates, cov_args).fetchall()
        if len(got) != 8 * 24:
            raise AssertionError(f"the price floor read {len(got)} covariate hours, expected 8 days x 24")
        a, b = core.paired(ours, floor, ctx.reps, ctx.warmup)
    finally:
        conn.close()
    return core.ratio_row(
        f"forecast call p99, price, 1 zone, next day's {HORIZON} h x p10/p50/p90 (+ point), vs floor", "ms",
        core.p(a, 99), core.p(b, 99), max_ratio=2.0,
        floor_desc="3 raw SQL reads on one open connection (the zone's site and time zone; its hourly prices of the "
                   "7 days before the target day; per hour of those days and the target day the latest load and wind "
                   "forecast issued by 10:00 local the day before, DISTINCT ON (target_time)) + the model's parts on "
                   "the prepared day (ridge windows' predict on the one design row, the LightGBM booster's raw "
                   "predict on the 24 rows), weighted, plus the band offsets",
        details={"ours": core.summary(a), "floor": core.summary(b), "model": model_id, "zone": units.zone,
                 "issue_time": t.isoformat()})


def generation_price_rows(ctx, store) -> list[core.Row]:
    from bench import generation_price
    from inference.client import Client

    units = generation_price.ensure(ctx)
    gen_id, price_id = generation_price.ensure_models(ctx, store, units)
    client = Client(ctx.settings, store)
    return [generation_row(ctx, client, units, gen_id), price_row(ctx, client, units, price_id)]
