"""Evaluation of the intervals (README, Evaluation: Intervals), on a running stack.

- Sub-hourly: a series at a finer step is ingested as it is, rolled up by `ems refresh`, a step model trained
  (registry/train_step.py, fixed settings, nothing chosen on the held-out days) and its held-out forecasts
  (one a day, every step to 168 h) scored against seasonal-naive at the same step on the same rows.
- Daily: the hourly model's held-out forecasts aggregated to local days (registry/daily.py). The within-day error
  correlation is chosen on validation days (the model trained up to the validation days and held out on them),
  then the daily p10-p90 coverage is checked on the test days with a model trained up to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.settings import Settings
from registry import daily
from registry.design import HOUR

logger = logging.getLogger(__name__)
RHOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class StepCase:
    label: str
    path: Path
    columns: str  # ingest spec asset=column,...
    interval: int


def step_case(settings: Settings, store, tenant: str, case: StepCase, cfg) -> dict:
    """Ingest, refresh, train at the case's step; the held-out scores and the worst days."""
    from registry.train_step import train
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh

    ingest_readings(settings, case.path, tenant, wide=True, columns=case.columns)
    refresh(settings)
    assets = [c.split("=")[0] for c in case.columns.split(",")]
    result = train(settings, store, tenant, case.interval, assets, cfg=cfg)
    per_asset = {}
    for asset, part in result.holdout.groupby("asset_id"):
        day = part["horizon_steps"] <= 24 * 60 // case.interval
        both = part["same_step_1d"].notna() & part["same_step_7d"].notna()
        rows = part[day & both]
        per_asset[asset] = {"mae": float((rows["p50"] - rows["y"]).abs().mean()),
                            "naive_1d": float((rows["same_step_1d"] - rows["y"]).abs().mean()),
                            "naive_7d": float((rows["same_step_7d"] - rows["y"]).abs().mean()),
                            "coverage": float(((rows["y"] >= rows["p10"]) & (rows["y"] <= rows["p90"])).mean()),
                            "rows": len(rows)}
    return {"case": case.label, "model_id": result.model_id, "metrics": result.metrics, "per_asset": per_asset,
            "worst_days": result.worst_days}


def hourly_holdout(settings: Settings, store, tenant: str, assets: list[str], until, holdout_days: int,
                   rounds: int, service: str = "forecast_load") -> pd.DataFrame:
    """The hourly model's held-out rows (issued once a day, horizons 1..168) with p10/p50/p90 and the seasonal-naive
    forecasts, for a model trained up to `until` minus the held-out days."""
    from registry import train_forecast as tf
    from registry import training_data as td

    split = td.SplitConfig(history_days=365, holdout_days=holdout_days, gap_share=0.0)
    plan = td.plan(settings, store, tenant, assets, service, split, until)
    ts = td.build(store, plan)
    model = tf.fit(ts, tf.BoosterConfig(num_boost_round=rounds))
    pred = model.predict(None, ts.holdout)
    out = ts.holdout[["asset_id", "issue_time", "target_time", "horizon_h", "y", "naive_24", "naive_168"]].copy()
    for c in ("p10", "p50", "p90"):
        out[c] = pred[c].to_numpy()
    out["point"] = out["p50"]
    return out


def daily_rows(holdout: pd.DataFrame, timezone: str, unit: str | None, rho: float) -> pd.DataFrame:
    """Per asset and issue time, the complete local days its forecast covers, with the actual day and the
    seasonal-naive days (the same hours 1 and 7 days before, aggregated the same way)."""
    frames = []
    for (asset, issue), part in holdout.groupby(["asset_id", "issue_time"]):
        part = part.sort_values("target_time")
        hourly = pd.DataFrame({"timestamp": part["target_time"] - HOUR, **{c: part[c] for c in (
            "point", "p10", "p50", "p90")}})
        if len(hourly) < 24:
            continue
        got = daily.aggregate(hourly.reset_index(drop=True), timezone, unit, rho)
        truth = {}
        for name in ("y", "naive_24", "naive_168"):
            agg = daily.aggregate(pd.DataFrame({"timestamp": hourly["timestamp"].to_numpy(),
                                                "point": part[name].to_numpy()}), timezone, unit)
            truth[name] = agg.set_index("timestamp")["point"]
        known = part.groupby(pd.DatetimeIndex(hourly["timestamp"]).tz_convert(timezone).normalize())["y"].count()
        got = got.assign(asset_id=asset, issue_time=issue, y=got["timestamp"].map(truth["y"]),
                         naive_24=got["timestamp"].map(truth["naive_24"]),
                         naive_168=got["timestamp"].map(truth["naive_168"]))
        got = got[got["timestamp"].map(known).to_numpy() == got["hours"].to_numpy()]  # every hour's actual known
        frames.append(got)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def daily_scores(rows: pd.DataFrame) -> dict[str, float]:
    ok = rows[["y", "naive_24", "naive_168"]].notna().all(axis=1)
    r = rows[ok]
    return {"days": float(len(r)), "mae": float((r["p50"] - r["y"]).abs().mean()),
            "naive_24_mae": float((r["naive_24"] - r["y"]).abs().mean()),
            "naive_168_mae": float((r["naive_168"] - r["y"]).abs().mean()),
            "coverage_p10_p90": float(((r["y"] >= r["p10"]) & (r["y"] <= r["p90"])).mean())}


