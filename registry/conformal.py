"""Split-conformal calibration of a p10-p90 band (conformalized quantile regression, Romano et al. 2019), shared by
the sub-hourly load forecaster (registry/train_step.calibrate) and the PV forecaster (registry/pv.PVModel.calibrate).
Pure (no I/O).

The method: p10/p90 fitted without the last `days` of training (`split`), scored on the forecasts issued inside
those days; each row's conformity score is max(p10 - y, y - p90) (positive: outside the band by that much), and per
horizon bucket the band moves by the score's `coverage` quantile at the finite-sample level ceil((n + 1) x
coverage) / n (`widening`), so that `coverage` of those forecasts would have fallen inside. A bucket with fewer than
`min_rows` scores takes the all-bucket figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COVERAGE = 0.8  # the p10-p90 band's nominal coverage


def split(issue, target, group, days: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows to fit on, rows to score) of training rows with their issue and target times and their series
    (`group`, e.g. the asset): per series, the rows whose target is before its last `days` of training, and those
    issued inside them. None when a series' window before those days is shorter than `days` (too short to hold
    them out)."""
    issue, target = (pd.Series(pd.to_datetime(np.asarray(t), utc=True)) for t in (issue, target))
    group = pd.Series(np.asarray(group))
    cut = target.groupby(group).transform("max") - pd.Timedelta(days=days)
    if ((cut - issue.groupby(group).transform("min")) < pd.Timedelta(days=days)).any():
        return None
    return (target < cut).to_numpy(), (issue >= cut).to_numpy()


def level(n: int, coverage: float = COVERAGE) -> float:
    """The finite-sample quantile level of `n` scores: ceil((n + 1) x coverage) / n, at most 1."""
    return min(1.0, np.ceil((n + 1) * coverage) / n)


def widening(lo, hi, y, which, buckets: int, min_rows: int, coverage: float = COVERAGE) -> dict:
    """How far to move p10 down and p90 up (negative: narrow) per bucket (`which`: each row's bucket, 0 ..
    buckets - 1), from the rows' band [lo, hi] and outcome y: {"by_bucket", "rows" (scores per bucket), "overall"}."""
    y = np.asarray(y, dtype=float)
    score = np.maximum(np.asarray(lo, dtype=float) - y, y - np.asarray(hi, dtype=float))
    which = np.asarray(which)
    overall = float(np.quantile(score, level(len(score), coverage)))
    by_bucket, rows = [], []
    for b in range(buckets):
        s = score[which == b]
        rows.append(int(len(s)))
        by_bucket.append(float(np.quantile(s, level(len(s), coverage))) if len(s) >= min_rows else overall)
    return {"by_bucket": by_bucket, "rows": rows, "overall": overall, "coverage": coverage}
