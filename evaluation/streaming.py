"""Streaming anomaly scores at a series' native resolution: the score of row t uses rows <= t only.

Each of the project's methods gives a per-row *surprise* in sigma units (the scale of severity.py):

- z_score: |value - trailing mean| / trailing std, averaged with the same for the *seasonal excess*
  (how far the value lies outside the envelope of the values at the same time of day on the past
  `days` days), which plays the role of the registry model's per-hour-of-day statistics;
- iqr: the same two signals with the trailing median and IQR / 1.349 instead of mean and std;
- isolation_forest, local_outlier_factor: sklearn models on a few scale-free features of each row
  (level, seasonal excess, first difference and local spread, each against its trailing
  statistics), fitted on the `fit_rows` rows before each block of `refit` rows, their raw scores put
  on the sigma scale by severity.tail_scale over the fit rows;
- forecast_residual: the one-step error of a least-squares AR forecaster (last 3 values, the value a
  day earlier), refitted like the models above, over its trailing error std.

`anomaly_scores` turns a surprise series into a score in [0, 1] the way Numenta's "anomaly
likelihood" does: the mean surprise of the last `short` rows is compared with the distribution
(mean, std, re-estimated every `reestimate` rows) of that mean over the last `history` rows, and the
two-sided Gaussian tail probability p becomes log(p + 1e-10) / log(1e-10) (0.5 at p = 1e-5). A value
beyond the range seen so far by more than `tolerance` of it scores 1. After a score reaches
`DETECTION_LEVEL`, the next `rest` rows are capped just below it, so one event is reported once.
The settings are the same for every series (NAB forbids per-file tuning; only the threshold is fitted).
They were chosen on the NAB corpus itself, as NAB's published detectors were; README, Evaluation, gives
those in-sample figures next to split-half ones (settings chosen on half the files, the other half scored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import erfc

from core.names import DETECT_METHODS
from registry import severity

logger = logging.getLogger(__name__)

METHODS = DETECT_METHODS
DETECTION_LEVEL = 0.5  # score of a tail probability of 1e-5; the level the rest period is keyed to
DAY = np.timedelta64(1, "D")
CAP = 10.0  # surprises are capped at 10 sigma (a zero-variance past gives CAP, not inf)


@dataclass(frozen=True)
class Settings:
    """One set of settings for every series (NAB forbids per-file tuning)."""

    window: int = 10_000  # trailing rows of the level and residual statistics
    days: int = 7  # past days whose same-time-of-day values make the seasonal envelope
    spread: int = 2  # rows either side of the same time of day that the envelope also spans
    short: int = 8  # rows of surprise averaged by the likelihood
    history: int = 8640  # rows of averaged surprise the likelihood's distribution is estimated from
    reestimate: int = 100  # rows between re-estimates of that distribution
    learning: int = 150  # rows before anything is scored (the shortest NAB probation is 169 rows)
    tolerance: float = 0.05  # a new extreme beyond the seen range by this fraction of it scores 1
    rest: int = 100  # rows after a detection during which scores stay below the detection level
    refit: int = 250  # rows between refits of isolation forest, LOF and the forecaster
    fit_rows: int = 2000  # trailing rows each refit is fitted on
    seed: int = 0


DEFAULT = Settings()


class UnknownMethodError(ValueError):
    """A streaming method that does not exist."""


def detect(method: str, values: np.ndarray, timestamps: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """Anomaly score in [0, 1] per row, in row order, for one series (rows in time order)."""
    values = np.asarray(values, dtype=float)
    return anomaly_scores(surprise(method, values, timestamps, settings), values, settings)


def surprise(method: str, values: np.ndarray, timestamps: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """Per-row surprise in sigma units (>= 0) of `method`; row t uses rows <= t."""
    x = np.asarray(values, dtype=float)
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    if method in ("z_score", "iqr"):
        level = _trailing_z(x, settings.window, robust=method == "iqr")
        excess = seasonal_excess(x, ts, settings.days, settings.spread)
        cycle = np.isfinite(excess)  # rows whose usual step so far has a daily cycle
        if not cycle.any():
            return level
        seasonal = _trailing_z(np.where(cycle, excess, 0.0), settings.window, robust=method == "iqr")
        return np.where(cycle, (level + seasonal) / 2, level)
    if method in ("isolation_forest", "local_outlier_factor"):
        return _model_surprise(method, features(x, ts, settings), settings)
    if method == "forecast_residual":
        return _forecast_surprise(x, ts, settings)
    raise UnknownMethodError(f"streaming method {method!r} is not one of {', '.join(METHODS)}")


# ---------------------------------------------------------------- signals
def _trailing_z(x: np.ndarray, window: int, robust: bool = False, signed: bool = False) -> np.ndarray:
    """(x_t - centre) / scale of the `window` rows before t: mean/std, or median and IQR/1.349."""
    past = pd.Series(x).rolling(window, min_periods=2)
    if robust:
        centre = past.median().shift(1).to_numpy()
        q1, q3 = past.quantile(0.25).shift(1).to_numpy(), past.quantile(0.75).shift(1).to_numpy()
        scale = (q3 - q1) / severity.IQR_TO_SIGMA
        # A past with more than half its rows equal has no IQR: fall back to its std.
        scale = np.where(scale > 0, scale, past.std().shift(1).to_numpy())
    else:
        centre, scale = past.mean().shift(1).to_numpy(), past.std().shift(1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - centre) / scale
    z = np.where(np.isnan(z) & (x == centre), 0.0, z)  # 0/0: the value equals a constant past
    z = np.nan_to_num(z, nan=0.0, posinf=CAP, neginf=-CAP)
    z = np.clip(z, -CAP, CAP)
    return z if signed else np.abs(z)


MAX_CYCLE_STEP = np.timedelta64(2, "h")  # a usual step above this: no daily cycle to speak of


def period_steps(ts: np.ndarray) -> np.ndarray:
    """Per row, the usual step between rows so far: the median of the positive steps among rows <= t
    (nanoseconds as float; NaN until two are seen). Strictly online: a prefix of a file gets the same
    steps as the whole file (the median over the whole file let later rows change earlier scores)."""
    steps = np.diff(np.asarray(ts, dtype="datetime64[ns]")).astype("int64").astype(float)
    steps[steps <= 0] = np.nan  # repeated or out-of-order timestamps are no step
    return pd.Series(np.r_[np.nan, steps]).expanding(min_periods=2).median().to_numpy()


def _daily_cycle(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(usual step so far per row in ns, whether it is short enough for a daily cycle)."""
    step = period_steps(ts)
    return step, np.nan_to_num(step, nan=np.inf) <= MAX_CYCLE_STEP.astype("timedelta64[ns]").astype("int64")


