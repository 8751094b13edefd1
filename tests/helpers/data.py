"""Small slices of the real data sets in data/ (see data/README.md), written where a test needs them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.settings import ROOT

DATA = ROOT / "data"
TETOUAN = DATA / "tetouan_power_10min.csv.gz"
PJM_AEP = DATA / "pjm_aep_hourly.csv.gz"


def tetouan_slice(target: Path, start: str = "2017-01-01", end: str = "2017-01-29") -> Path:
    df = pd.read_csv(TETOUAN, dtype=str)
    df[(df["timestamp"] >= start) & (df["timestamp"] < end)].to_csv(target, index=False)
    return target


def pjm_slice(target: Path, start: str = "2016-10-20", end: str = "2016-11-20") -> Path:
    """Around the 2016 fall-back, whose hour-ending 02:00 label appears twice."""
    df = pd.read_csv(PJM_AEP, dtype=str)
    df[(df["timestamp"] >= start) & (df["timestamp"] < end)].to_csv(target, index=False)
    return target


def zone1(target: Path, start: str, end: str, spike: pd.Timestamp | None = None) -> Path:
    """Real Tetouan zone 1 readings in [start, end) as a tidy CSV; the hour `spike` at 3x its value."""
    f = pd.read_csv(TETOUAN, usecols=["timestamp", "zone1_power_consumption"])
    f = f[(f["timestamp"] >= start) & (f["timestamp"] < end)].rename(columns={"zone1_power_consumption": "value"})
    if spike is not None:
        t = pd.to_datetime(f["timestamp"])
        f.loc[(t >= spike) & (t < spike + pd.Timedelta(hours=1)), "value"] *= 3
    f.insert(0, "asset_id", "zone1")
    f.to_csv(target, index=False)
    return target


def promoted_30min_model(settings, store, tenant: str, asset: str = "zone2"):
    """A 30-minute load model (few rounds) of `asset`'s refreshed 10-minute readings, in production, its step rows
    materialized up to 2017-06-08 (the tests' Tetouan slices end there): the TrainResult."""
    from datetime import UTC, datetime

    from registry import lifecycle
    from registry.train_step import StepConfig, train
    from warehouse.store import materialize

    cfg = StepConfig(holdout_days=7, issue_every_h=12, num_boost_round=40, sampled_horizons=12, calibration_days=7)
    result = train(settings, store, tenant, 30, [asset], cfg=cfg)
    lifecycle.promote(lifecycle.client(settings.mlflow_tracking_uri), result.model_id, "production", force=True,
                      reason="test model (few rounds)")
    materialize(settings, end=datetime(2017, 6, 8, tzinfo=UTC), store=store)
    return result
