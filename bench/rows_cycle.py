"""Hourly-cycle rows: one new hour of readings for every asset through `ems ingest` code, then `ems refresh`
and `ems materialize` (their Python entry points), on tenants with long histories, against the raw writes
such a cycle needs at least: COPY of the new readings into a scratch table, INSERT of the feature rows the
cycle adds or changes into scratch tables with the feature relations' columns, pipelined HSET of every
asset's newest values (Feast's encoding) into a Redis database nobody reads.

Tenants (bench/data.py History) are generated once and keep growing: every cycle appends the hour after
the latest one stored, so a re-run just carries on. Sizes: 1,000 assets x 2 years vs 3 months (`--quick`:
200 assets x 6 vs 2 months); EMS_BENCH_CYCLE_ASSETS=5000 (or a comma-separated list) adds a row per size
on a 3-month tenant, outside the default run.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import core
from bench.cycle_floor import Floor, select_features
from bench.data import History, _real_series, ensure_history

ENV = "EMS_BENCH_CYCLE_ASSETS"
SCALE_DAYS = 90
MAX_RATIO, MAX_SECONDS, HISTORY_RATIO = 3.0, 5.0, 1.3
LATE_EVERY, LATE_AGE = 10, 30  # every 10th asset gets a late hour that many hours before the new one
LAGS, ROLLING = "load_lags", "load_rolling"  # views checked in Redis (the cycle tenants have no weather)
HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Sizes:
    assets: int
    long_days: int
    short_days: int


FULL, QUICK = Sizes(1000, 730, 90), Sizes(200, 180, 60)


def extra_sizes(value: str | None) -> list[int]:
    """Asset counts asked for by EMS_BENCH_CYCLE_ASSETS ("5000" or "2000,5000")."""
    out = []
    for part in (value or "").split(","):
        if part.strip():
            if not part.strip().isdigit() or int(part) < 1:
                raise ValueError(f"{ENV}={value!r}: give asset counts such as 5000 or 2000,5000")
            out.append(int(part))
    return out


def late_plan(latest: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(late hour, new hour): the late hour follows the latest stored one and is withheld for the late
    assets while the LATE_AGE - 1 hours after it arrive; then it comes in with the new hour."""
    late = latest + HOUR
    return late, late + LATE_AGE * HOUR


def late_assets(n_assets: int) -> list[int]:
    return list(range(0, n_assets, LATE_EVERY))