def days_earlier(x: np.ndarray, ts: np.ndarray, days: int) -> np.ndarray:
    """The value at the same time `days` days before each row (the latest earlier row at or before
    t - days, if within one usual step of it), NaN where there is none or where the usual step so far
    is too long for a daily cycle (more than 2 h)."""
    step, cycle = _daily_cycle(ts)
    target = ts - days * DAY
    idx = np.searchsorted(ts, target, side="right") - 1
    lag = (target - ts[np.maximum(idx, 0)]).astype("timedelta64[ns]").astype("int64")
    ok = cycle & (idx >= 0) & (lag <= step) & (idx < np.arange(len(x)))
    return np.where(ok, x[np.maximum(idx, 0)], np.nan)


def seasonal_excess(x: np.ndarray, ts: np.ndarray, days: int, spread: int) -> np.ndarray:
    """How far each value lies outside the envelope of the values at the same time of day (+- `spread`
    rows) on each of the past `days` days: x - max above it, x - min below it, 0 inside or while
    there is no history yet; NaN on rows whose usual step so far has no daily cycle (more than 2 h)."""
    step, cycle = _daily_cycle(ts)
    n, width = len(x), 2 * spread + 1
    high = pd.Series(x).rolling(width, center=True, min_periods=1).max().to_numpy()
    low = pd.Series(x).rolling(width, center=True, min_periods=1).min().to_numpy()
    top, bottom = np.full(n, -np.inf), np.full(n, np.inf)
    for k in range(1, days + 1):
        target = ts - k * DAY
        idx = np.searchsorted(ts, target, side="right") - 1
        # the neighbourhood idx +- spread must lie before t
        lag = (target - ts[np.maximum(idx, 0)]).astype("timedelta64[ns]").astype("int64")
        ok = (idx >= 0) & (lag <= step) & (idx + spread < np.arange(n))
        top = np.where(ok, np.maximum(top, high[np.maximum(idx, 0)]), top)
        bottom = np.where(ok, np.minimum(bottom, low[np.maximum(idx, 0)]), bottom)
    seen = np.isfinite(top)
    excess = np.where(seen & (x > top), x - top, np.where(seen & (x < bottom), x - bottom, 0.0))
    return np.where(cycle, excess, np.nan)


