"""Drift and freshness checks of one tenant's features, with alert records (warehouse/monitor.py).

- PSI (population stability index) per feature and asset: the feature's stored hourly values in the
  last `recent_days` days (ending at the tenant's newest feature hour) against the reference window
  (default: the serving forecaster's training window, tags training_window_start/_end). Bins are the
  reference's deciles (`BINS`), shares clipped at `EPS` so an empty bin does not make it infinite;
  PSI = sum((recent - reference) * ln(recent / reference)). Common reading: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 a shift (the default threshold). Only on the hourly-valued features (`PSI_FEATURES`:
  the lags and the weather): the rolling 24 h / 168 h statistics move slowly, so a week of them is a
  handful of independent values and their PSI is large on stable data (Tetouan zone 1, each week of
  2017-01/02 against the 4 weeks before 2017-02-19: historical_avg_24h 0.46-3.95, lag_1h 0.02-0.22).
- Nulls: a feature's share of NULLs in the recent window minus its share in the reference (a feature
  that was always NULL, e.g. weather of an asset without a site, does not alarm).
- Feature age: hours from an asset's online (Redis) feature row to `now`; materialization lag: hours
  by which an asset's online row trails its latest reading (inference/freshness.py), per tenant the worst.
Every crossing is one alert record (one open alert per asset, kind and subject: rechecks update it)
and one warning log line. `now` is injectable (tests, backfills of historical data).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError
from core.names import DEFAULT_FORECAST_NAME, TAG_WINDOW_END, TAG_WINDOW_START, check_tenant_id

logger = logging.getLogger(__name__)

BINS = 10
EPS = 1e-4
MIN_VALUES = 24  # fewer non-null values in either window: no PSI for that feature and asset
PSI_FEATURES = ("lag_1h", "lag_24h", "lag_168h", "temperature", "humidity", "solar_irradiance", "wind_speed")


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.25
    nulls: float = 0.2  # increase of the NULL share over the reference
    feature_age_hours: float = 3.0  # the feature views' TTL: older online rows are treated as missing
    materialization_lag_hours: float = 2.0

    def check(self) -> Thresholds:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgumentError(f"threshold {name}={value!r} must be a positive number")
        return self


@dataclass
class DriftReport:
    tenant: str
    reference: tuple[str, str]
    recent: tuple[str, str]
    psi: dict[str, dict[str, float]] = field(default_factory=dict)  # asset -> feature -> PSI
    nulls: dict[str, dict[str, float]] = field(default_factory=dict)  # asset -> feature -> share increase
    feature_age_hours: dict[str, float | None] = field(default_factory=dict)
    materialization_lag_hours: float | None = None
    crossings: list[dict] = field(default_factory=list)
    recorded: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["crossings"] = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in c.items()}
                            for c in self.crossings]
        return out


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = BINS) -> float:
    """Population stability index of `recent` against `reference` on the reference's quantile bins."""
    ref = np.asarray(reference, dtype=float)
    new = np.asarray(recent, dtype=float)
    ref, new = ref[~np.isnan(ref)], new[~np.isnan(new)]
    if len(ref) == 0 or len(new) == 0:
        raise InvalidArgumentError(f"PSI needs values in both windows (reference {len(ref)}, recent {len(new)})")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    a = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1) / len(new)
    e, a = np.clip(e, EPS, None), np.clip(a, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _reference_window(ems, tenant: str) -> tuple[datetime, datetime]:
    from registry import lifecycle

    info = lifecycle.resolve_production(ems.mlflow, tenant, DEFAULT_FORECAST_NAME)
    start, end = info.tags.get(TAG_WINDOW_START), info.tags.get(TAG_WINDOW_END)
    if not start or not end:
        raise InvalidArgumentError(f"{info.id} records no training window; pass the reference window explicitly")
    return pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()


def check(ems, tenant: str, reference: tuple[datetime, datetime] | None = None, recent_days: int = 7,
          thresholds: Thresholds | None = None, now: datetime | None = None, record: bool = True) -> DriftReport:
    """Run every check for `tenant` (`ems`: pipelines.runtime.Runtime-like: settings, store, mlflow) and
    record the crossings as alerts (module docstring)."""
    from inference.freshness import check as freshness
    from warehouse import monitor
    from warehouse.db import connect

    check_tenant_id(tenant)
    th = (thresholds or Thresholds()).check()
    if isinstance(recent_days, bool) or not isinstance(recent_days, int) or not 1 <= recent_days <= 90:
        raise InvalidArgumentError(f"recent_days={recent_days!r} is out of range 1..90")
    now = now or datetime.now(UTC)
    ref_start, ref_end = reference or _reference_window(ems, tenant)
    with connect(ems.settings) as conn:
        fresh = freshness(conn, ems.store, tenant)
    ends = [f.features_end for f in fresh if f.features_end]
    if not ends:
        raise InvalidArgumentError(f"tenant {tenant!r} has no feature rows: ingest and `ems refresh` first")
    recent_end = max(ends)
    recent_start = recent_end - timedelta(days=recent_days)
    report = DriftReport(tenant, (pd.Timestamp(ref_start).isoformat(), pd.Timestamp(ref_end).isoformat()),
                         (recent_start.isoformat(), recent_end.isoformat()))
    ref = monitor.feature_values(ems.settings, tenant, ref_start, ref_end)
    new = monitor.feature_values(ems.settings, tenant, recent_start, recent_end)
    for asset, r in new.groupby("asset_id", sort=True):
        e = ref[ref["asset_id"] == asset]
        report.psi[asset], report.nulls[asset] = {}, {}
        for feature in monitor.FEATURES:
            rv, ev = r[feature].to_numpy(), e[feature].to_numpy()
            if len(ev):
                report.nulls[asset][feature] = float(np.isnan(rv).mean() - np.isnan(ev).mean())
                if report.nulls[asset][feature] > th.nulls:
                    report.crossings.append(_crossing(asset, "nulls", feature, report.nulls[asset][feature],
                                                      th.nulls, recent_start, recent_end))
            if feature in PSI_FEATURES and (~np.isnan(rv)).sum() >= MIN_VALUES and (~np.isnan(ev)).sum() >= MIN_VALUES:
                value = report.psi[asset][feature] = psi(ev, rv)
                if value > th.psi:
                    report.crossings.append(_crossing(asset, "psi", feature, value, th.psi, recent_start, recent_end))
    for f in fresh:
        age = (now - f.online_end).total_seconds() / 3600 if f.online_end else None
        report.feature_age_hours[f.asset_id] = age
        if age is None or age > th.feature_age_hours:
            report.crossings.append(_crossing(f.asset_id, "feature_age", "online", age if age is not None else
                                              float("inf"), th.feature_age_hours, f.online_end, now))
    lags = [f.lag_hours for f in fresh]
    report.materialization_lag_hours = max(lags) if lags else None
    if lags and max(lags) > th.materialization_lag_hours:
        report.crossings.append(_crossing("", "materialization_lag", "tenant", max(lags),
                                          th.materialization_lag_hours, None, now))
    for c in report.crossings:
        logger.warning("drift alert %s/%s %s %s = %.3f > %.3f", tenant, c["asset"] or "-", c["kind"], c["subject"],
                       c["value"], c["threshold"])
    if record and report.crossings:
        report.recorded = monitor.raise_alerts(ems.settings, tenant, [
            {**c, "value": c["value"] if np.isfinite(c["value"]) else 1e9} for c in report.crossings])
    return report


def _crossing(asset: str, kind: str, subject: str, value: float, threshold: float, start, end) -> dict:
    return {"asset": asset, "kind": kind, "subject": subject, "value": float(value), "threshold": float(threshold),
            "start": start, "end": end}
