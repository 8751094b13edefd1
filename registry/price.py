"""Day-ahead price forecaster: the 24 prices of day d issued on day d-1 before the auction. Pure numpy/pandas.

Design (Lago, Marcjasz, De Schutter & Weron 2021, "LEAR"): for target day d, the 24 prices of d-1, d-2, d-3
and d-7, the two exogenous day-ahead forecasts of the market (NP: load and wind; PJM: system and zonal load)
for all 24 hours of d, d-1 and d-7, the day of week and a public-holiday flag for d. Everything is known
on day d-1 before the auction: the exogenous columns are forecasts published for the next day.

Model: a weighted mean of three forecasters, each refit on a rolling window by the caller
(`evaluation/epf.py` states the cadences):
- LEAR: 24 LASSO regressions (one per hour, penalty by AIC on the LARS path) on variance-stabilised inputs
  and target (asinh of median/MAD-normalised values, per calibration window), fitted on the last 364, 728,
  1092 and 1456 days and averaged in price space, as the reference does;
- a ridge model on the same design and scaling (closed form, cheap enough to refit every day);
- a LightGBM regressor on one row per (day, hour) with the same-hour lags, daily min/max/mean of d-1 and
  the target hour's exogenous forecasts, all relative to d-1's mean price (so a level shift is not out of
  the trees' range), with an L1 objective.
Quantiles p10/p50/p90: p50 is the point forecast; p10/p90 add the empirical 10 %/90 % quantiles of the
point forecast's recent out-of-sample errors at that hour (split-conformal bands). Prices are never
clipped: spikes and negative prices pass through.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import InvalidSeriesError

HOURS = 24
LAGS = (1, 2, 3, 7)  # days of past prices in the design
EXOG_LAGS = (0, 1, 7)  # days of exogenous forecasts: the target day, d-1, d-7
FIRST_TARGET = max(LAGS)  # the first day index that has all its lags
PAST_DAYS = max(*LAGS, *EXOG_LAGS)  # the oldest day before the target day a design reads (d-7)
LEAR_WINDOWS = (364, 728, 1092, 1456)  # 52 weeks, 2, 3, 4 years of 364 days
MARKETS = {"np": ("load_forecast", "wind_forecast"), "pjm": ("system_load_forecast", "zonal_load_forecast")}
HOLIDAY_COUNTRIES = {"np": ("NO", "SE", "FI", "DK"), "pjm": ("US",)}
LGB_PARAMS = dict(objective="l1", n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=40,
                  subsample=0.8, subsample_freq=1, colsample_bytree=0.8, verbose=-1, n_jobs=1, random_state=0)


@dataclass
class Days:
    """An hourly market series as one row per day: prices (D, 24), the two exogenous forecasts (D, 2, 24),
    the day-of-week and the holiday flag of each day."""

    dates: pd.DatetimeIndex
    price: np.ndarray
    exog: np.ndarray
    holiday: np.ndarray
    exog_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.dates)


def holidays_for(dates: pd.DatetimeIndex, countries: tuple[str, ...]) -> np.ndarray:
    """1.0 on a day that is a public holiday in any of the countries (the NP system spans four)."""
    import holidays

    years = sorted({d.year for d in dates})
    days: set = set()
    for c in countries:
        days |= set(holidays.country_holidays(c, years=years).keys())
    return np.array([d.date() in days for d in dates], dtype=float)


def forecast_days(frame: pd.DataFrame, exog_names: tuple[str, ...], countries: tuple[str, ...] = ()) -> Days:
    """`to_days` of rows that end with the target day, whose prices are unknown (NaN)."""
    return to_days(frame, exog_names, countries, target_day=True)


def to_days(frame: pd.DataFrame, exog_names: tuple[str, ...], countries: tuple[str, ...] = (),
            target_day: bool = False) -> Days:
    """Hourly rows (`timestamp`, `price`, the exogenous columns) → `Days`. The series must be complete days of
    24 hours without gaps (local market time as the epftoolbox data sets release it). With `target_day`, the
    last day's prices may be missing (the day to forecast)."""
    missing = [c for c in ("timestamp", "price", *exog_names) if c not in frame.columns]
    if missing:
        raise InvalidSeriesError(f"price series has no column {missing[0]!r}; expected timestamp, price, "
                                 f"{', '.join(exog_names)}")
    ts = pd.to_datetime(frame["timestamp"])
    values = frame[["price", *exog_names]].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1)
    if target_day:
        bad &= ~((np.arange(len(frame)) >= len(frame) - HOURS) & values[list(exog_names)].notna().all(axis=1)
                 ).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        col = next(c for c in values.columns if pd.isna(values[c].iloc[i]))
        raise InvalidSeriesError(f"{col} at {ts.iloc[i]} is {frame[col].iloc[i]!r}, not a number")
    if len(frame) % HOURS or not (ts.dt.hour.to_numpy() == np.tile(np.arange(HOURS), len(frame) // HOURS)).all():
        raise InvalidSeriesError(f"price series must be whole days of hours 0..23 in order; got {len(frame)} rows "
                                 f"from {ts.iloc[0]} to {ts.iloc[-1]}")
    dates = pd.DatetimeIndex(ts.iloc[::HOURS].dt.normalize())
    if len(dates) > 1 and (np.diff(dates.asi8) != pd.Timedelta(days=1).value).any():
        raise InvalidSeriesError(f"price series has a gap in its days between {dates[0].date()} and "
                                 f"{dates[-1].date()}")
    v = values.to_numpy(float).reshape(len(dates), HOURS, 1 + len(exog_names))
    return Days(dates, v[:, :, 0], np.moveaxis(v[:, :, 1:], 2, 1), holidays_for(dates, countries) if countries
                else np.zeros(len(dates)), tuple(exog_names))


# ---------------------------------------------------------------- LEAR (linear, one LASSO per hour)

def lear_design(days: Days, idx: np.ndarray) -> np.ndarray:
    """One row per target day index: 4×24 price lags, 2×3×24 exogenous values, 7 day-of-week dummies, holiday."""
    idx = np.asarray(idx)
    cols = [days.price[idx - k] for k in LAGS]
    for e in range(days.exog.shape[1]):
        cols += [days.exog[idx - k, e] for k in EXOG_LAGS]
    dow = np.eye(7)[days.dates[idx].dayofweek]
    return np.hstack([*cols, dow, days.holiday[idx, None]])


N_SCALED = HOURS * (len(LAGS) + 2 * len(EXOG_LAGS))  # the dummies are left unscaled


class _Invariant:
    """asinh of median/MAD-normalised values (Uniejewski, Weron & Ziel 2018), fitted per column."""

    def fit(self, x: np.ndarray) -> _Invariant:
        from scipy.stats import median_abs_deviation

        self.median = np.median(x, axis=0)
        mad = median_abs_deviation(x, axis=0, scale="normal")
        self.mad = np.where(mad > 0, mad, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.arcsinh((x - self.median) / self.mad)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.sinh(z) * self.mad + self.median


@dataclass
class _LearWindow:
    sx: _Invariant
    sy: _Invariant
    coef: np.ndarray  # (24, p)
    intercept: np.ndarray  # (24,)
    alpha: np.ndarray  # (24,) the LASSO penalty per hour
    days: int  # the window's nominal length

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.hstack([self.sx.transform(x[:, :N_SCALED]), x[:, N_SCALED:]])
        return self.sy.inverse(z @ self.coef.T + self.intercept)


def lasso_aic(x: np.ndarray, y: np.ndarray, max_iter: int = 2500) -> tuple[np.ndarray, np.ndarray]:
    """LASSO of each column of y on x with the penalty chosen by AIC along the LARS path: what scikit-learn's
    LassoLarsIC(criterion="aic") does column by column, with the centred Gram matrix, X'y and the OLS noise
    variance computed once for all 24 hours instead of 24 times. Returns (coef (k, p), intercept (k,), the chosen
    penalty per column (k,))."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lars_path_gram

    n, p = x.shape
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - xm, y - ym
    gram, xy = xc.T @ xc, xc.T @ yc
    ols, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    noise = ((yc - xc @ ols) ** 2).sum(axis=0) / (n - p - 1)  # as LassoLarsIC estimates it (n > p + 1)
    coef, alpha = np.zeros((y.shape[1], p)), np.zeros(y.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for h in range(y.shape[1]):
            alphas, _, path = lars_path_gram(xy[:, h], gram, n_samples=n, max_iter=max_iter, method="lasso")
            rss = (yc[:, h] ** 2).sum() - 2 * path.T @ xy[:, h] + np.einsum("pk,pk->k", path, gram @ path)
            df = (np.abs(path) > np.finfo(float).eps).sum(axis=0)
            aic = n * np.log(2 * np.pi * noise[h]) + rss / noise[h] + 2 * df
            best = int(np.argmin(aic))
            coef[h], alpha[h] = path[:, best], alphas[best]
    return coef, ym - coef @ xm, alpha


def fit_lear(days: Days, end: int, windows: tuple[int, ...] = LEAR_WINDOWS) -> list[_LearWindow]:
    """Fit LEAR on the target days before index `end` (exclusive), one model per window length that fits; each
    hour's penalty chosen by AIC on the LARS path."""
    out = []
    for w in windows:
        start = max(FIRST_TARGET, end - w)
        if end - start < w - 28:  # the first week of the data has no d-7 lags: a window may be 4 weeks short
            continue
        idx = np.arange(start, end)
        x, y = lear_design(days, idx), days.price[idx]
        sx, sy = _Invariant().fit(x[:, :N_SCALED]), _Invariant().fit(y)
        z = np.hstack([sx.transform(x[:, :N_SCALED]), x[:, N_SCALED:]])
        coef, icpt, alpha = lasso_aic(z, sy.transform(y))
        out.append(_LearWindow(sx, sy, coef, icpt, alpha, w))
    if not out:
        raise InvalidSeriesError(f"LEAR needs at least {min(windows) + FIRST_TARGET - 28} days of prices before "
                                 f"the first target day; got {end}")
    return out


RIDGE_PENALTIES = (0.03, 0.3, 3.0)  # chosen on the validation year (evaluation/epf.py)


def fit_ridge(days: Days, end: int, penalties: tuple[float, ...] = RIDGE_PENALTIES,
              windows: tuple[int, ...] = LEAR_WINDOWS) -> dict[float, list[_LearWindow]]:
    """LEAR's design and scaling with a ridge penalty instead of the LASSO: a closed-form solve, cheap enough to
    recalibrate every day (the LASSO's AIC path is refit every few weeks). One model list per penalty
    (objective 1/(2n)·RSS + penalty/2·|b|^2, in the scaled space)."""
    out: dict[float, list[_LearWindow]] = {lam: [] for lam in penalties}
    for w in windows:
        start = max(FIRST_TARGET, end - w)
        if end - start < w - 28:
            continue
        idx = np.arange(start, end)
        x, y = lear_design(days, idx), days.price[idx]
        sx, sy = _Invariant().fit(x[:, :N_SCALED]), _Invariant().fit(y)
        z = np.hstack([sx.transform(x[:, :N_SCALED]), x[:, N_SCALED:]])
        zy = sy.transform(y)
        zm, ym = z.mean(axis=0), zy.mean(axis=0)
        zc = z - zm
        gram, xy = zc.T @ zc / len(z), zc.T @ (zy - ym) / len(z)
        vals, vecs = np.linalg.eigh(gram)  # one decomposition for every penalty
        proj = vecs.T @ xy
        for lam in penalties:
            coef = (vecs @ (proj / (vals + lam)[:, None])).T
            out[lam].append(_LearWindow(sx, sy, coef, ym - coef @ zm, np.full(HOURS, lam), w))
    if not any(out.values()):
        raise InvalidSeriesError(f"the ridge model needs at least {min(windows) + FIRST_TARGET - 28} days of "
                                 f"prices before the first target day; got {end}")
    return out


def predict_lear(models: list[_LearWindow], days: Days, idx: np.ndarray) -> np.ndarray:
    x = lear_design(days, np.asarray(idx))
    return np.mean([m.predict(x) for m in models], axis=0)


# ---------------------------------------------------------------- LightGBM (one row per day and hour)

def tree_design(days: Days, idx: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """(day, hour) rows for the target day indices, prices relative to d-1's mean; returns the rows and the
    per-row level (d-1's mean price) to add back."""
    cols, level = _tree_columns(days, np.asarray(idx))
    return pd.DataFrame(cols), level


def _tree_columns(days: Days, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """tree_design's columns by name, in the trees' feature order."""
    n = len(idx)
    level = days.price[idx - 1].mean(axis=1)
    rel = lambda a: (a - level[:, None]).ravel()  # noqa: E731
    cols: dict[str, np.ndarray] = {"hour": np.tile(np.arange(HOURS), n),
                                   "dow": np.repeat(days.dates[idx].dayofweek.to_numpy(), HOURS),
                                   "holiday": np.repeat(days.holiday[idx], HOURS)}
    for k in LAGS:
        cols[f"price_d{k}"] = rel(days.price[idx - k])
    prev = days.price[idx - 1]
    for name, fn in (("min", np.min), ("max", np.max)):
        cols[f"price_d1_{name}"] = np.repeat(fn(prev, axis=1) - level, HOURS)
    cols["price_d1_last"] = np.repeat(prev[:, -1] - level, HOURS)
    cols["level"] = np.repeat(level, HOURS)
    for e, name in enumerate(days.exog_names):
        target = days.exog[idx, e]
        cols[name] = target.ravel()
        cols[f"{name}_day_mean"] = np.repeat(target.mean(axis=1), HOURS)
        for k in EXOG_LAGS[1:]:  # d-1, d-7
            cols[f"{name}_diff_d{k}"] = (target - days.exog[idx - k, e]).ravel()
        cols[f"{name}_diff_d1_mean"] = np.repeat(target.mean(axis=1) - days.exog[idx - 1, e].mean(axis=1), HOURS)
    return cols, np.repeat(level, HOURS)


def fit_tree(days: Days, end: int, window: int = 1456, params: dict | None = None):
    import lightgbm as lgb

    idx = np.arange(max(FIRST_TARGET, end - window), end)
    x, level = tree_design(days, idx)
    return lgb.LGBMRegressor(**(params or LGB_PARAMS)).fit(x, days.price[idx].ravel() - level)


def predict_tree(model, days: Days, idx: np.ndarray) -> np.ndarray:
    """The fitted regressor's booster on tree_design's rows as one float matrix (the numbers the regressor's
    predict gives on the frame, without its checks and conversion); one thread, as LGB_PARAMS trains."""
    cols, level = _tree_columns(days, np.asarray(idx))
    x = np.column_stack(list(cols.values())).astype(float, copy=False)
    return (model.booster_.predict(x, num_threads=1) + level).reshape(len(idx), HOURS)


# ---------------------------------------------------------------- the forecaster

@dataclass
class PriceForecaster:
    """The weighted mean of LEAR, the ridge model and LightGBM (weights and ridge penalty as chosen on validation
    days), with conformal p10/p90 bands from recent out-of-sample errors per hour."""

    market: str
    weights: dict = field(default_factory=lambda: {"lear": 0.0, "ridge": 0.25, "tree": 0.75})
    ridge_penalty: float = 0.03
    lear_windows: tuple[int, ...] = LEAR_WINDOWS
    models: dict = field(default_factory=dict)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros((0, HOURS)))  # (n days, 24): y - p50

    def fit(self, days: Days, end: int) -> PriceForecaster:
        """Fit the parts with a non-zero weight on the target days before index `end`."""
        if self.weights.get("lear"):
            self.models["lear"] = fit_lear(days, end, self.lear_windows)
        if self.weights.get("ridge"):
            self.models["ridge"] = fit_ridge(days, end, (self.ridge_penalty,), self.lear_windows)[self.ridge_penalty]
        if self.weights.get("tree"):
            self.models["tree"] = fit_tree(days, end)
        return self

    def point(self, days: Days, idx) -> np.ndarray:
        idx = np.asarray(idx)
        out = np.zeros((len(idx), HOURS))
        for part, w in self.weights.items():
            if w:
                out += w * (predict_tree(self.models[part], days, idx) if part == "tree"
                            else predict_lear(self.models[part], days, idx))
        return out

    def bands(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-hour offsets (p10, p90) from the recent residuals; zero when there are none yet."""
        if len(self.residuals) == 0:
            return np.zeros(HOURS), np.zeros(HOURS)
        return np.quantile(self.residuals, 0.1, axis=0), np.quantile(self.residuals, 0.9, axis=0)

    def quantiles(self, days: Days, idx) -> dict[str, np.ndarray]:
        p50 = self.point(days, idx)
        lo, hi = self.bands()
        return {"p10": p50 + lo, "p50": p50, "p90": p50 + hi}