def features(x: np.ndarray, ts: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """Scale-free description of each row against its past (rows x 4, signed sigma units):
    level, seasonal excess (level again when there is no daily cycle), first difference, and the
    log ratio of the last `short` rows' std to the trailing std."""
    window = settings.window
    level = _trailing_z(x, window, signed=True)
    excess = seasonal_excess(x, ts, settings.days, settings.spread)
    cycle = np.isfinite(excess)
    seasonal = np.where(cycle, _trailing_z(np.where(cycle, excess, 0.0), window, signed=True), level)
    diff = _trailing_z(np.r_[0.0, np.diff(x)], window, signed=True)
    local = pd.Series(x).rolling(settings.short, min_periods=2).std().to_numpy()
    broad = pd.Series(x).rolling(window, min_periods=2).std().shift(1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.log((local + 1e-9) / (broad + 1e-9))
    spread = np.clip(np.nan_to_num(spread, nan=0.0), -CAP, CAP)
    return np.column_stack([level, seasonal, diff, spread])


def _blocks(n: int, settings: Settings):
    """(fit start, block start, block end): each block of `refit` rows is scored by a model fitted
    on the `fit_rows` rows before it; rows before `learning` get no model."""
    start = settings.learning
    while start < n:
        end = min(start + settings.refit, n)
        yield max(0, start - settings.fit_rows), start, end
        start = end


def _model_surprise(method: str, X: np.ndarray, settings: Settings) -> np.ndarray:
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    out = np.zeros(len(X))
    for lo, start, end in _blocks(len(X), settings):
        train = X[lo:start]
        if method == "isolation_forest":
            model = IsolationForest(n_estimators=50, max_samples=min(256, len(train)),
                                    random_state=settings.seed).fit(train)
        else:
            model = LocalOutlierFactor(n_neighbors=min(35, len(train) - 1), novelty=True).fit(train)
        fitted = -model.score_samples(train)
        centre, sigma = severity.tail_scale(fitted)
        out[start:end] = np.maximum(0.0, (-model.score_samples(X[start:end]) - centre) / sigma)
    return np.minimum(out, CAP)


def _forecast_surprise(x: np.ndarray, ts: np.ndarray, settings: Settings) -> np.ndarray:
    """|one-step error| of a least-squares AR model (lags 1-3, plus the value at the same time a day
    earlier when the series has a daily cycle) over the std of its errors on the fit rows."""
    previous = np.r_[x[0], x[:-1]]
    lags = [np.r_[np.full(k, x[0]), x[:-k]] for k in (1, 2, 3)]
    day = days_earlier(x, ts, 1)  # no day of history (yet), or no daily cycle: the last value (a column
    lags.append(np.where(np.isfinite(day), day, previous))  # equal to lag 1 changes no least-squares forecast)
    X = np.column_stack([np.ones(len(x)), *lags])
    out = np.zeros(len(x))
    for lo, start, end in _blocks(len(x), settings):
        A, y = X[lo + 1:start], x[lo + 1:start]
        if len(y) < 2 * X.shape[1]:
            continue
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        sigma = np.std(y - A @ coef)
        err = np.abs(x[start:end] - X[start:end] @ coef)
        out[start:end] = err / sigma if sigma > 0 else np.where(err > 0, CAP, 0.0)
    return np.minimum(out, CAP)


# ---------------------------------------------------------------- surprise -> NAB score
def anomaly_scores(surprise: np.ndarray, values: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """Likelihood of the recent mean surprise, new extremes scored 1, then the rest period."""
    score = np.maximum(likelihood(surprise, settings), new_extremes(values, settings))
    return rest_period(score, settings.rest)


def likelihood(surprise: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """Numenta-style anomaly likelihood on a log scale in [0, 1] (see the module docstring)."""
    s = np.nan_to_num(np.asarray(surprise, dtype=float))
    n = len(s)
    if n <= settings.learning:
        return np.zeros(n)
    c = np.r_[0.0, np.cumsum(s)]
    k = np.minimum(np.arange(1, n + 1), settings.short)
    avg = (c[1:] - c[np.arange(1, n + 1) - k]) / k
    # Distribution of avg over the `history` rows before each re-estimation point.
    rows = np.arange(n)
    est = settings.learning + (rows - settings.learning) // settings.reestimate * settings.reestimate
    lo = np.maximum(0, est - settings.history)
    a1, a2 = np.r_[0.0, np.cumsum(avg)], np.r_[0.0, np.cumsum(avg * avg)]
    m = np.maximum(est - lo, 1)
    mean = (a1[est] - a1[lo]) / m
    var = np.maximum((a2[est] - a2[lo]) / m - mean * mean, 0.0)
    mean = np.maximum(mean, 0.1)  # floors as in Numenta's estimate, in sigma units
    sd = np.sqrt(np.maximum(var, 0.01))
    tail = 0.5 * erfc(np.abs(avg - mean) / sd / np.sqrt(2))  # two-sided: unusually calm counts too
    out = np.log(tail + 1e-10) / np.log(1e-10)
    out[: settings.learning] = 0.0
    return np.clip(out, 0.0, 1.0)


def new_extremes(values: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """1.0 where a value leaves the range of all earlier values by more than `tolerance` of it."""
    x = np.asarray(values, dtype=float)
    out = np.zeros(len(x))
    if len(x) <= settings.learning:
        return out
    hi = np.maximum.accumulate(x)[:-1]
    lo = np.minimum.accumulate(x)[:-1]
    margin = settings.tolerance * (hi - lo)
    beyond = (x[1:] > hi + margin) | (x[1:] < lo - margin)
    out[1:] = beyond
    out[: settings.learning] = 0.0
    return out


def rest_period(score: np.ndarray, rest: int, level: float = DETECTION_LEVEL) -> np.ndarray:
    """Cap scores just below `level` for `rest` rows after each row that reaches it (an event is
    reported once; NAB rewards only the earliest detection in a window and penalises each FP)."""
    out = np.asarray(score, dtype=float).copy()
    below = np.nextafter(level, 0.0)
    until = -1
    for t in np.flatnonzero(out >= level):
        if t <= until:
            out[t] = min(out[t], below)
        else:
            until = t + rest
    return out
