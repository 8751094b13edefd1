"""The epftoolbox protocol for day-ahead prices (Lago et al. 2021), on the shared NP and PJM data sets.

Test period: the last 728 days (2016-12-27 – 2018-12-24). Each test day's 24 prices are forecast on the day
before, from data up to that day and the exogenous forecasts for the target day. The forecaster is refit
every `recalibrate_days` days on a rolling window that ends the day before the first day it forecasts (never
on a test day it then scores). Settings (the LEAR/LightGBM weight) are chosen on the 364 days before the test
period by the same rolling procedure, with the data before each of those days only. The reference LEAR and
DNN ensemble forecasts come from the shared benchmark file and are scored on the same hours.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.errors import InvalidArgumentError, InvalidSeriesError
from registry import price as model

logger = logging.getLogger(__name__)

TEST_DAYS = 728
VALIDATION_DAYS = 364
# Shares of (LEAR, ridge) in the mean, the tree taking the rest; chosen with the ridge penalty on the validation year
WEIGHTS_3 = tuple((a / 4, b / 4) for a in range(5) for b in range(5 - a))
RESIDUAL_DAYS = 182  # the conformal bands read the last half-year of out-of-sample errors
DEFAULT_RECALIBRATE_DAYS = 28
REFERENCES = ("lear_ensemble", "dnn_ensemble")
Progress = Callable[[str, int, int], None]


def _quiet(step: str, done: int, total: int) -> None:
    return None


def check(market: str, recalibrate_days: int) -> None:
    if market not in model.MARKETS:
        raise InvalidArgumentError(f"market={market!r} is not one of {', '.join(model.MARKETS)}")
    if not 1 <= recalibrate_days <= 91:
        raise InvalidArgumentError(f"recalibrate_days={recalibrate_days} is out of range 1..91")


def load(market: str, data_dir: Path) -> tuple[model.Days, pd.DataFrame]:
    """The market's daily arrays and its benchmark forecasts (timestamp, price, lear_ensemble, dnn_ensemble)."""
    files = [Path(data_dir) / f"epf_{market}.csv.gz", Path(data_dir) / f"epf_{market}_benchmark_forecasts.csv.gz"]
    for f in files:
        if not f.exists():
            raise InvalidArgumentError(f"{f} does not exist; --data must be the shared data folder "
                                       "(../shared/data, README §5)")
    days = model.to_days(pd.read_csv(files[0]), model.MARKETS[market], model.HOLIDAY_COUNTRIES[market])
    bench = pd.read_csv(files[1], parse_dates=["timestamp"])
    return days, bench


def rolling(days: model.Days, start: int, stop: int, every: int, part: str, cache: Path | None,
            progress: Progress, label: str) -> np.ndarray:
    """Forecasts (stop - start, 24) of one part ("lear" or "tree") for the target days [start, stop), the
    model refit every `every` days on the data before the block it forecasts. Blocks are cached as .npy."""
    out = np.empty((stop - start, model.HOURS))
    blocks = list(range(start, stop, every))
    key = hashlib.sha1(days.price.tobytes() + days.exog.tobytes()).hexdigest()[:10]
    for n, s in enumerate(blocks):
        progress(f"{label} {part} {days.dates[s].date()}", n, len(blocks))
        e = min(s + every, stop)
        path = cache / f"{key}-{part}-{s}-{e}.npy" if cache else None
        if path is not None and path.exists():
            out[s - start:e - start] = np.load(path)
            continue
        idx = np.arange(s, e)
        if part == "lear":
            pred = model.predict_lear(model.fit_lear(days, s), days, idx)
        else:
            pred = model.predict_tree(model.fit_tree(days, s), days, idx)
        out[s - start:e - start] = pred
        if path is not None:
            np.save(path, pred)
    progress(f"{label} {part}", len(blocks), len(blocks))
    return out


def rolling_ridge(days: model.Days, start: int, stop: int, cache: Path | None, progress: Progress,
                  label: str, block: int = 28) -> dict[float, np.ndarray]:
    """The ridge part, refit every day on the data before it: penalty -> forecasts (stop - start, 24)."""
    lams = model.RIDGE_PENALTIES
    out = {lam: np.empty((stop - start, model.HOURS)) for lam in lams}
    key = hashlib.sha1(days.price.tobytes() + days.exog.tobytes()).hexdigest()[:10]
    blocks = list(range(start, stop, block))
    for n, s in enumerate(blocks):
        progress(f"{label} ridge {days.dates[s].date()}", n, len(blocks))
        e = min(s + block, stop)
        path = cache / f"{key}-ridge-{'_'.join(map(str, lams))}-{s}-{e}.npy" if cache else None
        if path is not None and path.exists():
            pred = np.load(path)
        else:
            pred = np.stack([[model.predict_lear(fit, days, [t])[0] for lam, fit in model.fit_ridge(days, t).items()]
                             for t in range(s, e)], axis=1)  # (penalties, days, 24)
            if path is not None:
                np.save(path, pred)
        for i, lam in enumerate(lams):
            out[lam][s - start:e - start] = pred[i]
    progress(f"{label} ridge", len(blocks), len(blocks))
    return out


