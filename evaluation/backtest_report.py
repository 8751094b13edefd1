"""The backtest report: plots (PNG), markdown tables and a JSON of every metric in one folder, the
same folder logged to an MLflow run in the tenant's experiment (skipped with a warning when MLflow
cannot be reached, so a report never depends on the tracking server)."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from core.formats import MISSING, magnitude, number
from core.names import TAG_MODEL_TYPE
from core.settings import Settings
from evaluation.backtest import ALL, NOMINAL_COVERAGE, BacktestResult, horizon_label
from registry import tracking
from registry.design import HORIZON
from registry.plots import MAX_PANELS

logger = logging.getLogger(__name__)

PLOTS = {"mae_by_horizon": "MAE by horizon", "coverage_by_horizon": "p10–p90 coverage by horizon",
         "example_weeks": "Example weeks"}
EXAMPLE_DAYS = 7


@dataclass
class Report:
    out: Path
    markdown: Path
    json: Path
    plots: dict[str, Path]
    forecasts: Path
    doc: dict = field(repr=False)  # the JSON document (metrics + where everything went)
    run_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def publish(settings: Settings, store, result: BacktestResult, out: Path | None = None,
            now: datetime | None = None) -> Report:
    """Write the report into `out` (default {home}/reports/backtest/{tenant}-{stamp}) and log it to MLflow."""
    now = now or datetime.now(UTC)
    out = out or settings.home / "reports" / "backtest" / f"{result.tenant}-{now:%Y%m%dT%H%M%SZ}"
    report = write(result, out, now)
    return tracking.publish_report(settings, result.tenant, report,
                                   lambda: log_to_mlflow(settings, store, result, report))


def write(result: BacktestResult, out: Path, now: datetime | None = None) -> Report:
    """Plots, markdown, metrics JSON and the scored forecasts (parquet) into `out`."""
    now = now or datetime.now(UTC)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    figures = {"mae_by_horizon": mae_by_horizon(result), "coverage_by_horizon": coverage_by_horizon(result),
               "example_weeks": example_weeks(result)}
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / "plots" / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)
    forecasts = out / "forecasts.parquet"
    result.forecasts.to_parquet(forecasts, index=False)
    md = out / "report.md"
    md.write_text(markdown(result, now))
    doc = {"generated": now.isoformat(), **result.to_dict(),
           "report": {"dir": str(out), "markdown": str(md), "json": str(out / "metrics.json"),
                      "forecasts": str(forecasts), "plots": {k: str(v) for k, v in paths.items()}}}
    report = Report(out, md, out / "metrics.json", paths, forecasts, doc)
    tracking.write_json(doc, report.json)
    return report


# ---------------------------------------------------------------- MLflow
def log_to_mlflow(settings: Settings, store, result: BacktestResult, report: Report) -> str:
    """A run `backtest {service}` in experiment tenant-{tenant}: params, metrics, the report folder."""
    import mlflow

    with tracking.training_run(settings, store, result.tenant, f"backtest {result.service}",
                               {TAG_MODEL_TYPE: "forecast", "run_type": "backtest"}) as run:
        mlflow.log_params({
            "feature_service": result.service, "assets": _clip(",".join(result.assets)),
            "horizons": ",".join(map(str, result.horizons)), "origins": result.origins,
            "history_days": result.history_days, "train_rows": result.train_rows,
            "features": _clip(",".join(result.features)),
            "design": "train once before the first test window (all assets)",
            **{f"lgb.{k}": v for k, v in vars(result.boosting).items()},
        })
        mlflow.log_metrics(metric_dict(result) | {f"time.{k}": v for k, v in result.timings.items()})
        mlflow.log_artifacts(str(report.out))
    return run.info.run_id


def metric_dict(result: BacktestResult) -> dict[str, float]:
    """Flat MLflow metrics: `h{H}.{metric}` pooled over assets and `h{H}.{asset}.{metric}` per asset."""
    out = {}
    for (h, asset), row in result.metrics.iterrows():
        prefix = f"h{h}" if asset == ALL else f"h{h}.{re.sub(r'[^A-Za-z0-9_.-]', '_', asset)}"
        out |= {f"{prefix}.{k}": float(v) for k, v in row.items() if math.isfinite(v)}
    return out


# ---------------------------------------------------------------- markdown
ACCURACY = (("mae", "MAE"), ("rmse", "RMSE"), ("mape", "MAPE %"), ("smape", "sMAPE %"), ("mase", "MASE"),
            ("pinball_mean", "pinball (mean p10/p50/p90)"), ("coverage_p10_p90", "p10–p90 coverage"),
            ("rows", "rows"), ("origins", "origins"))
BASELINES = (("mae", "MAE model"), ("naive_24_mae", "MAE naive-24"), ("naive_168_mae", "MAE naive-168"),
             ("mape", "MAPE % model"), ("naive_24_mape", "MAPE % naive-24"), ("naive_168_mape", "MAPE % naive-168"),
             ("skill_naive_24", "skill vs naive-24"), ("skill_naive_168", "skill vs naive-168"))
FALLBACK_COLUMNS = (("rows", "rows"), ("naive_24_fallback_rows", "naive-24 from a fallback"),
                    ("naive_24_last_value_rows", "of them the last value"),
                    ("naive_168_fallback_rows", "naive-168 from a fallback"),
                    ("naive_168_last_value_rows", "of them the last value"))


def fmt(metric: str, value: float) -> str:
    """One table cell: skills signed, percentages and ratios to fixed decimals, loads by size."""
    if value is None or not math.isfinite(value):
        return MISSING
    if metric == "ratio":
        return number(value, ".2f")
    if metric.startswith("skill"):
        return number(value, "+.3f")
    if metric in ("rows", "origins", "missing_hours") or metric.endswith("_rows"):
        return number(value, ",.0f")
    if "mape" in metric or metric == "coverage_p10_p90":
        return number(value, ".2f")
    if metric == "mase":
        return number(value, ".3f")
    return magnitude(value)


def _table(frame, columns) -> list[str]:
    lines = ["| asset | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for asset, row in frame.iterrows():
        name = "**all assets**" if asset == ALL else asset
        lines.append(f"| {name} | " + " | ".join(fmt(k, row[k]) for k, _ in columns) + " |")
    return lines


def markdown(result: BacktestResult, now: datetime) -> str:
    r = result
    last = r.training.train.groupby("asset_id")["target_time"].max() if r.training is not None else {}
    lines = [
        f"# Forecast backtest: tenant `{r.tenant}`, features `{r.service}`", "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC. Rolling origin: the LightGBM p10/p50/p90 + point forecaster "
        f"(registry/train_forecast.py) is trained **once** on each asset's labels up to its first origin "
        f"({r.history_days} days of history, {r.train_rows:,} training rows), so no test label is seen in "
        f"training. Then one forecast per day at each of the last {r.origins} daily issue times, every horizon "
        f"1–{max(r.horizons)} h, compared with two seasonal-naive forecasts on the same rows.", "",
        "| asset | training from | last training label | first origin | last complete hour | "
        "in-sample naive-168 MAE |", "|---|---|---|---|---|---:|",
    ]
    for w in r.windows:
        lines.append(f"| {w.asset_id} | {w.start:%Y-%m-%d %H:%M} | {_when(last.get(w.asset_id))} | "
                     f"{w.split:%Y-%m-%d %H:%M} | {w.end:%Y-%m-%d %H:%M} | {fmt('mae', r.scales.get(w.asset_id))} |")
    for h in r.horizons:
        table = r.table(h)
        lines += ["", f"## {horizon_label(h)[0].upper()}{horizon_label(h)[1:]}", "", "Accuracy:", "",
                  *_table(table, ACCURACY), "", "Model vs seasonal-naive baselines (same rows):", "",
                  *_table(table, BASELINES), "", "Baseline fallbacks (rows whose seasonal-naive hour had no reading):",
                  "", *_table(table, FALLBACK_COLUMNS)]
    lines += ["", f"## Worst days ({len(r.worst)} origins)", "",
              f"The origins whose {horizon_label(min(24, max(r.horizons)))} MAE is the largest multiple of the "
              "better seasonal-naive forecast's on the same rows, and what their inputs were missing.", "",
              *worst_table(r.worst)]
    lines += ["", "## Plots", ""]
    lines += [f"![{title}](plots/{name}.png)" for name, title in PLOTS.items()]
    lines += ["", "## Definitions", "",
              "- naive-24: the same hour on the last day before the issue time (t+h−24·⌈h/24⌉ h); "
              "naive-168: the same hour one week earlier (t+h−168 h).",
              "- Where a baseline's own hour has no reading it falls back to the other seasonal-naive forecast, "
              "then to the last value observed at the issue time; every metric is computed on the same rows.",
              "- skill = 1 − MAE(model) / MAE(naive) on the same rows (> 0: the model is better). "
              "For all assets together the errors are first divided by each asset's in-sample naive-168 MAE, "
              "so assets weigh by rows, not by size.",
              "- MASE: |error| / in-sample MAE of the seasonal-naive-168 h forecast over the asset's training window.",
              "- MAPE skips hours whose actual is zero; sMAPE is in 0–200 %.",
              f"- Coverage: share of actuals inside [p10, p90] (nominal {NOMINAL_COVERAGE}).",
              "- Horizon h is scored only where its target hour has a reading: at origins − ⌈h/24⌉ + 1 origins.",
              "- MAE, RMSE and pinball loss are in the assets' load units; for all assets they are pooled "
              "(dominated by the largest asset).", ""]
    return "\n".join(lines)


WORST_COLUMNS = (("model_mae", "MAE model"), ("naive_24_mae", "MAE naive-24"), ("naive_168_mae", "MAE naive-168"),
                 ("ratio", "ratio to the better naive"), ("naive_24_fallback_rows", "naive-24 fallback rows"),
                 ("missing_hours", "hours missing in the week before"))


def worst_table(worst) -> list[str]:
    """The worst-days table as markdown lines."""
    if worst.empty:
        return ["No origin was scored."]
    lines = ["| asset | origin | " + " | ".join(label for _, label in WORST_COLUMNS) + " | gaps | inputs unknown |",
             "|---|---|" + "---:|" * len(WORST_COLUMNS) + "---|---|"]
    for _, row in worst.iterrows():
        lines.append(f"| {row['asset_id']} | {row['issue_time']:%Y-%m-%d %H:%M} | " +
                     " | ".join(fmt(k, row[k]) for k, _ in WORST_COLUMNS) +
                     f" | {row['gaps'] or '—'} | {row['missing_inputs'] or '—'} |")
    return lines


def _when(ts) -> str:
    return "—" if ts is None else f"{ts:%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------- plots
def _grid(n: int, height: float = 3.0):
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def mae_by_horizon(result: BacktestResult):
    """Model vs both seasonal-naive forecasts by horizon: all assets in MASE units, then each asset's MAE."""
    assets = result.assets[:MAX_PANELS]
    panels = ([ALL] if len(result.assets) > 1 else []) + assets
    fig, axes = _grid(len(panels))
    for ax, asset in zip(axes, panels, strict=True):
        part = result.by_horizon.loc[asset]
        unit = "mase" if asset == ALL else "mae"
        for name, style, label in (("model", "-", "model"), ("naive_24", "--", "seasonal naive 24 h"),
                                   ("naive_168", ":", "seasonal naive 168 h")):
            ax.plot(part.index, part[f"{name}_{unit}"], style, label=label)
        ax.set_title("all assets (scaled by in-sample naive-168 MAE)" if asset == ALL else asset, fontsize=10)
        ax.set_xlabel("horizon (h)")
        ax.set_ylabel(unit.upper())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Backtest {result.tenant}: error by horizon over {result.origins} origins" +
                 (f" (first {MAX_PANELS} of {len(result.assets)} assets)" if len(result.assets) > MAX_PANELS else ""))
    fig.tight_layout()
    return fig


