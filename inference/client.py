"""The SDK: forecast, detect_anomalies, explain and explain_global over Feast features and the
production models in MLflow. `Client` holds the settings, the Feast store and the model cache; the
module-level functions in `inference` use one default client.

    >>> from inference import forecast, detect_anomalies, explain
    >>> f = forecast("demo", "zone1", horizon=24)
    >>> f.frame.head(); f.plot()
    >>> a = detect_anomalies("demo", "zone1", method="z_score", lookback_hours=168)
    >>> e = explain("demo", "zone1", horizon=1); print(e.summary)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import psycopg
from cachetools import LRUCache, TTLCache

from core.errors import (
    EmsError,
    InvalidArgumentError,
    InvalidHorizonError,
    InvalidRangeError,
    InvalidSeriesError,
    ModelNotFoundError,
)
from core.formats import number
from core.names import (
    DEFAULT_FORECAST_NAME,
    DETECT_METHODS,
    FORECAST_RESIDUAL,
    InvalidMethodError,
    check_asset_id,
    check_model_name,
    check_tenant_id,
    parse_model_id,
)
from inference import features as feats
from inference.history import hourly
from inference.models import ModelCache, Served
from inference.results import AnomalyResult, Explanation, ForecastResult, GlobalExplanation, shown_value
from registry import lifecycle
from registry.design import HORIZON, HOUR, MAX_HORIZON, uses_peers
from registry.severity import check_sensitivity, severities, threshold

logger = logging.getLogger(__name__)

P10_P90_SIGMAS = 2.563  # width of a normal's p10-p90 interval in sigmas
MAX_LOOKBACK_HOURS = feats.MAX_RANGE_HOURS
RECENT_CACHE_SIZE = 4096  # (model, asset, issue hour) recent-residual calibrations kept


def check_horizon(horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer):
        raise InvalidHorizonError(f"horizon={horizon!r} is not a whole number of hours; use 1..{MAX_HORIZON}")
    if not 1 <= horizon <= MAX_HORIZON:
        raise InvalidHorizonError(f"horizon={horizon!r} is out of range 1..{MAX_HORIZON} (hours)")
    return int(horizon)


def check_model(model, tenant: str) -> str | None:
    """None (the production default), a model name (its production version) or an id tenant:name:version
    of one of the tenant's models (another tenant's is refused before anything of it is loaded)."""
    if isinstance(model, str) and ":" in model:
        owner = parse_model_id(model).tenant
        if owner != tenant:
            raise ModelNotFoundError(f"model {model} belongs to tenant {owner!r}, not {tenant!r}")
    elif model is not None:
        check_model_name(model)
    return model


def check_time(value, name: str):
    """A time argument: None, a datetime/Timestamp or ISO 8601 text (naive means UTC)."""
    if value is None:
        return None
    try:
        ok = isinstance(value, str | date | np.datetime64) and not pd.isna(pd.Timestamp(value))
    except ValueError:  # unparseable text, or outside pandas' time range
        ok = False
    if not ok:
        raise InvalidArgumentError(f"{name}={value!r} is not a time; use a datetime or ISO 8601 text, "
                                   "e.g. 2024-01-31T12:00:00Z")
    return value


def check_timezone(timezone) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise InvalidArgumentError(f"timezone={timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from e
    return timezone


def check_series(series, name: str) -> None:
    """None or a pandas Series on a DatetimeIndex (its values are checked where they are used)."""
    if series is not None and not (isinstance(series, pd.Series) and isinstance(series.index, pd.DatetimeIndex)):
        raise InvalidSeriesError(f"{name} must be a pandas Series indexed by timestamps (DatetimeIndex), "
                                 f"not {type(series).__name__}")


class Client:
    def __init__(self, settings=None, store=None, model_ttl_seconds: float = 30.0, max_models: int = 8,
                 latest_ttl_seconds: float = 5.0):
        from core.settings import Settings

        self.settings = settings or Settings()
        self._store = store
        lifecycle.fail_fast(10)  # a down registry fails over to the cached model in seconds
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.models = ModelCache(self.settings.mlflow_tracking_uri, model_ttl_seconds, max_models,
                                 settings=self.settings)
        self._db = None  # one warehouse connection per client (latest-hour lookups)
        # Each asset's latest complete hour (the issue time) is looked up at most every
        # latest_ttl_seconds: a new hour is served that much later, and the hot path needs no query.
        self.latest_ttl_seconds = latest_ttl_seconds
        self._latest: TTLCache = TTLCache(maxsize=10_000, ttl=latest_ttl_seconds, timer=time.monotonic)
        self._recent: LRUCache = LRUCache(maxsize=RECENT_CACHE_SIZE)  # _recent_widths

    def _conn(self):
        """The client's autocommit connection, reopened if it broke."""
        if self._db is None or self._db.closed or self._db.broken:
            from warehouse.db import open_connection

            self._db = open_connection(self.settings, autocommit=True)
        return self._db

    def _latest_times(self, tenant: str, asset: str) -> tuple:
        """(end of the asset's latest complete hour, end of its latest reading's hour), cached for
        latest_ttl_seconds."""
        key = (tenant, asset)
        hit = self._latest.get(key)
        if hit is None:
            from warehouse.store import latest_times

            try:
                hit = latest_times(self.settings, tenant, [asset], self._conn())[asset]
            except psycopg.OperationalError:
                if not self._db.broken:
                    raise
                # Postgres restarted or stopped since the connection was last used: one new connection
                # (DatabaseUnavailableError, naming the address, if it is down).
                hit = latest_times(self.settings, tenant, [asset], self._conn())[asset]
            self._latest[key] = hit
        return hit

    def _issue_time(self, tenant: str, asset: str, as_of: datetime | None) -> pd.Timestamp:
        return feats.resolve_issue_time(self._latest_times(tenant, asset)[0], tenant, asset, as_of)

    def _behind(self, tenant: str, asset: str) -> list[str]:
        """[warning] when the asset's readings reach past its newest features."""
        from warehouse.store import behind_readings

        warning = behind_readings(asset, *self._latest_times(tenant, asset))
        return [warning] if warning else []

    @property
    def store(self):
        if self._store is None:
            from warehouse.store import get_store

            self._store = get_store(self.settings)
        return self._store

    # ------------------------------------------------------------------ models
    def _served(self, tenant: str, model: str | None, default_name: str, model_type: str) -> Served:
        if model is not None and ":" in model:
            served = self.models.version(check_model(model, tenant))
        else:
            served = self.models.production(tenant, check_model_name(model or default_name))
        if served.info.model_type != model_type:
            raise ModelNotFoundError(f"model {served.info.id} is a {served.info.model_type} model, not {model_type}")
        return served

    # ------------------------------------------------------------------ forecast
    def forecast(self, tenant: str, asset: str, horizon: int = 24, quantiles: bool = True, model: str | None = None,
                 as_of: datetime | None = None, history: pd.Series | None = None,
                 timezone: str = "UTC") -> ForecastResult:
        """Forecast the next `horizon` hours (1-168) of an asset's hourly mean load.

        model: a model id `tenant:name:version`, a model name (its production version) or None
        (`load_forecaster` in production). as_of: issue the forecast at a past hour (features from the
        offline store). history: a caller-supplied series for an asset the store does not know
        (timestamps -> values, any resolution; `timezone` names its calendar zone)."""
        check_tenant_id(tenant)
        check_asset_id(asset)
        horizon = check_horizon(horizon)
        if not isinstance(quantiles, bool | np.bool_):
            raise InvalidArgumentError(f"quantiles={quantiles!r} must be True (p10/p50/p90 and point) or False "
                                       "(point only)")
        check_model(model, tenant)
        check_time(as_of, "as_of")
        check_series(history, "history")
        check_timezone(timezone)
        # the asset first (one clear error for an unknown tenant/asset), then its model
        t = None if history is not None else self._issue_time(tenant, asset, as_of)
        served = self._served(tenant, model, DEFAULT_FORECAST_NAME, "forecast")
        inputs = self._forecast_inputs(served, tenant, asset, horizon, as_of, history, timezone, t)
        model = served.python_model
        recent, warnings = None, []
        if quantiles and history is None:
            recent, warnings = self._recent_widths(served, tenant, asset, inputs.issue_time)
        pred = model.predict_matrix(inputs.matrix(model.features), asset, recent=recent)
        columns = {"timestamp": inputs.target_start, HORIZON: np.arange(1, horizon + 1), "point": pred["point"]}
        if quantiles:
            columns.update(p10=pred["p10"], p50=pred["p50"], p90=pred["p90"], lower=pred["p10"], upper=pred["p90"])
        now = pd.Timestamp(datetime.now(UTC))
        return ForecastResult(
            tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
            feature_service=served.feature_service, features=inputs.values, feature_time=inputs.issue_time,
            feature_age_seconds=(now - inputs.issue_time).total_seconds(), source=inputs.source,
            training_metrics={k: served.metrics[k] for k in ("mae", "rmse", "mape", "dayahead_mase_168",
                                                              "coverage_p10_p90") if k in served.metrics},
            generated_at=now, warnings=[*served.warnings, *inputs.warnings, *warnings,
                                        *([] if as_of or history is not None else self._behind(tenant, asset))],
            history=hourly(history) if history is not None else None,
            history_loader=None if history is not None else _history_loader(self.settings, tenant, asset,
                                                                              inputs.issue_time),
        )

    def _recent_widths(self, served, tenant: str, asset: str, t: pd.Timestamp) -> tuple[list | None, list[str]]:
        """p10-p90 widening per horizon bucket from the model's forecasts of the last RECENT_DAYS days at
        this hour (registry/forecaster.py), computed once per model, asset and issue hour. Without them
        (a model without horizon_h, too little history, a failed read) the trained widening applies."""
        from registry.forecaster import recent_origins, recent_widths

        model = served.python_model
        if "horizon_h" not in getattr(model, "features", ()):
            return None, []
        key = (served.info.id, tenant, asset, t)
        if key not in self._recent:
            try:
                X, horizon, y = feats.recent_forecast_rows(self.settings, self.store, self._conn(), tenant, asset,
                                                           served.feature_service, model.features, t,
                                                           recent_origins(t))
                self._recent[key] = (recent_widths(horizon, model.nonconformity(X, y, asset)), [])
            except (EmsError, psycopg.Error, ValueError, KeyError) as e:
                logger.warning("recent-residual calibration of %s for %s failed: %s", served.info.id, asset, e)
                self._recent[key] = (None, [f"interval calibrated at training time (recent residuals unavailable: "
                                            f"{type(e).__name__})"])
        return self._recent[key]

    def _forecast_inputs(self, served, tenant, asset, horizon, as_of, history, timezone, t=None) -> feats.Inputs:
        peers = uses_peers(getattr(served.python_model, "features", ()))
        if history is not None:
            inputs = feats.history_forecast_inputs(self.store, served.feature_service, history, horizon, timezone)
            if peers:
                inputs.warnings.append("a supplied history has no site peers: the model's peer inputs are missing")
            return inputs
        return feats.forecast_inputs(self.settings, self.store, tenant, asset, served.feature_service, horizon, as_of,
                                     self._conn(), t, peers=peers)

    # ------------------------------------------------------------------ anomalies
    def detect_anomalies(self, tenant: str, asset: str, start=None, end=None, series: pd.Series | None = None,
                         method: str = "z_score", sensitivity: int = 3, lookback_hours: int = 168,
                         model: str | None = None, timezone: str = "UTC") -> AnomalyResult:
        """Score each hour in [start, end) (default: the last `lookback_hours` complete hours), or each
        hour of a caller-supplied `series`, with the tenant's production `anomaly_{method}` model (or the
        production forecaster's p10-p90 band for method="forecast_residual")."""
        check_tenant_id(tenant)
        check_asset_id(asset)
        if method not in DETECT_METHODS:
            raise InvalidMethodError(f"anomaly method {method!r} is not one of {', '.join(DETECT_METHODS)}")
        sensitivity = check_sensitivity(sensitivity)
        if isinstance(lookback_hours, bool) or not isinstance(lookback_hours, int) \
                or not 1 <= lookback_hours <= MAX_LOOKBACK_HOURS:
            raise InvalidRangeError(f"lookback_hours={lookback_hours!r} is out of range 1..{MAX_LOOKBACK_HOURS}")
        check_time(start, "start")
        check_time(end, "end")
        check_model(model, tenant)
        check_series(series, "series")
        check_timezone(timezone)
        if start is not None and end is not None:
            feats.check_range(start, end)
        latest = None if series is not None else self._issue_time(tenant, asset, None)
        if method == FORECAST_RESIDUAL:
            served = self._served(tenant, model, DEFAULT_FORECAST_NAME, "forecast")
        else:
            served = self._served(tenant, model, f"anomaly_{method}", "anomaly")
        frame, source = self._anomaly_frame(served, tenant, asset, start, end if end is not None else latest, series,
                                            lookback_hours, timezone)
        frame["asset_id"] = asset
        limit = threshold(sensitivity)
        if method == FORECAST_RESIDUAL:
            scored = self._residual_scores(served, frame, limit)
        else:
            detector = served.python_model
            out = served.model.predict(frame[["asset_id", *detector.features, "value"]].astype(
                {c: float for c in [*detector.features, "value"]}), params={"sensitivity": sensitivity})
            scored = pd.concat([out[["score"]], detector.expected(frame, limit)], axis=1)
        scored["is_anomaly"] = scored["score"].to_numpy() > limit
        scored["severity"] = [s or "" for s in severities(scored["score"].to_numpy())]
        result = pd.concat([pd.DataFrame({"timestamp": pd.to_datetime(frame["event_timestamp"], utc=True),
                                          "value": frame["value"].to_numpy()}), scored.reset_index(drop=True)],
                           axis=1)
        result["explanation"] = [_sentence(r) for r in result.itertuples()]
        flagged = result[result["is_anomaly"]]
        summary = {
            "points": len(result), "anomalies": len(flagged), "rate": len(flagged) / len(result) if len(result) else 0,
            "by_severity": {s: int((flagged["severity"] == s).sum()) for s in ("low", "medium", "high", "critical")},
            "mean_score": float(np.nanmean(result["score"])) if len(result) else float("nan"),
            "max_score": float(np.nanmax(result["score"])) if len(result) else float("nan"),
            "method": method, "sensitivity": sensitivity, "threshold_sigma": limit,
            "start": result["timestamp"].min(), "end": result["timestamp"].max() + HOUR,
        }
        return AnomalyResult(tenant, asset, result, summary, served.info.id, source,
                             [*served.warnings, *([] if series is not None else self._behind(tenant, asset))])

    def _anomaly_frame(self, served, tenant, asset, start, end, series, lookback_hours, timezone):
        """Rows for each hour start E: the model's feature service at E (calendar of the hour [E, E+1h),
        which for the forecaster is exactly its 1-h-ahead input) and that hour's mean `value`. For stored
        readings `end` is given (the asset's latest hour, looked up and validated by the caller)."""
        if series is not None:
            return feats.history_anomaly_frame(self.store, series, timezone, start, end), "history"
        if start is None:
            start = pd.Timestamp(end) - pd.Timedelta(hours=lookback_hours)
        return feats.anomaly_frame(self.store, self._conn(), tenant, asset, served.feature_service, start,
                                   end), "offline"

    def _residual_scores(self, served, frame, limit) -> pd.DataFrame:
        """Score = |value - p50| / sigma, sigma from the 1-h-ahead forecast's p10-p90 width."""
        model = served.python_model  # our own frame, already typed: skip pyfunc's schema round trip
        design = frame.reindex(columns=model.features).astype(float)
        design[HORIZON] = 1.0
        # 1 h ahead, the target-aligned lags are the service's lags of the scored hour's start
        for name, lag in (("same_hour_1d", "lag_24h"), ("same_hour_7d", "lag_168h")):
            if name in design.columns and lag in frame.columns:
                design[name] = frame[lag].astype(float).to_numpy()
        pred = model.predict_matrix(design.to_numpy(), frame["asset_id"].to_numpy())
        sigma = np.maximum((pred["p90"] - pred["p10"]) / P10_P90_SIGMAS, 1e-9)
        mean = pred["p50"]
        return pd.DataFrame({"score": np.abs(frame["value"].to_numpy() - mean) / sigma, "expected_mean": mean,
                             "expected_std": sigma, "expected_min": mean - limit * sigma,
                             "expected_max": mean + limit * sigma})

    # ------------------------------------------------------------------ explain
    def explain(self, tenant: str, asset: str | None = None, horizon: int = 1, model: str | None = None,
                features: dict | None = None, as_of: datetime | None = None) -> Explanation:
        """SHAP contributions (TreeExplainer on the point model) to the forecast of one target hour:
        the asset's hour `horizon` ahead, or a model id plus the model's input values (`features`)."""
        check_tenant_id(tenant)
        horizon = check_horizon(horizon)
        check_model(model, tenant)
        check_time(as_of, "as_of")
        if features is not None and not isinstance(features, Mapping):
            raise InvalidArgumentError(f"features must be a dict of feature name -> value, not "
                                       f"{type(features).__name__}")
        served = self._served(tenant, model, DEFAULT_FORECAST_NAME, "forecast")
        names = served.python_model.features
        if features is not None:
            missing = [f for f in names if f not in features]
            if missing:
                raise feats.FeaturesUnavailableError(f"features lack {', '.join(missing)}; the model takes "
                                                     f"{', '.join(names)}")
            row, target = np.array([[_feature_value(features, f) for f in names]]), None
        else:
            if asset is None:
                raise feats.FeaturesUnavailableError("explain needs an asset, or a model id plus feature values")
            check_asset_id(asset)
            t = self._issue_time(tenant, asset, as_of)
            inputs = self._forecast_inputs(served, tenant, asset, horizon, as_of, None, "UTC", t)
            row = inputs.matrix(names)[horizon - 1:horizon]
            target = inputs.issue_time + (horizon - 1) * HOUR
            explanation = self._explain_row(served, row, target, asset)
            explanation.warnings = [*inputs.warnings, *([] if as_of else self._behind(tenant, asset))]
            return explanation
        return self._explain_row(served, row, target, asset)

    def _explain_row(self, served: Served, row: np.ndarray, target, asset: str | None) -> Explanation:
        """TreeSHAP of the point booster: LightGBM's own implementation (what shap.TreeExplainer calls
        for LightGBM models), single-threaded: one row does not pay OpenMP's start-up and contention."""
        model = served.python_model
        X, level = model.matrix(row, asset)
        contributions = model.point_booster.predict(X, pred_contrib=True, num_threads=1)[0]
        values = contributions[:-1] * level[0]  # back to load units
        # the base: the trees' expected output, from the anchor (same hour, last observed day) if anchored
        anchor = float(model.anchor(row, level)[0]) if model.anchored else None
        base = (anchor or 0.0) + float(contributions[-1] * level[0])
        names = model.inputs
        raw = [*(None if np.isnan(v) else float(v) for v in row[0]), float(X[0, len(model.features)]),
               *([asset] if model.assets else [])]  # asset_code shows the asset id
        order = np.argsort(-np.abs(values), kind="stable")
        feature, value = [names[i] for i in order], [raw[i] for i in order]
        contributions = values[order]

        def contrib() -> pd.DataFrame:
            return pd.DataFrame({"feature": feature, "value": value, "contribution": contributions})

        prediction = base + float(values.sum())
        sentence = _explain_sentence(prediction, base, zip(feature[:3], value[:3], contributions[:3], strict=True),
                                     target, anchor)
        return Explanation(served.info.id, target, prediction, base, contrib, sentence)

    def explain_global(self, model: str) -> GlobalExplanation:
        """Mean |SHAP| per model input on the model's held-out rows (computed at training)."""
        import json
        import tempfile

        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        from registry.train_forecast import GLOBAL_SHAP

        parse_model_id(model)
        served = self.models.version(model)
        try:
            with tempfile.TemporaryDirectory() as tmp:  # this client's server, not MLflow's global URI
                path = download_artifacts(run_id=served.info.run_id, artifact_path=GLOBAL_SHAP, dst_path=tmp,
                                          tracking_uri=self.settings.mlflow_tracking_uri)
                with open(path) as f:
                    values = json.load(f)
        except (MlflowException, OSError) as e:  # the artifact is absent for this version
            raise ModelNotFoundError(f"{model} has no {GLOBAL_SHAP} (trained before global SHAP was recorded); "
                                     "retrain it with `ems train forecast`") from e
        frame = pd.DataFrame({"feature": list(values), "mean_abs_shap": list(values.values())})
        frame = frame.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
        frame["share"] = frame["mean_abs_shap"] / frame["mean_abs_shap"].sum()
        return GlobalExplanation(served.info.id, frame)