def conformal(point: np.ndarray, actual: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p10/p90 for each day from the per-hour 10 %/90 % quantiles of the last RESIDUAL_DAYS out-of-sample errors
    known on the day before (the seed: the validation year's errors; then the test days already past)."""
    errors = np.vstack([seed, actual - point])
    lo, hi = np.empty_like(point), np.empty_like(point)
    for i in range(len(point)):
        past = errors[len(seed) + i - RESIDUAL_DAYS:len(seed) + i]
        lo[i], hi[i] = point[i] + np.quantile(past, 0.1, axis=0), point[i] + np.quantile(past, 0.9, axis=0)
    return lo, hi


# ---------------------------------------------------------------- metrics

def mae(y, f) -> float:
    return float(np.mean(np.abs(y - f)))


def rmse(y, f) -> float:
    return float(np.sqrt(np.mean((y - f) ** 2)))


def smape(y, f) -> float:
    """epftoolbox's sMAPE in %: mean of |y - f| / ((|y| + |f|) / 2); 0 where both are 0."""
    den = (np.abs(y) + np.abs(f)) / 2
    return float(100 * np.mean(np.divide(np.abs(y - f), den, out=np.zeros_like(den, dtype=float), where=den > 0)))


def pinball(y, q: dict[float, np.ndarray]) -> float:
    """Mean pinball loss over the quantile levels."""
    return float(np.mean([np.mean(np.maximum(a * (y - f), (a - 1) * (y - f))) for a, f in q.items()]))


def dm_test(actual: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> dict:
    """Multivariate Diebold–Mariano test of Lago et al. (2021) with the absolute loss: the daily loss
    differential d_t = mean over the 24 hours of |e_ref| - |e_ours| (days × 24 arrays). One-sided p-values:
    `p_ours_better` tests H1 "ours is more accurate", `p_ref_better` the reverse."""
    from scipy.stats import norm

    d = (np.abs(actual - ref) - np.abs(actual - ours)).mean(axis=1)
    sd = np.sqrt(d.var(ddof=0) / len(d))
    stat = float(d.mean() / sd) if sd > 0 else 0.0  # identical losses every day: no evidence either way
    return {"statistic": stat, "p_ours_better": float(1 - norm.cdf(stat)), "p_ref_better": float(norm.cdf(stat))}


# ---------------------------------------------------------------- the run

@dataclass
class EpfResult:
    market: str
    recalibrate_days: int
    weights: dict
    validation: dict[str, float]
    dates: pd.DatetimeIndex
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]  # name -> (days, 24): ours, lear (ours), tree, lear_ensemble, dnn_ensemble
    p10: np.ndarray
    p90: np.ndarray
    seconds: float = 0.0
    metrics: pd.DataFrame = field(init=False)
    dm: dict = field(init=False)
    worst: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        y = self.actual
        self.metrics = pd.DataFrame({name: {"mae": mae(y, f), "rmse": rmse(y, f), "smape": smape(y, f)}
                                     for name, f in self.forecasts.items()}).T
        self.dm = {ref: dm_test(y, self.forecasts["ours"], self.forecasts[ref]) for ref in REFERENCES}
        daily = pd.DataFrame({n: np.abs(y - f).mean(axis=1) for n, f in self.forecasts.items()}, index=self.dates)
        self.worst = daily.sort_values("ours", ascending=False).head(5)

    @property
    def pinball(self) -> float:
        return pinball(self.actual, {0.1: self.p10, 0.5: self.forecasts["ours"], 0.9: self.p90})

    @property
    def coverage(self) -> float:
        return float(np.mean((self.actual >= self.p10) & (self.actual <= self.p90)))

    def doc(self) -> dict:
        return {"protocol": "epf", "market": self.market, "test_period": [str(self.dates[0].date()),
                                                                           str(self.dates[-1].date())],
                "days": len(self.dates), "recalibrate_days": self.recalibrate_days,
                "weights": self.weights, "validation_mae": self.validation,
                "metrics": {k: {m: round(v, 4) for m, v in row.items()} for k, row in
                            self.metrics.to_dict("index").items()},
                "diebold_mariano": self.dm, "pinball": self.pinball, "coverage_p10_p90": self.coverage,
                "worst_days": [{"date": str(d.date()), **{k: round(float(v), 3) for k, v in row.items()}}
                               for d, row in self.worst.iterrows()],
                "seconds": round(self.seconds, 1)}


def run(market: str, data_dir: Path, recalibrate_days: int = DEFAULT_RECALIBRATE_DAYS,
        cache: Path | None = None, progress: Progress = _quiet) -> EpfResult:
    """Validation year (choose the weight) then the 728 test days, each block refit on the data before it."""
    import time

    check(market, recalibrate_days)
    t0 = time.perf_counter()
    days, bench = load(market, data_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    test0 = len(days) - TEST_DAYS
    val0 = test0 - VALIDATION_DAYS
    if str(days.dates[test0].date()) != str(bench["timestamp"].iloc[0].date()) or len(bench) != TEST_DAYS * 24:
        raise InvalidSeriesError(f"the benchmark file does not cover the last {TEST_DAYS} days of epf_{market} "
                                 f"(starts {bench['timestamp'].iloc[0]}, {len(bench)} rows)")
    with threadpool_limits(1):  # BLAS/OpenMP threads oversubscribe a shared CPU: one per process is faster
        parts = {part: rolling(days, val0, len(days), recalibrate_days, part, cache, progress, market)
                 for part in ("lear", "tree")}
        ridge = rolling_ridge(days, val0, len(days), cache, progress, market)
    y = days.price
    val = slice(0, VALIDATION_DAYS)
    mixes = {}
    for lam, r in ridge.items():
        for wl, wr in WEIGHTS_3:
            mixes[(wl, wr, lam)] = wl * parts["lear"] + wr * r + (1 - wl - wr) * parts["tree"]
    validation = {f"lear={k[0]:g},ridge={k[1]:g},tree={1 - k[0] - k[1]:g},penalty={k[2]:g}":
                  mae(y[val0:test0], f[val]) for k, f in mixes.items()}
    best = min(mixes, key=lambda k: mae(y[val0:test0], mixes[k][val]))
    w = {"lear": best[0], "ridge": best[1], "tree": round(1 - best[0] - best[1], 2), "ridge_penalty": best[2]}
    test = slice(VALIDATION_DAYS, None)
    ours = mixes[best][test]
    seed = y[val0:test0] - mixes[best][val]
    p10, p90 = conformal(ours, y[test0:], seed[-RESIDUAL_DAYS:])
    ref = {r: bench[r].to_numpy().reshape(TEST_DAYS, model.HOURS) for r in REFERENCES}
    if not np.allclose(bench["price"].to_numpy().reshape(TEST_DAYS, model.HOURS), y[test0:], atol=1e-3):
        raise InvalidSeriesError(f"the benchmark file's prices differ from epf_{market}'s over the test period")
    forecasts = {"ours": ours, "lear": parts["lear"][test], "ridge": ridge[best[2]][test], "tree": parts["tree"][test],
                 **ref}
    return EpfResult(market, recalibrate_days, w, validation, days.dates[test0:], y[test0:], forecasts, p10, p90,
                     seconds=time.perf_counter() - t0)


def plot(result: EpfResult, path: Path, week_start: int | None = None) -> Path:
    """PNG of one test week (default: the last 7 test days): actual, ours with its p10–p90 band, LEAR, DNN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from registry.plots import save_png

    s = len(result.dates) - 7 if week_start is None else week_start
    t = pd.date_range(result.dates[s], periods=7 * model.HOURS, freq="h")
    sl = slice(s, s + 7)
    flat = lambda a: a[sl].ravel()  # noqa: E731
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.fill_between(t, flat(result.p10), flat(result.p90), alpha=0.25, label="ours p10–p90")
    ax.plot(t, flat(result.actual), color="black", lw=1.5, label="actual")
    ax.plot(t, flat(result.forecasts["ours"]), lw=1.2, label=f"ours (MAE {result.metrics.loc['ours', 'mae']:.3f})")
    for r, style in zip(REFERENCES, ("--", ":"), strict=True):
        ax.plot(t, flat(result.forecasts[r]), style, lw=1, label=f"{r} ({result.metrics.loc[r, 'mae']:.3f})")
    ax.set_title(f"{result.market.upper()} day-ahead price, {t[0]:%Y-%m-%d} – {t[-1]:%Y-%m-%d} "
                 f"(each day forecast the day before)")
    ax.set_ylabel("EUR/MWh" if result.market == "np" else "USD/MWh")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    return save_png(fig, path)
