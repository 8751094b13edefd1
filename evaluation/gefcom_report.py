"""The GEFCom2012 evaluation's outputs: one JSON document and a PNG of a sample window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.gefcom import PERSISTENCE_RMSE, Result


def _records(frame: pd.DataFrame) -> dict:
    return {str(k): {c: (None if pd.isna(v) else float(v) if isinstance(v, int | float | np.number) else str(v))
                     for c, v in row.items()} for k, row in frame.iterrows()}


def doc(result: Result) -> dict:
    """Scores per farm and all (with the persistence benchmark on the same rows), by horizon bucket, the
    worst windows, the settings chosen on the training period and the timings."""
    worst = result.worst.assign(origin=result.worst["origin"].astype(str))
    return {"protocol": "gefcom2012-wind", "persistence_reference_rmse": PERSISTENCE_RMSE,
            "scores": _records(result.scores), "by_horizon": _records(result.by_horizon),
            "worst_windows": worst.to_dict(orient="records"), "settings": result.settings,
            "timings": result.timings}


def sample_window(result: Result) -> tuple[str, pd.Timestamp]:
    """The (farm, origin) whose window RMSE is the median of all windows: a typical window, not a chosen one."""
    t = result.test
    per = t.groupby(["unit", "origin"]).apply(lambda p: np.sqrt(np.mean((p["point"] - p["truth"]) ** 2)),
                                              include_groups=False).sort_values()
    return per.index[len(per) // 2]


def plot(result: Result, path: Path, window: tuple[str, pd.Timestamp] | None = None) -> Path:
    """Actual power, p50, point, p10-p90 band and persistence over one test window (capacity units)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from registry.plots import save_png

    unit, origin = window or sample_window(result)
    p = result.test[(result.test["unit"] == unit) & (result.test["origin"] == origin)].sort_values("target")
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.fill_between(p["target"], p["p10"], p["p90"], color="tab:blue", alpha=0.25, label="p10–p90")
    ax.plot(p["target"], p["p50"], color="tab:blue", lw=1.2, label="p50")
    ax.plot(p["target"], p["point"], color="tab:blue", lw=0.8, ls=":", label="point (mean)")
    ax.plot(p["target"], p["truth"], color="black", lw=1.0, label="actual")
    ax.plot(p["target"], p["persistence"], color="tab:orange", lw=0.9, ls="--", label="persistence")
    rmse = np.sqrt(np.mean((p["point"] - p["truth"]) ** 2))
    ax.set_title(f"GEFCom2012 {unit}, window from {origin:%Y-%m-%d %H:%M} (RMSE {rmse:.3f}; median window)",
                 fontsize=10)
    ax.set_ylabel("power / capacity")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=5)
    fig.tight_layout()
    return save_png(fig, path)