def coverage_by_horizon(result: BacktestResult):
    fig, ax = plt.subplots(figsize=(10, 4))
    for asset in result.assets[:MAX_PANELS]:
        part = result.by_horizon.loc[asset]
        ax.plot(part.index, part["coverage_p10_p90"], lw=0.8, alpha=0.7, label=asset)
    pooled = result.by_horizon.loc[ALL]
    ax.plot(pooled.index, pooled["coverage_p10_p90"], color="black", lw=2, label="all assets")
    ax.axhline(NOMINAL_COVERAGE, color="tab:red", ls="--", lw=1, label=f"nominal {NOMINAL_COVERAGE}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("horizon (h)")
    ax.set_ylabel("share of actuals in [p10, p90]")
    ax.set_title(f"Backtest {result.tenant}: p10–p90 coverage by horizon")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    return fig


def example_weeks(result: BacktestResult):
    """The last week of origins per asset: each origin's day-ahead p50 and p10–p90 band vs actuals."""
    day = min(24, max(result.horizons))
    assets = result.assets[:MAX_PANELS]
    fig, axes = plt.subplots(len(assets), 1, figsize=(12, 2.8 * len(assets)), squeeze=False)
    f = result.forecasts
    for ax, asset in zip(axes[:, 0], assets, strict=True):
        part = f[(f["asset_id"] == asset) & (f[HORIZON] <= day)]
        origins = np.sort(part["issue_time"].unique())[-EXAMPLE_DAYS:]
        for i, origin in enumerate(origins):
            one = part[part["issue_time"] == origin].sort_values("target_time")
            ax.fill_between(one["target_time"], one["p10"], one["p90"], color="tab:blue", alpha=0.25,
                            label="p10–p90" if i == 0 else None)
            ax.plot(one["target_time"], one["p50"], color="tab:blue", lw=1.2, label="p50" if i == 0 else None)
            ax.axvline(origin, color="grey", lw=0.5, alpha=0.5)
        actual = part[part["issue_time"].isin(origins)].drop_duplicates("target_time").sort_values("target_time")
        ax.plot(actual["target_time"], actual["y"], color="black", lw=0.9, label="actual")
        ax.set_title(f"{asset}: 1–{day} h forecasts of the last {len(origins)} origins (grey lines)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