def close(a, b) -> bool:
    """Feature values equal up to float summation order (None = NULL)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def changed_rows(before: dict[tuple, tuple], after: dict[tuple, tuple]) -> list[tuple]:
    """Keys of `after` that are new or whose features differ from `before` (key -> feature values)."""
    return [k for k, v in after.items()
            if k not in before or not all(close(x, y) for x, y in zip(before[k], v, strict=True))]


class Cycles:
    """Runs cycles (and their floors, with `floor`'s scratch tables) against one stack."""

    def __init__(self, ctx, store, floor: Floor | None = None):
        self.ctx, self.store, self.real = ctx, store, _real_series()
        self.folder = Path(ctx.work) / "cycle"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.views = hourly_views(store)
        self.floor = floor

    def connect(self):
        from warehouse.db import connect

        return connect(self.ctx.settings)

    # --------------------------------------------------------------- SQL helpers
    def relation_rows(self, tenant: str, assets: list[str], lo: pd.Timestamp, hi: pd.Timestamp) -> dict[str, dict]:
        """Per hourly view: (tenant, asset, event time) -> features, for event times lo..hi (inclusive)."""
        out = {}
        with self.connect() as conn:
            for fv in self.views:
                rows = conn.execute(select_features(fv, "tenant_id = %s AND asset_id = ANY(%s) AND event_timestamp "
                                                        "BETWEEN %s AND %s"), (tenant, assets, lo, hi)).fetchall()
                out[fv.name] = {(r[0], r[1], r[-1]): tuple(r[2:-1]) for r in rows}
        return out

    def latest(self, history: History) -> pd.Timestamp:
        """Start of the latest hour stored for the tenant (one index probe per asset)."""
        with self.connect() as conn:
            (ts,) = conn.execute(
                "SELECT max((SELECT max(ts) FROM readings r WHERE r.tenant_id = %s AND r.asset_id = a))"
                " FROM unnest(%s::text[]) AS a", (history.tenant, history.assets)).fetchone()
        return pd.Timestamp(ts).tz_convert("UTC").floor("h")

    # --------------------------------------------------------------- the project's cycle
    def cycle(self, history: History, frame: pd.DataFrame) -> dict[str, float]:
        """ingest (a CSV, as `ems ingest` reads it) + refresh + materialize; seconds per phase and total."""
        from warehouse.ingest import ingest_readings
        from warehouse.refresh import refresh
        from warehouse.store import materialize

        path = self.folder / f"{history.tenant}_{frame['timestamp'].max():%Y%m%dT%H}.csv"
        frame.to_csv(path, index=False)
        try:
            t0 = time.perf_counter()
            report = ingest_readings(self.ctx.settings, path, history.tenant)
            t1 = time.perf_counter()
            refresh(self.ctx.settings)
            t2 = time.perf_counter()
            materialize(self.ctx.settings, store=self.store)
            t3 = time.perf_counter()
        finally:
            path.unlink()
        if (report.inserted, report.rejected) != (len(frame), 0):
            raise RuntimeError(f"cycle ingest of {history.tenant} stored {report.inserted} of {len(frame)} rows: "
                               f"{report}")
        return {"ingest": t1 - t0, "refresh": t2 - t1, "materialize": t3 - t2, "total": t3 - t0}

    def online(self, view: str, features: list[str], tenant: str, assets: list[str]) -> dict[str, list]:
        """What Feast's own online read returns for the assets (with `<feature>__ts` event times)."""
        refs = [f"{view}:{f}" for f in features]
        rows = [{"tenant_id": tenant, "asset_id": a} for a in assets]
        return self.store.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)

    def new_hour_online(self, history: History, new: pd.Timestamp, frame: pd.DataFrame) -> int:
        """Assets whose Redis values are the new hour's: lag_1h = its reading, both views stamped its end."""
        end = int((new + HOUR).timestamp())
        got = self.online(LAGS, ["lag_1h"], history.tenant, history.assets)
        rolled = self.online(ROLLING, ["hours_24h"], history.tenant, history.assets)
        want = dict(zip(frame["asset_id"], frame["value"], strict=True))
        rows = zip(got["asset_id"], got["lag_1h"], got["lag_1h__ts"], rolled["hours_24h__ts"], strict=True)
        return sum(1 for a, v, ts, ts2 in rows if ts == ts2 == end and close(v, want[a]))

    # --------------------------------------------------------------- one measured cycle
    def hourly(self, history: History, with_floor: bool = True, check: bool = True) -> dict:
        """Append the next hour for every asset and run the cycle; then (untimed) count the assets whose new
        hour is in Redis and time the floor on the rows the cycle added."""
        new = self.latest(history) + HOUR
        frame = history.frame(list(range(history.n_assets)), new, 1, self.real)
        phases = self.cycle(history, frame)
        out = {"hour": new.isoformat(), "phases_s": {k: round(v, 3) for k, v in phases.items()},
               "seconds": phases["total"]}
        if check:
            out["in_redis"] = self.new_hour_online(history, new, frame)
        if with_floor:
            added = self.relation_rows(history.tenant, history.assets, new + HOUR, new + HOUR)
            out["floor_s"] = self.floor.seconds(history.tenant, frame, added, added)
            out["feature_rows_written"] = sum(len(v) for v in added.values())
        return out

    def late(self, history: History) -> dict:
        """A late hour for every LATE_EVERY-th asset, LATE_AGE hours before the new hour, in one cycle with the
        new hour. First (untimed) the hours in between arrive with the late hour withheld for those assets."""
        everyone, late_ids = list(range(history.n_assets)), late_assets(history.n_assets)
        late, new = late_plan(self.latest(history))
        between = history.frame(everyone, late, LATE_AGE, self.real)
        held = between["asset_id"].isin([history.assets[i] for i in late_ids]) & (between["timestamp"] == late)
        self.cycle(history, between[~held])
        names = [history.assets[i] for i in late_ids]
        before = self.relation_rows(history.tenant, names, late + HOUR, new + HOUR)
        frame = pd.concat([history.frame(everyone, new, 1, self.real), between[held]], ignore_index=True)
        phases = self.cycle(history, frame)
        after = self.relation_rows(history.tenant, names, late + HOUR, new + HOUR)
        newest = self.relation_rows(history.tenant, history.assets, new + HOUR, new + HOUR)
        written = {v: {**newest[v], **{k: after[v][k] for k in changed_rows(before[v], after[v])}} for v in after}
        out = {"late_hour": late.isoformat(), "hour": new.isoformat(), "late_assets": len(names),
               "phases_s": {k: round(v, 3) for k, v in phases.items()}, "seconds": phases["total"],
               "late_in_redis": self.late_online(history, names, new, newest[ROLLING]),
               "feature_rows_written": sum(len(v) for v in written.values())}
        out["floor_s"] = self.floor.seconds(history.tenant, frame, written, newest)
        return out

    def late_online(self, history: History, names: list[str], new: pd.Timestamp, newest: dict) -> int:
        """Late assets whose Redis rolling features equal the relation's row for the new hour, where that row
        counts the late hour (hours_168h = the hourly buckets in its window)."""
        fv = next(v for v in self.views if v.name == ROLLING)
        features = [f.name for f in fv.features]
        got = self.online(ROLLING, features, history.tenant, names)
        with self.connect() as conn:
            counts = dict(conn.execute(
                "SELECT asset_id, count(*) FROM readings_hourly WHERE tenant_id = %s AND asset_id = ANY(%s)"
                " AND bucket > %s AND bucket <= %s GROUP BY asset_id",
                (history.tenant, names, new - 168 * HOUR, new)).fetchall())
        end = new + HOUR
        ok = 0
        for i, a in enumerate(names):
            want = newest.get((history.tenant, a, end))
            if want is None or want[features.index("hours_168h")] != counts.get(a):
                continue
            if got[f"{features[0]}__ts"][i] == int(end.timestamp()) and all(
                    close(got[f][i], w) for f, w in zip(features, want, strict=True)):
                ok += 1
        return ok


