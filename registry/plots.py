"""Figures logged with each model version (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # headless machines fall back to Agg; notebooks keep their inline backend
import numpy as np
import pandas as pd

from registry.design import HORIZON

MAX_PANELS = 6


def save_png(fig, path) -> Path:
    """Write a figure as PNG (creating its folder) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def forecast_band(rows: pd.DataFrame, pred: pd.DataFrame, max_horizon: int = 24):
    """Day-ahead forecasts on the held-out days: p10-p90 band, p50 and actuals, one panel per asset."""
    day = rows[rows[HORIZON] <= max_horizon]
    assets = sorted(day["asset_id"].unique())[:MAX_PANELS]
    fig, axes = plt.subplots(len(assets), 1, figsize=(12, 2.8 * len(assets)), squeeze=False)
    for ax, asset in zip(axes[:, 0], assets, strict=True):
        part = day[day["asset_id"] == asset].sort_values("target_time")
        p = pred.loc[part.index]
        t = part["target_time"]
        ax.fill_between(t, p["p10"], p["p90"], color="tab:blue", alpha=0.25, label="p10–p90")
        ax.plot(t, p["p50"], color="tab:blue", lw=1.2, label="p50")
        ax.plot(t, part["y"], color="black", lw=0.9, label="actual")
        ax.plot(t, part["naive_168"], color="tab:orange", lw=0.8, ls="--", label="naive 168 h")
        ax.set_title(f"{asset}: day-ahead forecasts on held-out days", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    return fig


def error_by_horizon(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(9, 4))
    for col, style in (("model", "-"), ("naive_24", "--"), ("naive_168", ":")):
        ax.plot(table.index, table[col], style, label=col)
    ax.set_xlabel("horizon (h)")
    ax.set_ylabel("MAE")
    ax.set_title("Held-out MAE by horizon")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def feature_importance(booster, top: int = 20):
    gain = booster.feature_importance(importance_type="gain")
    names = np.array(booster.feature_name())
    order = np.argsort(gain)[-top:]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(order) + 1))
    ax.barh(names[order], gain[order] / max(gain.sum(), 1e-12), color="tab:blue")
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance (point model)")
    fig.tight_layout()
    return fig


def shap_summary(shap_values: np.ndarray, X: pd.DataFrame):
    import shap

    shap.summary_plot(shap_values, X, show=False, max_display=20)
    fig = plt.gcf()
    fig.set_size_inches(9, 7)
    fig.tight_layout()
    return fig


def anomaly_scores(frame: pd.DataFrame, threshold: float, title: str):
    """Score over time per asset with the flagging threshold."""
    assets = sorted(frame["asset_id"].unique())[:MAX_PANELS]
    fig, axes = plt.subplots(len(assets), 1, figsize=(12, 2.4 * len(assets)), squeeze=False)
    for ax, asset in zip(axes[:, 0], assets, strict=True):
        part = frame[frame["asset_id"] == asset].sort_values("event_timestamp")
        ax.plot(part["event_timestamp"], part["score"], lw=0.7, color="tab:blue")
        flagged = part[part["score"] >= threshold]
        ax.scatter(flagged["event_timestamp"], flagged["score"], s=10, color="tab:red", zorder=3)
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.8)
        ax.set_title(f"{asset}: {title}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
