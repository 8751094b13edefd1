"""Forecast accuracy metrics (pure numpy). Errors are forecast - actual; NaN rows are skipped."""

from __future__ import annotations

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)


def _valid(*arrays) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return tuple(a[keep] for a in arrays)


def mae(y, yhat) -> float:
    y, yhat = _valid(y, yhat)
    return float(np.mean(np.abs(yhat - y))) if len(y) else float("nan")


def rmse(y, yhat) -> float:
    y, yhat = _valid(y, yhat)
    return float(np.sqrt(np.mean((yhat - y) ** 2))) if len(y) else float("nan")


def mape(y, yhat) -> float:
    """Mean absolute percentage error in %, over rows whose actual is not zero."""
    y, yhat = _valid(y, yhat)
    nz = y != 0
    return float(np.mean(np.abs((yhat[nz] - y[nz]) / y[nz])) * 100) if nz.any() else float("nan")


def smape(y, yhat) -> float:
    """Symmetric MAPE in % (0..200); rows where both are zero count as 0."""
    y, yhat = _valid(y, yhat)
    denom = np.abs(y) + np.abs(yhat)
    terms = np.divide(2 * np.abs(yhat - y), denom, out=np.zeros_like(denom), where=denom != 0)
    return float(np.mean(terms) * 100) if len(y) else float("nan")


def mase(y, yhat, scale) -> float:
    """Mean absolute scaled error: each row's |error| over its series' in-sample seasonal-naive MAE
    (`scale`, per row), so series of different size weigh equally (Hyndman & Koehler 2006)."""
    y, yhat, scale = _valid(y, yhat, scale)
    ok = scale > 0
    return float(np.mean(np.abs(yhat[ok] - y[ok]) / scale[ok])) if ok.any() else float("nan")


def pinball(y, q_pred, q: float) -> float:
    """Mean quantile (pinball) loss of a q-quantile forecast."""
    if not 0 < q < 1:
        raise ValueError(f"quantile q={q} is out of range (0, 1)")
    y, q_pred = _valid(y, q_pred)
    diff = y - q_pred
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff))) if len(y) else float("nan")


def coverage(y, lower, upper) -> float:
    """Share of actuals inside [lower, upper]."""
    y, lower, upper = _valid(y, lower, upper)
    return float(np.mean((y >= lower) & (y <= upper))) if len(y) else float("nan")