def hourly_views(store) -> list:
    """The online views with a TTL: the hourly feature relations a cycle writes."""
    return [v for v in store.list_batch_feature_views() if v.online and v.ttl]


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _checked(row: core.Row, seen: int, total: int, what: str) -> core.Row:
    row.passed = row.passed and seen == total
    row.target += f"; {what} in Redis for all {total:,} (was {seen:,})"
    return row


FLOOR_DESC = ("COPY of the same new readings into a scratch table with readings' columns and indexes + INSERT ... "
              "SELECT FROM unnest of the feature rows the cycle {what} into scratch tables with the relations' "
              "columns and primary key, one transaction + Feast's ValueProto serialization and pipelined HSET of "
              "every asset's newest row per hourly view into a scratch Redis database; inputs built beforehand")


def cycle_rows(ctx) -> list[core.Row]:
    from warehouse.store import get_store

    store = get_store(ctx.settings)
    size = QUICK if ctx.quick else FULL
    long_h, short_h = History(size.assets, size.long_days), History(size.assets, size.short_days)
    extra = [History(n, SCALE_DAYS) for n in extra_sizes(os.environ.get(ENV))]
    for h in (long_h, short_h, *extra):
        ensure_history(ctx, h, store)
    reps = 2 if ctx.quick else 3
    with Floor(ctx, store, hourly_views(store)) as floor:
        bench = Cycles(ctx, store, floor)
        ctx.log("cycle: warm-up cycles (one hour each, not counted)")
        for h in (long_h, short_h):
            bench.hourly(h, with_floor=False, check=False)
        long_runs, short_runs = [], []
        for i in range(reps):  # alternate the two tenants, so machine noise hits both alike
            ctx.log(f"cycle: hourly cycle {i + 1}/{reps} on {long_h.tenant} and {short_h.tenant}")
            long_runs.append(bench.hourly(long_h))
            short_runs.append(bench.hourly(short_h, with_floor=False))
        ctx.log(f"cycle: late hour for {len(late_assets(long_h.n_assets))} assets of {long_h.tenant}")
        late = bench.late(long_h)
        scaled = []
        for h in extra:
            ctx.log(f"cycle: {h.tenant} ({ENV})")
            bench.hourly(h, with_floor=False, check=False)
            scaled.append((h, [bench.hourly(h) for _ in range(reps)]))
    n, years = size.assets, f"{size.long_days} days"
    rows = [_checked(core.ratio_row(
        f"hourly cycle: ingest 1 h + refresh + materialize, {n:,} assets x {years}", "s",
        _median(long_runs, "seconds"), _median(long_runs, "floor_s"), max_ratio=MAX_RATIO, max_abs=MAX_SECONDS,
        floor_desc=FLOOR_DESC.format(what="added"),
        details={"tenant": long_h.tenant, "runs": long_runs}), min(r["in_redis"] for r in long_runs), n,
        "new hour")]
    rows.append(core.ratio_row(
        f"hourly cycle history independence: {years} vs {size.short_days} days ({n:,} assets)", "s",
        _median(long_runs, "seconds"), _median(short_runs, "seconds"), max_ratio=HISTORY_RATIO,
        floor_desc=f"the same cycle on tenant {short_h.tenant} ({size.short_days} days of history), alternated "
                   "with the long one; both tenants share one database, so a cost that grows with the whole "
                   "database rather than the tenant's history shows in the first row, not in this ratio",
        details={"tenant": short_h.tenant, "runs": short_runs}))
    k = late["late_assets"]
    rows.append(_checked(core.ratio_row(
        f"late hour ({LATE_AGE} h old) for {k:,} of {n:,} assets + hourly cycle, {years}", "s", late["seconds"],
        late["floor_s"], max_ratio=MAX_RATIO, max_abs=MAX_SECONDS,
        floor_desc=FLOOR_DESC.format(what="added or changed (compared before/after)"),
        details={"tenant": long_h.tenant, **late}), late["late_in_redis"], k, "late assets' rolling features"))
    for h, runs in scaled:
        rows.append(_checked(core.ratio_row(
            f"hourly cycle, {h.n_assets:,} assets x {h.days} days ({ENV})", "s", _median(runs, "seconds"),
            _median(runs, "floor_s"), max_ratio=MAX_RATIO, floor_desc=FLOOR_DESC.format(what="added"),
            details={"tenant": h.tenant, "runs": runs}), min(r["in_redis"] for r in runs), h.n_assets, "new hour"))
    return rows
