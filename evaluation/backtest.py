"""Rolling-origin backtest of the load forecaster on a tenant's ingested data, through the product's
own path: Feast point-in-time features (registry/training_data.py), the registry's forecaster
(registry/train_forecast.py) and the seasonal-naive baselines on the same rows.

Design: trained once, not refitted per origin.
- Each asset's last `origins` days are its test window. The origins are the daily issue times
  split, split + 24 h, ..., end - 24 h, where `end` is the asset's last complete hour and
  split = end - `origins` days (the holdout issue grid of training_data with holdout_days=origins).
- The model is fitted once, on training rows whose label hour ends at or before the earliest
  asset's split (the first origin of all), so no test label is seen in training, and an asset whose
  readings end later than another's (PJM in 2018, Tetouan in 2017) does not train on hours after the
  other's test window starts. Features at an issue time only use readings before it, so each
  forecast uses what was known at its origin.
- Intervals at each origin are calibrated as the SDK serves them: on the residuals of the forecasts
  issued in the 14 days before it whose targets have ended (predict_recalibrated).
- At every origin one forecast is made for every horizon 1..max(horizons). A horizon set H scores
  the rows with horizon <= H. Target hours after the last reading cannot be scored: horizon h is
  scored at origins - ceil(h/24) + 1 origins (all of them for h <= 24).
- Skill vs a seasonal-naive forecast is 1 - MAE(model) / MAE(naive) on the same rows (> 0: better).
  Every metric of a table, the model's and the baselines', is computed on the same rows. Where a
  baseline's own hour is missing (a gap in the readings) it falls back to the other seasonal-naive
  forecast, then to the last value observed at the issue time (registry/design.py, baselines), and
  the rows that used a fallback are counted (`naive_24_fallback_rows`, ..._last_value_rows).
- Worst days: per asset and daily origin the day-ahead MAE of the model over that of the better of
  the two baselines on the same rows; the WORST origins with the largest ratio are listed with what
  was missing in their inputs (hours without a reading in the week before the origin, inputs unknown).
  MASE divides errors by the asset's in-sample seasonal-naive-168 h MAE over its training window.
  Pooled over assets ("(all)"), skill compares MASE-scaled errors, so an asset weighs by its rows
  and not by its size; MAE, RMSE and pinball loss stay in load units there (dominated by the
  largest asset), MAPE, sMAPE, MASE and coverage are scale-free.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import EmsError, InvalidHorizonError
from core.names import DEFAULT_FORECAST_SERVICE
from core.settings import Settings
from registry import metrics, train_forecast, training_data
from registry.design import BASELINE_SOURCES, HORIZON, MAX_HORIZON, META, PROFILE_DAYS, gaps, missing_hours
from registry.forecaster import ALPHAS, BOOSTERS, OUTPUTS, RECENT_DAYS, recent_widths

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
STEPS = ("training set", *BOOSTERS, "predict", "score")
ALL = "(all)"  # the pooled row; not a valid asset id (core/names.py), so it cannot collide
MIN_TRAIN_DAYS = 21  # training days every asset keeps before its first origin
MAX_ORIGINS = 365
MAX_HISTORY_DAYS = 20_000
INTERVAL = ("p10", "p90")
NOMINAL_COVERAGE = 0.8
BASELINES = tuple(BASELINE_SOURCES)  # naive_24, naive_168
FALLBACKS = tuple(f"{b}_{kind}_rows" for b in BASELINES for kind in ("fallback", "last_value"))
METRICS = ("mae", "rmse", "mape", "smape", "mase", "skill_naive_24", "skill_naive_168", "naive_24_mae",
           "naive_24_mape", "naive_168_mae", "naive_168_mape", "pinball_mean", "coverage_p10_p90", "rows", "origins",
           *FALLBACKS)
# held-out rows: actual, both baselines (with fallbacks) and which source each baseline value came from
ROW_KEYS = [*META, HORIZON, "y", *BASELINES, *(f"{b}_source" for b in BASELINES)]
WORST = 5  # origins listed in the worst-days table
DAY_COLUMNS = ["asset_id", "issue_time", "model_mae", "naive_24_mae", "naive_168_mae", "ratio",
               "naive_24_fallback_rows", "missing_hours", "gaps", "missing_inputs"]
COLUMNS = [*ROW_KEYS, *OUTPUTS]  # + the model's p10, p50, p90, point


class InvalidBacktestError(EmsError, ValueError):
    """Backtest settings out of range (origins, history days)."""


@dataclass
class BacktestResult:
    tenant: str
    service: str
    horizons: tuple[int, ...]
    origins: int
    history_days: int
    boosting: train_forecast.BoosterConfig
    windows: list[training_data.AssetWindow]  # split = first origin, end = last complete hour
    features: list[str]
    train_rows: int
    scales: dict[str, float]  # per asset: in-sample seasonal-naive-168 h MAE (MASE denominator)
    metrics: pd.DataFrame  # index (horizon_set, asset_id incl. ALL), columns METRICS
    by_horizon: pd.DataFrame  # index (asset_id incl. ALL, horizon_h)
    forecasts: pd.DataFrame = field(repr=False)  # COLUMNS, one row per (asset, origin, horizon)
    days: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DAY_COLUMNS), repr=False)  # per origin
    training: training_data.TrainingSet | None = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def assets(self) -> list[str]:
        return [w.asset_id for w in self.windows]

    @property
    def worst(self) -> pd.DataFrame:
        """The WORST origins by day-ahead error ratio to the better seasonal-naive forecast."""
        return worst_days(self.days)

    def table(self, horizon_set: int) -> pd.DataFrame:
        """Metrics of one horizon set: one row per asset, then the pooled row."""
        return self.metrics.xs(horizon_set, level="horizon_set")

    def to_dict(self) -> dict:
        """Everything as plain JSON values (NaN -> None)."""
        last_label = self.training.train.groupby("asset_id")["target_time"].max() if self.training else {}
        return {
            "tenant": self.tenant, "service": self.service, "horizons": list(self.horizons),
            "origins": self.origins, "history_days": self.history_days, "design": "trained once before the first test "
            "window; one forecast per daily origin for every horizon 1..max(horizons)",
            "boosting": vars(self.boosting), "features": self.features, "train_rows": self.train_rows,
            "windows": [{"asset_id": w.asset_id, "train_start": w.start.isoformat(),
                         "train_last_label": _iso(last_label.get(w.asset_id)), "first_origin": w.split.isoformat(),
                         "end": w.end.isoformat(), "naive_168_scale": _plain(self.scales.get(w.asset_id))}
                        for w in self.windows],
            "metrics": {f"h{h}": {asset: {k: _plain(v) for k, v in row.items()}
                                  for asset, row in self.table(h).to_dict(orient="index").items()}
                        for h in self.horizons},
            "by_horizon": {asset: {k: [_plain(v) for v in values] for k, values in
                                   part.droplevel(0).reset_index().to_dict(orient="list").items()}
                           for asset, part in self.by_horizon.groupby(level=0, sort=False)},
            "worst_days": [{k: _plain(v) if k != "issue_time" else _iso(v) for k, v in row.items()}
                           for row in self.worst.to_dict(orient="records")],
            "timings": self.timings,
        }


def check(horizons: Iterable[int], origins: int, history_days: int) -> tuple[int, ...]:
    """Validate the backtest settings; returns the sorted horizon sets."""
    hs = list(horizons) if not isinstance(horizons, int | str) else [horizons]
    if not hs:
        raise InvalidHorizonError(f"horizons is empty; give one or more of 1..{MAX_HORIZON} (hours), e.g. 24,168")
    for h in hs:
        if isinstance(h, bool) or not isinstance(h, int | np.integer) or not 1 <= h <= MAX_HORIZON:
            raise InvalidHorizonError(f"horizon={h!r} is out of range 1..{MAX_HORIZON} (hours)")
    lo = MIN_TRAIN_DAYS + 1
    if isinstance(history_days, bool) or not isinstance(history_days, int) or not lo <= history_days <= \
            MAX_HISTORY_DAYS:
        raise InvalidBacktestError(f"history_days={history_days!r} is out of range {lo}..{MAX_HISTORY_DAYS}")
    hi = min(MAX_ORIGINS, history_days - MIN_TRAIN_DAYS)
    if isinstance(origins, bool) or not isinstance(origins, int) or not 1 <= origins <= hi:
        raise InvalidBacktestError(f"origins={origins!r} is out of range 1..{hi} (history_days={history_days} "
                                   f"keeps at least {MIN_TRAIN_DAYS} training days before the first origin)")
    return tuple(sorted({int(h) for h in hs}))


def run(settings: Settings, store, tenant: str, assets: list[str] | None = None, horizons: Iterable[int] = (24, 168),
        origins: int = 56, service: str = DEFAULT_FORECAST_SERVICE, history_days: int = 1095,
        boosting: train_forecast.BoosterConfig | None = None, progress: Progress | None = None,
        target_weather: str = "forecast") -> BacktestResult:
    """Fit once on each asset's data before its last `origins` days, forecast every daily origin of
    those days for horizons 1..max(horizons) and score them against the seasonal-naive baselines.
    target_weather (services with target-hour weather, registry/target_weather.py): "forecast" (archived
    forecasts, else the observed weather with a forecast's error, in training and test rows alike) or
    "oracle" (the observed weather itself: the upper bound of what weather can give)."""
    hs = check(horizons, origins, history_days)
    boosting = boosting or train_forecast.BoosterConfig()
    tick = progress or (lambda *_: None)
    split = training_data.SplitConfig(history_days=history_days, holdout_days=origins,
                                      min_history_days=origins + MIN_TRAIN_DAYS, shared_cutoff=True,
                                      target_weather=target_weather)
    timings, t0 = {}, time.perf_counter()
    tick(STEPS[0], 0, len(STEPS))
    p = training_data.plan(settings, store, tenant, assets, service, split)
    ts = training_data.build(store, p)
    timings["training_set_s"] = time.perf_counter() - t0

    def fit_step(name: str, done: int, total: int) -> None:
        tick(f"fit {name}", STEPS.index(name) if name in STEPS else done, len(STEPS))

    t1 = time.perf_counter()
    model = train_forecast.fit(ts, boosting, fit_step)
    timings["fit_s"] = time.perf_counter() - t1
    tick(STEPS[-2], len(STEPS) - 2, len(STEPS))
    t2 = time.perf_counter()
    rows = ts.holdout[ts.holdout[HORIZON] <= hs[-1]]
    pred = predict_recalibrated(model, rows)
    forecasts = pd.concat([rows[ROW_KEYS], pred[list(OUTPUTS)]], axis=1).reset_index(drop=True)
    timings["predict_s"] = time.perf_counter() - t2
    tick(STEPS[-1], len(STEPS) - 1, len(STEPS))
    scales = {a: s.get("naive_168", math.nan) for a, s in ts.scales.items()}
    days = origin_days(forecasts, ts.series, rows[model.features], min(24, hs[-1]))
    result = BacktestResult(tenant, service, hs, origins, history_days, boosting, ts.windows, ts.features,
                            len(ts.train), scales, aggregate(forecasts, scales, hs), by_horizon(forecasts, scales),
                            forecasts, days, ts)
    timings["total_s"] = time.perf_counter() - t0
    result.timings = timings
    tick("done", len(STEPS), len(STEPS))
    logger.info("backtest %s/%s: %d assets, %d origins, %d scored rows in %.1f s", tenant, service,
                len(ts.windows), origins, len(forecasts), timings["total_s"])
    return result


def predict_recalibrated(model, rows: pd.DataFrame) -> pd.DataFrame:
    """The forecasts the SDK would have served for held-out rows: at each origin the p10-p90 widening
    comes from the residuals of the asset's forecasts issued in the RECENT_DAYS before it whose target
    hours ended by then (registry/forecaster.py, recent_widths). Only earlier test origins count: the
    days before the first origin were training data, so the first origins keep the trained widening."""
    X = rows[model.features].to_numpy(dtype=float)
    e = model.nonconformity(X, rows["y"].to_numpy(dtype=float), rows["asset_id"].to_numpy())
    assets, horizon = rows["asset_id"].to_numpy(), rows[HORIZON].to_numpy()
    issue, target = pd.DatetimeIndex(rows["issue_time"]).asi8, pd.DatetimeIndex(rows["target_time"]).asi8
    window = pd.Timedelta(days=RECENT_DAYS).value
    out = {name: np.full(len(rows), np.nan) for name in OUTPUTS}
    for asset in np.unique(assets):
        mine = np.flatnonzero(assets == asset)
        for origin in np.unique(issue[mine]):
            now = mine[issue[mine] == origin]
            past = mine[(issue[mine] < origin) & (issue[mine] >= origin - window) & (target[mine] <= origin)]
            recent = recent_widths(horizon[past], e[past])
            pred = model.predict_matrix(X[now], asset, recent=recent)
            for name in OUTPUTS:
                out[name][now] = pred[name]
    return pd.DataFrame(out, index=rows.index)


# ---------------------------------------------------------------- metrics (pure)
def skill(y, forecast, naive, scale=None) -> float:
    """1 - MAE(forecast) / MAE(naive) on the rows where y, forecast and naive (and scale) are all
    known; > 0 means better than the baseline. With a per-row `scale` errors are divided by it
    first (for pooled series: the MASE ratio). NaN when the baseline's error is zero or no row is left."""
    y, forecast, naive = (np.asarray(a, dtype=float) for a in (y, forecast, naive))
    scale = np.ones_like(y) if scale is None else np.asarray(scale, dtype=float)
    keep = np.isfinite(y) & np.isfinite(forecast) & np.isfinite(naive) & np.isfinite(scale) & (scale > 0)
    if not keep.any():
        return math.nan
    base = np.sum(np.abs(naive[keep] - y[keep]) / scale[keep])
    return float(1 - np.sum(np.abs(forecast[keep] - y[keep]) / scale[keep]) / base) if base > 0 else math.nan


def scored(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows every metric is computed on: actual, the model's outputs and both baselines known. The
    baselines carry their fallbacks (design.baselines), so this drops nothing unless an asset had no
    reading at all before an origin; without it a model scored on more rows than its baselines gets a
    skill that disagrees with its MAE."""
    keep = np.logical_and.reduce([np.isfinite(rows[c].to_numpy(dtype=float)) for c in ("y", *OUTPUTS, *BASELINES)])
    return rows[keep]


def fallback_counts(rows: pd.DataFrame) -> dict[str, float]:
    """Rows whose baseline came from a fallback (any), and from the last value, per baseline."""
    out = {}
    for b in BASELINES:
        src = rows[f"{b}_source"].to_numpy() if f"{b}_source" in rows else np.zeros(len(rows), dtype=int)
        out[f"{b}_fallback_rows"] = float(np.sum(src > 0))
        out[f"{b}_last_value_rows"] = float(np.sum(src == BASELINE_SOURCES[b].index("last_value")))
    return out


def scores(rows: pd.DataFrame, scales: dict[str, float]) -> dict[str, float]:
    """METRICS over forecast rows (COLUMNS) of one or several assets; `scales` per asset (MASE). All on
    the same rows (`scored`)."""
    rows = scored(rows)
    y, point = rows["y"].to_numpy(dtype=float), rows["point"].to_numpy(dtype=float)
    scale = rows["asset_id"].map(scales).to_numpy(dtype=float)
    out = {"mae": metrics.mae(y, point), "rmse": metrics.rmse(y, point), "mape": metrics.mape(y, point),
           "smape": metrics.smape(y, point), "mase": metrics.mase(y, point, scale)}
    pooled = rows["asset_id"].nunique() > 1
    for season in (24, 168):
        naive = rows[f"naive_{season}"].to_numpy(dtype=float)
        out[f"skill_naive_{season}"] = skill(y, point, naive, scale if pooled else None)
        out[f"naive_{season}_mae"] = metrics.mae(y, naive)
        out[f"naive_{season}_mape"] = metrics.mape(y, naive)
    out["pinball_mean"] = float(np.mean([metrics.pinball(y, rows[q], a) for q, a in ALPHAS.items()])) \
        if len(rows) else math.nan
    out["coverage_p10_p90"] = metrics.coverage(y, rows[INTERVAL[0]], rows[INTERVAL[1]])
    out["rows"] = float(len(rows))
    out["origins"] = float(rows.groupby("asset_id")["issue_time"].nunique().max()) if len(rows) else 0.0
    return out | fallback_counts(rows)


def aggregate(forecasts: pd.DataFrame, scales: dict[str, float], horizons: Iterable[int]) -> pd.DataFrame:
    """METRICS per horizon set (rows with horizon <= H) and asset, plus the pooled ALL row."""
    records = []
    for h in sorted(set(horizons)):
        part = forecasts[forecasts[HORIZON] <= h]
        for asset, rows in part.groupby("asset_id", sort=True):
            records.append({"horizon_set": h, "asset_id": asset, **scores(rows, scales)})
        records.append({"horizon_set": h, "asset_id": ALL, **scores(part, scales)})
    return pd.DataFrame.from_records(records, columns=["horizon_set", "asset_id", *METRICS]).set_index(
        ["horizon_set", "asset_id"])


def by_horizon(forecasts: pd.DataFrame, scales: dict[str, float]) -> pd.DataFrame:
    """Per asset (and ALL) and horizon: MAE and MASE of the model and both baselines, p10-p90 coverage
    (on the same rows, `scored`)."""
    f = scored(forecasts)
    scale = f["asset_id"].map(scales).to_numpy(dtype=float)
    scale = np.where(scale > 0, scale, np.nan)
    err = pd.DataFrame({"asset_id": f["asset_id"], HORIZON: f[HORIZON]})
    for name, col in (("model", "point"), ("naive_24", "naive_24"), ("naive_168", "naive_168")):
        err[f"{name}_mae"] = (f[col] - f["y"]).abs()
        err[f"{name}_mase"] = err[f"{name}_mae"] / scale
    known = f["y"].notna() & f["p10"].notna() & f["p90"].notna()
    err["coverage_p10_p90"] = ((f["y"] >= f["p10"]) & (f["y"] <= f["p90"])).astype(float).where(known)
    err["rows"] = 1.0
    agg = {c: "mean" for c in err.columns if c not in ("asset_id", HORIZON, "rows")} | {"rows": "sum"}
    per_asset = err.groupby(["asset_id", HORIZON]).agg(agg)
    pooled = err.groupby(HORIZON).agg(agg)
    pooled.index = pd.MultiIndex.from_product([[ALL], pooled.index], names=["asset_id", HORIZON])
    return pd.concat([per_asset, pooled])


def origin_days(forecasts: pd.DataFrame, series: dict[str, pd.Series], inputs: pd.DataFrame,
                horizon: int = 24) -> pd.DataFrame:
    """One row per asset and origin (DAY_COLUMNS): day-ahead (horizons 1..`horizon`) MAE of the model and
    both baselines on the same rows, the model's ratio to the better baseline, the rows whose naive-24
    used a fallback, and what was missing in the origin's inputs: hours without a reading among the
    PROFILE_DAYS days before it (count and ranges, from `series`, hourly means by hour end) and the
    model inputs (`inputs`, same index as `forecasts` rows) unknown at that origin but known elsewhere
    for the asset."""
    f = scored(forecasts[forecasts[HORIZON] <= horizon])
    records = []
    for asset, part in f.groupby("asset_id", sort=True):
        known = inputs.loc[inputs.index.intersection(part.index)] if len(inputs) else inputs
        ever = [c for c in known.columns if c != HORIZON and known[c].notna().any()]
        s = series.get(asset, pd.Series(dtype=float)).dropna()
        for origin, day in part.groupby("issue_time", sort=True):
            errors = {name: float(np.mean(np.abs(day[col] - day["y"]))) for name, col in
                      (("model_mae", "point"), ("naive_24_mae", "naive_24"), ("naive_168_mae", "naive_168"))}
            best = min(errors["naive_24_mae"], errors["naive_168_mae"])
            missing = missing_hours(s, origin, PROFILE_DAYS * 24)
            mine = known.loc[known.index.intersection(day.index), ever] if ever else known.iloc[:0, :0]
            records.append({"asset_id": asset, "issue_time": origin, **errors,
                            "ratio": errors["model_mae"] / best if best > 0 else math.nan,
                            "naive_24_fallback_rows": float(np.sum(day["naive_24_source"].to_numpy() > 0))
                            if "naive_24_source" in day else 0.0,
                            "missing_hours": float(len(missing)), "gaps": gaps(missing),
                            "missing_inputs": ", ".join(c for c in mine.columns if mine[c].isna().any())})
    return pd.DataFrame.from_records(records, columns=DAY_COLUMNS)


def worst_days(days: pd.DataFrame, n: int = WORST) -> pd.DataFrame:
    """The `n` origins with the largest ratio (unknown ratios last)."""
    return days.sort_values(["ratio", "asset_id", "issue_time"], ascending=[False, True, True],
                            na_position="last").head(n).reset_index(drop=True)


def horizon_label(h: int) -> str:
    return {24: "day-ahead", 168: "week-ahead"}.get(h, f"{h} h ahead") + f" (horizons 1–{h} h)"


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _iso(v) -> str | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).isoformat()
