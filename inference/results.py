"""Result objects of the SDK calls: a DataFrame, metadata, `.to_dict()` for JSON and `.plot()`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.formats import number


def _jsonable(value):
    if value is pd.NaT:  # the missing time (e.g. the start of an empty anomaly range)
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [_jsonable(r) for r in frame.to_dict(orient="records")]


def _iso_times(index: pd.DatetimeIndex) -> list[str | None]:
    """Timestamp.isoformat() of each time (None for NaT); UTC times in whole seconds, the forecast's
    target hours, are formatted by NumPy at once."""
    if str(index.tz) == "UTC" and not index.hasnans:
        ns = index.asi8  # UTC nanoseconds: formatting them needs no tz conversion
        if not (ns % 1_000_000_000).any():
            return [t + "+00:00" for t in np.datetime_as_string(ns.view("M8[ns]"), unit="s").tolist()]
    return [None if t is pd.NaT else t.isoformat() for t in index]


def _column_records(columns: dict) -> list[dict]:
    """Records of columns (arrays) without building a DataFrame (the serving hot path): times as ISO
    8601, numbers as Python numbers, NaN as None; the same values `_records` gives for their frame."""
    out: dict[str, list] = {}
    for name, values in columns.items():
        if isinstance(values, pd.DatetimeIndex):
            out[name] = _iso_times(values)
        elif np.asarray(values).dtype.kind == "M":
            out[name] = _iso_times(pd.DatetimeIndex(values))
        else:
            array = np.asarray(values)
            listed = array.tolist()
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                listed = [v if math.isfinite(v) else None for v in listed]
            out[name] = listed
    names = list(out)
    return [dict(zip(names, row, strict=True)) for row in zip(*out.values(), strict=True)]


def _figure():
    import matplotlib.pyplot as plt  # the caller's backend: inline in notebooks, Agg when headless

    return plt


def _finish(fig, ax):
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class ForecastResult:
    tenant: str
    asset: str
    # timestamp (target hour start, UTC), horizon_h, point, p10, p50, p90, lower, upper: a DataFrame, or
    # the columns (dict of arrays) it is built from on first use
    _frame: pd.DataFrame | dict = field(repr=False)
    model_id: str
    stage: str
    feature_service: str
    features: dict[str, float | None]  # issue-time feature values the model used
    feature_time: pd.Timestamp  # end of the last complete hour they describe
    feature_age_seconds: float
    source: str  # online | offline | history
    training_metrics: dict[str, float]
    generated_at: pd.Timestamp
    warnings: list[str] = field(default_factory=list)
    history: pd.Series | None = field(default=None, repr=False)  # hourly means by hour start, for plots
    history_loader: Callable[[], pd.Series] | None = field(default=None, repr=False)  # read on first plot

    @property
    def frame(self) -> pd.DataFrame:
        if isinstance(self._frame, dict):
            self._frame = pd.DataFrame(self._frame)
        return self._frame

    @property
    def version(self) -> int:
        return int(self.model_id.rsplit(":", 1)[1])

    @property
    def fallback(self) -> bool:
        return self.source == "offline"

    def to_dict(self) -> dict:
        meta = {k: getattr(self, k) for k in ("tenant", "asset", "model_id", "version", "stage", "feature_service",
                                              "features", "feature_time", "feature_age_seconds", "source",
                                              "fallback", "training_metrics", "generated_at", "warnings")}
        return {**_jsonable(meta), "forecast": _records(self.frame) if isinstance(self._frame, pd.DataFrame)
                else _column_records(self._frame)}

    def plot(self, ax=None, history_hours: int = 168):
        """History (last week) and the forecast: p10-p90 band, p50 and point."""
        plt = _figure()
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(11, 4))
        if self.history is None and self.history_loader is not None:
            self.history = self.history_loader()
        if self.history is not None and len(self.history):
            h = self.history[self.history.index >= self.feature_time - pd.Timedelta(hours=history_hours)]
            ax.plot(h.index, h.to_numpy(), color="black", lw=1, label="actual (hourly mean)")
        f = self.frame
        if "p10" in f:
            ax.fill_between(f["timestamp"], f["p10"], f["p90"], color="tab:blue", alpha=0.25, label="p10–p90")
            ax.plot(f["timestamp"], f["p50"], color="tab:blue", lw=1.4, label="p50")
        ax.plot(f["timestamp"], f["point"], color="tab:orange", lw=1, ls="--", label="point")
        ax.axvline(self.feature_time, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{self.tenant}/{self.asset}: {len(f)} h forecast · {self.model_id} ({self.stage}, {self.source})")
        return _finish(fig, ax)


@dataclass
class AnomalyResult:
    tenant: str
    asset: str
    frame: pd.DataFrame  # timestamp, value, score, is_anomaly, severity, expected_min/max/mean/std, explanation
    summary: dict
    model_id: str | None
    source: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"tenant": self.tenant, "asset": self.asset, "model_id": self.model_id, "source": self.source,
                "warnings": self.warnings, "summary": _jsonable(self.summary), "points": _records(self.frame)}

    def plot(self, ax=None):
        """The series with its expected range; anomalies marked by severity."""
        plt = _figure()
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(11, 4))
        f = self.frame
        ax.fill_between(f["timestamp"], f["expected_min"], f["expected_max"], color="tab:green", alpha=0.15,
                        label="expected range")
        ax.plot(f["timestamp"], f["value"], color="black", lw=0.9, label="hourly mean")
        colours = {"low": "gold", "medium": "orange", "high": "tab:red", "critical": "darkred"}
        for sev, colour in colours.items():
            hit = f[f["is_anomaly"] & (f["severity"] == sev)]
            if len(hit):
                ax.scatter(hit["timestamp"], hit["value"], color=colour, s=28, zorder=3, label=sev)
        s = self.summary
        ax.set_title(f"{self.tenant}/{self.asset}: {s['anomalies']} anomalies in {s['points']} h · {s['method']}, "
                     f"sensitivity {s['sensitivity']}")
        return _finish(fig, ax)


@dataclass
class Explanation:
    model_id: str
    target_time: pd.Timestamp | None
    prediction: float
    base_value: float
    # feature, value, contribution (load units), sorted by |contribution|: a DataFrame, or a function
    # that builds it on first use (an explanation read for its prediction or summary never pays pandas)
    _contributions: pd.DataFrame | Callable[[], pd.DataFrame] = field(repr=False)
    summary: str
    warnings: list[str] = field(default_factory=list)  # stale features and the like, one sentence each

    @property
    def contributions(self) -> pd.DataFrame:
        if callable(self._contributions):
            self._contributions = self._contributions()
        return self._contributions

    def waterfall(self) -> list[dict]:
        """Steps from the base value to the prediction, largest effect first."""
        steps, running = [], self.base_value
        for r in self.contributions.itertuples():
            steps.append({"feature": r.feature, "value": r.value, "contribution": r.contribution,
                          "start": running, "end": running + r.contribution})
            running += r.contribution
        return _jsonable(steps)

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "target_time": _jsonable(self.target_time),
                "prediction": _jsonable(self.prediction), "base_value": _jsonable(self.base_value),
                "summary": self.summary, "contributions": _records(self.contributions), "waterfall": self.waterfall(),
                "warnings": self.warnings}

    def plot(self, max_display: int = 12):
        """Waterfall: from the base value, each feature's push (largest first) to the prediction."""
        plt = _figure()
        steps = self.waterfall()
        shown, rest = steps[:max_display], steps[max_display:]
        if rest:
            shown.append({"feature": f"{len(rest)} other features", "value": None, "start": rest[0]["start"],
                          "end": rest[-1]["end"], "contribution": rest[-1]["end"] - rest[0]["start"]})
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.6))
        for i, step in enumerate(reversed(shown)):
            colour = "tab:red" if step["contribution"] >= 0 else "tab:blue"
            ax.barh(i, step["end"] - step["start"], left=step["start"], color=colour)
            ax.text(max(step["start"], step["end"]), i, f" {step['contribution']:+,.1f}", va="center", fontsize=8)
        labels = [s["feature"] if s["value"] is None else f"{s['feature']} = {shown_value(s['value'])}" for s in shown]
        ax.set_yticks(range(len(shown)), list(reversed(labels)), fontsize=8)
        ax.axvline(self.base_value, color="grey", ls=":", lw=0.8)
        ax.axvline(self.prediction, color="black", ls="--", lw=0.8)
        ax.set_title(f"{self.model_id}: base {self.base_value:,.1f} → prediction {self.prediction:,.1f}", fontsize=10)
        fig.tight_layout()
        return fig


def shown_value(value) -> str:
    """An input's value as explanations show it: numbers to 4 significant digits, the asset input as its
    id, a missing value as a dash."""
    return number(value, ",.4g")


@dataclass
class GlobalExplanation:
    model_id: str
    importance: pd.DataFrame  # feature, mean_abs_shap (scaled units), share

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "importance": _records(self.importance)}

    def plot(self):
        plt = _figure()
        imp = self.importance.iloc[::-1]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(imp) + 1))
        ax.barh(imp["feature"], imp["share"], color="tab:blue")
        ax.set_xlabel("share of mean |SHAP|")
        ax.set_title(f"Global importance · {self.model_id}")
        fig.tight_layout()
        return fig