def choose_rho(validation: pd.DataFrame, timezone: str, unit: str | None) -> tuple[float, dict[float, float]]:
    """The within-day correlation whose daily p10-p90 coverage on the validation days is nearest 0.8."""
    coverage = {rho: daily_scores(daily_rows(validation, timezone, unit, rho))["coverage_p10_p90"] for rho in RHOS}
    best = min(RHOS, key=lambda rho: (abs(coverage[rho] - 0.8), rho))
    return best, coverage


def markdown(step_results: list[dict], daily_result: dict | None) -> str:
    lines = ["| interval | series | held-out rows (day-ahead) | MAE | seasonal naive 1 d | seasonal naive 7 d | "
             "skill vs best naive | p10-p90 coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in step_results:
        for asset, s in r["per_asset"].items():
            best = min(s["naive_1d"], s["naive_7d"])
            lines.append(f"| {r['case'].split(':')[0]} | {asset} | {s['rows']} | {s['mae']:.4g} | {s['naive_1d']:.4g} "
                         f"| {s['naive_7d']:.4g} | {1 - s['mae'] / best:+.3f} | {s['coverage']:.3f} |")
    if daily_result:
        d = daily_result["test"]
        skill = 1 - d["mae"] / min(d["naive_24_mae"], d["naive_168_mae"])
        lines.append(f"| 1440 (from the hourly model) | {daily_result['assets']} | {int(d['days'])} days | "
                     f"{d['mae']:.4g} | {d['naive_24_mae']:.4g} | {d['naive_168_mae']:.4g} | "
                     f"{skill:+.3f} | {d['coverage_p10_p90']:.3f} |")
    return "\n".join(lines)


def worst(step_results: list[dict]) -> list[str]:
    return [f"{r['case']}: {w['asset_id']} issued {w['issue_day']}: MAE {w['err']:.4g} (naive 1 d {w['naive_1d']:.4g}, "
            f"7 d {w['naive_7d']:.4g})" for r in step_results for w in r["worst_days"]]


def coverage_table(validation: dict[float, float], test: dict[float, float]) -> str:
    return "\n".join(["| rho | " + " | ".join(f"{r:g}" for r in RHOS) + " |", "|---|" + "---|" * len(RHOS),
                      "| validation coverage | " + " | ".join(f"{validation[r]:.3f}" for r in RHOS) + " |",
                      "| test coverage | " + " | ".join(f"{test[r]:.3f}" for r in RHOS) + " |"])


def rho_coverages(rows: pd.DataFrame, timezone: str, unit: str | None) -> dict[float, float]:
    return {rho: daily_scores(daily_rows(rows, timezone, unit, rho))["coverage_p10_p90"] for rho in RHOS}


def run(settings: Settings, store, data: Path) -> dict:
    """The README's runs on a running stack (`ems up`): Tetouan 2017 at 30 minutes (tenant `tet`), two 5-minute NAB
    series at 15 minutes (`nab`), and the daily band on Tetouan (validation 3-16 Dec, test 17-30 Dec 2017)."""
    import pandas as pd

    from registry.train_step import StepConfig

    zones = ",".join(f"zone{i}=zone{i}_power_consumption" for i in (1, 2, 3))
    cases = [(StepCase("30: Tetouan 2017 (10-min rolled up)", data / "tetouan_power_10min.csv.gz", zones, 30), "tet")]
    cases += [(StepCase(f"15: NAB {name} (5-min rolled up)", data / "nab" / "realKnownCause" / f, f"{name}=value", 15),
               "nab") for name, f in (("machine_temperature", "machine_temperature_system_failure.csv.gz"),
                                      ("cpu_asg", "cpu_utilization_asg_misconfiguration.csv.gz"))]
    steps = [step_case(settings, store, tenant, case, StepConfig()) for case, tenant in cases]
    assets = ["zone1", "zone2", "zone3"]
    validation = hourly_holdout(settings, store, "tet", assets, pd.Timestamp("2017-12-17", tz="UTC"), 14, 100)
    test = hourly_holdout(settings, store, "tet", assets, None, 14, 100)
    rho, vcov = choose_rho(validation, "UTC", None)
    result = {"rho": rho, "validation_coverage": vcov, "test_coverage": rho_coverages(test, "UTC", None),
              "test": daily_scores(daily_rows(test, "UTC", None, rho)), "assets": "Tetouan zones 1-3"}
    return {"steps": steps, "daily": result, "table": markdown(steps, result), "worst": worst(steps),
            "rho_table": coverage_table(vcov, result["test_coverage"])}


__all__ = ["run", "StepCase", "choose_rho", "daily_rows", "daily_scores", "hourly_holdout", "markdown", "step_case"]