def _feature_value(features: Mapping, name: str) -> float:
    value = features[name]
    if value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"feature {name}={value!r} is not a number") from e


def _history_loader(settings, tenant: str, asset: str, until: pd.Timestamp):
    """The asset's last week of hourly means (by hour start), read only when a plot needs it."""
    def load() -> pd.Series:
        from warehouse import hourly

        s = hourly.history(settings, tenant, [asset], until=until.to_pydatetime(), history_days=7).get(asset)
        return pd.Series(dtype=float) if s is None else pd.Series(s.to_numpy(), index=s.index - HOUR)

    return load


def _fmt(x: float) -> str:
    return number(x, ",.1f")


def _sentence(r) -> str:
    if not np.isfinite(r.score):
        return "not scored: the 24 h context is incomplete"
    where = "above" if r.value > r.expected_mean else "below"
    if r.is_anomaly:
        return (f"{_fmt(r.value)} is {r.score:.1f}σ {where} the expected {_fmt(r.expected_mean)} ± "
                f"{_fmt(r.expected_std)} ({r.severity})")
    return f"{_fmt(r.value)} is within the expected range ({r.score:.1f}σ from {_fmt(r.expected_mean)})"


def _explain_sentence(prediction: float, base: float, top, target, anchor: float | None = None) -> str:
    """`top`: (feature, value, contribution) of the largest contributions, largest first; `anchor`: what
    an anchored model's base starts from (registry/forecaster.py)."""
    parts = []
    for feature, value, contribution in top:
        verb = "raises" if contribution >= 0 else "lowers"
        parts.append(f"{feature} ({shown_value(value)}) {verb} it by {_fmt(abs(contribution))}")
    when = f" for the hour starting {target:%Y-%m-%d %H:%M} UTC" if target is not None else ""
    start = f"base {_fmt(base)}"
    if anchor is not None:
        start += (f" = same hour on the last observed day {_fmt(anchor)} {'+' if base >= anchor else '-'} "
                  f"average change {_fmt(abs(base - anchor))}")
    return f"Forecast {_fmt(prediction)}{when} ({start}): " + "; ".join(parts) + "."
