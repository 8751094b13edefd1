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

from stack.settings import ROOT

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
