"""Live accuracy: forecasts as served, scored once their actuals arrive.

`log_forecast` writes a ForecastResult to the forecast log (warehouse/forecast_log.py); `report` joins
the logged hours with their actual hourly means and scores them per model, asset and horizon bucket
(the forecaster's buckets 1-6, 7-24, 25-72, 73-168 h): MAE, MAPE, mean pinball loss over p10/p50/p90,
p10-p90 coverage, and the seasonal-naive forecast (same hour a week earlier) on the same hours (its MAE
and the skill 1 - MAE / naive MAE, both on the hours where the naive value exists). `log_to_mlflow`
writes the pooled rows as metrics of each model version's run, so the registry shows live accuracy
next to the training metrics.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError
from inference.results import ForecastResult
from registry.forecaster import HORIZON_BUCKETS

logger = logging.getLogger(__name__)

ALL = "(all)"  # the pooled row of a model (not a valid asset id)
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
METRICS = ["rows", "mae", "mape", "pinball", "coverage", "naive_168_rows", "model_mae_naive_rows", "naive_168_mae",
           "skill_naive_168"]
MAX_DAYS = 3650


def bucket_labels() -> list[str]:
    lows = [1, *(b + 1 for b in HORIZON_BUCKETS[:-1])]
    return [f"{lo}-{hi}h" for lo, hi in zip(lows, HORIZON_BUCKETS, strict=True)]


def bucket_of(horizon: pd.Series) -> pd.Series:
    idx = np.searchsorted(HORIZON_BUCKETS, horizon.to_numpy(), side="left").clip(0, len(HORIZON_BUCKETS) - 1)
    return pd.Series(np.asarray(bucket_labels())[idx], index=horizon.index)


def log_forecast(settings, result: ForecastResult) -> int:
    """Write a served forecast to the forecast log (idempotent per model, issue time and target hour). Hourly
    forecasts only: a 15/30-minute step or a local day would be scored against the wrong hour's mean."""
    from inference.batch import check_loggable
    from warehouse import forecast_log

    frame = result.frame
    if "hours" in frame.columns:  # local days (inference/intervals.daily)
        check_loggable(1440)
    elif "horizon_steps" in frame.columns and len(frame) > 1:
        check_loggable(int(frame["timestamp"].sort_values().diff().min().total_seconds() // 60))
    issue = pd.Timestamp(result.feature_time)
    issue = issue.tz_localize("UTC") if issue.tzinfo is None else issue.tz_convert("UTC")
    return forecast_log.write(settings, result.tenant, result.asset, result.model_id, issue.to_pydatetime(),
                              result.frame, result.source)


def _scores(g: pd.DataFrame) -> dict[str, float]:
    y, p = g["actual"].to_numpy(), g["point"].to_numpy()
    err = np.abs(y - p)
    nonzero = y != 0
    q = g.dropna(subset=list(QUANTILES))
    pinball = np.mean([np.mean(np.maximum(a * (q["actual"] - q[c]), (a - 1) * (q["actual"] - q[c])))
                       for c, a in QUANTILES.items()]) if len(q) else np.nan
    coverage = float(((q["p10"] <= q["actual"]) & (q["actual"] <= q["p90"])).mean()) if len(q) else np.nan
    naive = g["naive_168"].notna().to_numpy()
    model_on_naive = float(err[naive].mean()) if naive.any() else np.nan
    naive_mae = float(np.abs(y[naive] - g["naive_168"].to_numpy()[naive]).mean()) if naive.any() else np.nan
    return {"rows": len(g), "mae": float(err.mean()),
            "mape": float(np.mean(err[nonzero] / np.abs(y[nonzero])) * 100) if nonzero.any() else np.nan,
            "pinball": float(pinball), "coverage": coverage, "naive_168_rows": int(naive.sum()),
            "model_mae_naive_rows": model_on_naive, "naive_168_mae": naive_mae,
            "skill_naive_168": 1 - model_on_naive / naive_mae if naive.any() and naive_mae > 0 else np.nan}


def score(joined: pd.DataFrame) -> pd.DataFrame:
    """Per (model_id, asset_id incl. ALL, bucket incl. 'all'): METRICS. `joined`: warehouse.forecast_log.COLUMNS."""
    if joined.empty:
        return pd.DataFrame(columns=["model_id", "asset_id", "bucket", *METRICS])
    frame = joined.assign(bucket=bucket_of(joined["horizon_h"]))
    out = []
    for model, m in frame.groupby("model_id", sort=True):
        for asset, a in [*m.groupby("asset_id", sort=True), (ALL, m)]:
            for bucket, b in [*((lbl, a[a["bucket"] == lbl]) for lbl in bucket_labels()), ("all", a)]:
                if len(b):
                    out.append({"model_id": model, "asset_id": asset, "bucket": bucket, **_scores(b)})
    return pd.DataFrame(out, columns=["model_id", "asset_id", "bucket", *METRICS])


def by_day(joined: pd.DataFrame) -> pd.DataFrame:
    """Per model and target day (UTC): MAE and p10-p90 coverage, for the error/coverage plot."""
    if joined.empty:
        return pd.DataFrame(columns=["model_id", "day", "mae", "coverage", "rows"])
    f = joined.assign(day=pd.to_datetime(joined["target_time"], utc=True).dt.floor("D"),
                      err=(joined["actual"] - joined["point"]).abs(),
                      inside=(joined["p10"] <= joined["actual"]) & (joined["actual"] <= joined["p90"]))
    return (f.groupby(["model_id", "day"]).agg(mae=("err", "mean"), coverage=("inside", "mean"), rows=("err", "size"))
            .reset_index())


def report(settings, tenant: str, days: int = 7, until: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, per-day) of the logged forecasts whose target hours fall in the `days` days before
    `until` (default: the end of the newest logged hour with an actual)."""
    from warehouse import forecast_log

    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidArgumentError(f"days={days!r} is out of range 1..{MAX_DAYS}")
    joined = forecast_log.joined(settings, tenant, until=until)
    if not joined.empty:
        end = pd.Timestamp(until) if until is not None else joined["target_time"].max() + pd.Timedelta(hours=1)
        joined = joined[joined["target_time"] >= end - timedelta(days=days)].reset_index(drop=True)
    return score(joined), by_day(joined)


def log_to_mlflow(mlflow_client, table: pd.DataFrame, at: datetime | None = None) -> list[str]:
    """The pooled rows (asset ALL) as metrics `live_<metric>_<bucket>` of each model version's run."""
    from registry import lifecycle

    ts = int((at or datetime.now()).timestamp() * 1000)
    logged = []
    for model_id, rows in table[table["asset_id"] == ALL].groupby("model_id"):
        run_id = lifecycle.show(mlflow_client, model_id).run_id
        if not run_id:
            continue
        for r in rows.itertuples():
            for metric in ("mae", "mape", "pinball", "coverage", "skill_naive_168"):
                value = getattr(r, metric)
                if value is not None and not np.isnan(value):
                    mlflow_client.log_metric(run_id, f"live_{metric}_{r.bucket}", float(value), timestamp=ts)
        logged.append(model_id)
    return logged


def plot(days: pd.DataFrame, path) -> None:
    """Day-ahead error and interval coverage over time, one line per model."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for model, g in days.groupby("model_id"):
        ax1.plot(g["day"], g["mae"], marker="o", label=model)
        ax2.plot(g["day"], g["coverage"], marker="o", label=model)
    ax2.axhspan(0.75, 0.85, color="tab:green", alpha=0.15, label="target 0.75-0.85")
    ax1.set_ylabel("MAE (load units)")
    ax2.set_ylabel("p10-p90 coverage")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
