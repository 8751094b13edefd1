"""Bench data: many assets derived from the real series in data/, not random noise.

Asset i takes one of the five real hourly series (PJM AEP, PJM PJME, Tetouan zones 1-3 as hourly
means), a 90-day window starting at a different point of that series' history, scaled by a fixed
per-asset factor (0.1x-10x, so assets differ in size as meters and feeders do), placed on a common
window that starts after all demo data (2019-01-07 UTC). The tidy CSV is cached in the bench folder
and ingested once as tenant `bench` through `ems ingest` code; later runs reuse what is there and
ingest only the assets still missing, so a full run after a quick one adds 450 assets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.settings import ROOT

TENANT = "bench"
START = pd.Timestamp("2019-01-07", tz="UTC")  # a Monday after the last demo reading
DAYS = 90
SOURCES = ("pjm_aep", "pjm_pjme", "zone1", "zone2", "zone3")


@dataclass(frozen=True)
class DataSet:
    tenant: str
    assets: list[str]
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive: end of the last hour
    hourly_rows: int

    def describe(self) -> str:
        return (f"tenant {self.tenant}: {len(self.assets)} assets x {DAYS} days hourly = {self.hourly_rows:,} rows "
                f"({self.start:%Y-%m-%d} .. {self.end:%Y-%m-%d}), derived from PJM AEP/PJME and Tetouan zones 1-3")


def asset_id(i: int) -> str:
    return f"b{i:04d}"


def _real_series() -> dict[str, np.ndarray]:
    """The five real hourly series (values only, hourly, gaps interpolated)."""
    out = {}
    for name, file in (("pjm_aep", "pjm_aep_hourly.csv.gz"), ("pjm_pjme", "pjm_pjme_hourly.csv.gz")):
        frame = pd.read_csv(ROOT / "data" / file)
        series = pd.Series(frame.iloc[:, 1].to_numpy(float), index=pd.to_datetime(frame.iloc[:, 0]))
        series = series[~series.index.duplicated()].sort_index().asfreq("h").interpolate(limit_direction="both")
        out[name] = series.to_numpy()
    tet = pd.read_csv(ROOT / "data" / "tetouan_power_10min.csv.gz")
    stamps = pd.to_datetime(tet["timestamp"])
    for zone in ("zone1", "zone2", "zone3"):
        hourly = pd.Series(tet[f"{zone}_power_consumption"].to_numpy(float), index=stamps).resample("h").mean()
        out[zone] = hourly.interpolate(limit_direction="both").to_numpy()
    return out


def frame_for(assets: range, real: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Tidy readings (asset_id, timestamp, value) of the given asset numbers."""
    real = real or _real_series()
    hours = DAYS * 24
    stamps = pd.date_range(START, periods=hours, freq="h")
    parts = []
    for i in assets:
        source = real[SOURCES[i % len(SOURCES)]]
        rng = np.random.default_rng(i)
        offset = int(rng.integers(0, len(source) - hours))
        scale = float(10 ** rng.uniform(-1, 1))
        parts.append(pd.DataFrame({"asset_id": asset_id(i), "timestamp": stamps,
                                   "value": np.round(source[offset:offset + hours] * scale, 4)}))
    return pd.concat(parts, ignore_index=True)


def ensure(ctx, n_assets: int) -> DataSet:
    """Tenant `bench` with assets b0000..b{n-1}, each with 90 days of hourly readings and the hourly
    aggregate refreshed. Idempotent; ingests only the missing assets."""
    from warehouse.db import connect
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh

    wanted = [asset_id(i) for i in range(n_assets)]
    hours = DAYS * 24
    with connect(ctx.settings) as conn:
        complete = {a for a, n in conn.execute(
            "SELECT asset_id, count(*) FROM readings_hourly WHERE tenant_id = %s AND asset_id = ANY(%s) "
            "GROUP BY asset_id", (TENANT, wanted)).fetchall() if n == hours}
    missing = [i for i, a in enumerate(wanted) if a not in complete]
    if missing:
        ctx.log(f"bench data: generating and ingesting {len(missing)} assets (cached for later runs)")
        path = Path(ctx.work) / f"bench_assets_{missing[0]}_{missing[-1]}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame_for(range(missing[0], missing[-1] + 1)).to_csv(path, index=False)
        ingest_readings(ctx.settings, path, TENANT)
        refresh(ctx.settings)
        path.unlink()
    return DataSet(TENANT, wanted, START, START + pd.Timedelta(days=DAYS), n_assets * hours)


# ------------------------------------------------------------------------------------ cycle tenants
# The hourly-cycle rows (bench/rows_cycle.py) need long histories that keep growing: each run appends
# hours after the latest one stored. Their tenants are named for their size, so sizes never mix.
CYCLE_END = pd.Timestamp("2024-01-01", tz="UTC")  # generated history ends here; cycles append after it
CYCLE_CHUNK_ROWS = 2_000_000  # rows per generated file (bounded memory in ingest's validation)


@dataclass(frozen=True)
class History:
    """A cycle tenant: `n_assets` assets with `days` of hourly readings ending at CYCLE_END."""

    n_assets: int
    days: int

    @property
    def tenant(self) -> str:
        return f"cycle_{self.n_assets}a_{self.days}d"

    @property
    def assets(self) -> list[str]:
        return [cycle_asset_id(i) for i in range(self.n_assets)]

    @property
    def start(self) -> pd.Timestamp:
        return CYCLE_END - pd.Timedelta(days=self.days)

    @property
    def hours(self) -> int:
        return self.days * 24

    def hour_index(self, ts: pd.Timestamp) -> int:
        """Position of the hour starting at `ts` in every asset's series (0 = the first generated hour)."""
        return int((ts - self.start) // pd.Timedelta(hours=1))

    def frame(self, assets: list[int], first: pd.Timestamp, n_hours: int, real: dict[str, np.ndarray]) -> pd.DataFrame:
        """Tidy readings (asset_id, timestamp, value) of the asset numbers for the n hours from `first`."""
        stamps = pd.date_range(first, periods=n_hours, freq="h")
        k = self.hour_index(first)
        return pd.DataFrame({
            "asset_id": np.repeat([cycle_asset_id(i) for i in assets], n_hours),
            "timestamp": np.tile(stamps, len(assets)),
            "value": np.concatenate([cycle_values(i, k, n_hours, real) for i in assets]) if assets else [],
        })

    def describe(self) -> str:
        return (f"tenant {self.tenant}: {self.n_assets:,} assets x {self.days} days hourly "
                f"({self.start:%Y-%m-%d} .. {CYCLE_END:%Y-%m-%d}, then one hour per cycle)")


def cycle_asset_id(i: int) -> str:
    return f"c{i:05d}"


def cycle_values(i: int, first: int, n: int, real: dict[str, np.ndarray]) -> np.ndarray:
    """Hours first..first+n-1 of cycle asset i: one of the five real series from the asset's own offset,
    wrapping round at the series' end (two years is longer than Tetouan's one, and cycles keep appending),
    times the asset's own factor (0.1x-10x). Hour k has the same value whichever call produces it."""
    source = real[SOURCES[i % len(SOURCES)]]
    rng = np.random.default_rng(1_000_000 + i)  # other seeds than the 90-day set: other windows
    offset = int(rng.integers(0, len(source)))
    scale = float(10 ** rng.uniform(-1, 1))
    return np.round(source[(offset + first + np.arange(n)) % len(source)] * scale, 4)


def ensure_history(ctx, history: History, store) -> History:
    """Generate and ingest (through `ems ingest` code, in files of about CYCLE_CHUNK_ROWS rows) the assets
    of a cycle tenant that are not stored yet, refresh after each file, and materialize at the end, so the
    timed cycles start from a settled tenant. Idempotent: an asset counts as stored when its first and last
    generated hour are (one file is one transaction)."""
    from warehouse.db import connect
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh
    from warehouse.store import materialize

    last = history.start + pd.Timedelta(hours=history.hours - 1)
    with connect(ctx.settings) as conn:
        stored = {a for (a,) in conn.execute(
            "SELECT a FROM unnest(%(assets)s::text[]) AS a"
            " WHERE EXISTS (SELECT 1 FROM readings r WHERE r.tenant_id = %(tenant)s AND r.asset_id = a"
            "               AND r.ts = %(first)s)"
            "   AND EXISTS (SELECT 1 FROM readings r WHERE r.tenant_id = %(tenant)s AND r.asset_id = a"
            "               AND r.ts = %(last)s)",
            {"assets": history.assets, "tenant": history.tenant, "first": history.start, "last": last}).fetchall()}
    missing = [i for i, a in enumerate(history.assets) if a not in stored]
    if not missing:
        return history
    per_file = max(1, CYCLE_CHUNK_ROWS // history.hours)
    files = [missing[k:k + per_file] for k in range(0, len(missing), per_file)]
    real = _real_series()
    folder = Path(ctx.work) / "cycle"
    folder.mkdir(parents=True, exist_ok=True)
    for n, chunk in enumerate(files, 1):
        ctx.log(f"cycle data: {history.tenant}: file {n}/{len(files)}, {len(chunk)} assets x {history.hours:,} h "
                "(generated once, reused by later runs)")
        path = folder / f"{history.tenant}_{chunk[0]}.parquet"
        history.frame(chunk, history.start, history.hours, real).to_parquet(path, index=False)
        try:
            ingest_readings(ctx.settings, path, history.tenant)
        finally:
            path.unlink()
        refresh(ctx.settings)
    ctx.log(f"cycle data: {history.tenant}: materializing the new assets")
    materialize(ctx.settings, store=store)
    return history
