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
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
from cachetools import LRUCache, TTLCache

from core.errors import (
    EmsError,
    FeaturesUnavailableError,
    InvalidArgumentError,
    ModelNotFoundError,
    UnknownAssetError,
)
from core.names import (
    DEFAULT_FORECAST_NAME,
    DEFAULT_FORECAST_NAMES,
    DETECT_METHODS,
    FORECAST_RESIDUAL,
    FORECAST_TYPES,
    GENERATION_NAMES,
    STEP_INTERVALS,
    TAG_FORECAST_TYPE,
    TAG_INTERVAL,
    InvalidMethodError,
    check_asset_id,
    check_interval,
    check_model_name,
    check_tenant_id,
    parse_model_id,
)
from inference import checks, explaining, scoring
from inference import features as feats
from inference.features import AssetSource
from inference.history import hourly
from inference.models import ModelCache, Served
from inference.results import AnomalyResult, Explanation, ForecastResult, GlobalExplanation
from registry import lifecycle
from registry.design import HORIZON, HOUR, uses_peers
from registry.severity import check_sensitivity
from registry.target_weather import reads_target_weather

logger = logging.getLogger(__name__)

RECENT_CACHE_SIZE = 4096  # (model, asset, issue hour) recent-residual calibrations kept


class Client:
    def __init__(self, settings=None, store=None, model_ttl_seconds: float = 30.0, max_models: int = 8,
                 latest_ttl_seconds: float = 5.0):
        from core.settings import Settings

        self.settings = settings or Settings()
        self._store = store
        lifecycle.fail_fast(10)  # a down registry fails over to the cached model in seconds
        self.models = ModelCache(self.settings.mlflow_tracking_uri, model_ttl_seconds, max_models,
                                 settings=self.settings)
        self._db = None  # one warehouse connection per client (latest-hour lookups)
        # Each asset's latest complete hour (the issue time) is looked up at most every
        # latest_ttl_seconds: a new hour is served that much later, and the hot path needs no query.
        self.latest_ttl_seconds = latest_ttl_seconds
        self._latest: TTLCache = TTLCache(maxsize=10_000, ttl=latest_ttl_seconds, timer=time.monotonic)
        self._recent: LRUCache = LRUCache(maxsize=RECENT_CACHE_SIZE)  # _recent_widths
        self._caches = threading.Lock()  # cachetools caches are not thread-safe; the HTTP service calls from threads

    def _conn(self):
        """The client's autocommit connection, reopened if it broke."""
        if self._db is None or self._db.closed or self._db.broken:
            from warehouse.db import open_connection

            self._db = open_connection(self.settings, autocommit=True)
        return self._db

    def _read(self, query):
        """query(the client's connection), once more on a new connection if that one broke."""
        try:
            return query(self._conn())
        except psycopg.OperationalError:
            if not self._db.broken:
                raise
            # Postgres restarted or stopped since the connection was last used: one new connection
            # (DatabaseUnavailableError, naming the address, if it is down).
            return query(self._conn())

    def _state(self, tenant: str, asset: str):
        """The asset's warehouse.store.AssetState (latest hours, kind), cached for latest_ttl_seconds."""
        key = (tenant, asset)
        with self._caches:
            hit = self._latest.get(key)
        if hit is None:
            from warehouse.store import asset_states

            hit = self._read(lambda conn: asset_states(self.settings, tenant, [asset], conn)[asset])
            with self._caches:
                self._latest[key] = hit
        return hit

    def _latest_times(self, tenant: str, asset: str) -> tuple:
        """(end of the asset's latest complete hour, end of its latest reading's hour)."""
        return self._state(tenant, asset)[:2]

    def _issue_time(self, tenant: str, asset: str, as_of: datetime | None) -> pd.Timestamp:
        return feats.resolve_issue_time(self._latest_times(tenant, asset)[0], tenant, asset, as_of)

    def _behind(self, tenant: str, asset: str) -> list[str]:
        """[warning] when the asset's readings reach past its newest features."""
        from warehouse.store import behind_readings

        warning = behind_readings(asset, *self._latest_times(tenant, asset))
        return [warning] if warning else []

    def _source(self, tenant: str, asset: str) -> AssetSource:
        return AssetSource(self.settings, self.store, tenant, asset, self._conn())

    @property
    def store(self):
        if self._store is None:
            from warehouse.store import get_store

            self._store = get_store(self.settings)
        return self._store

    # ------------------------------------------------------------------ models
    def _served(self, tenant: str, model: str | None, default_name: str, model_type: str) -> Served:
        if model is not None and ":" in model:
            served = self.models.version(checks.model(model, tenant))
        else:
            served = self.models.production(tenant, check_model_name(model or default_name))
        if served.info.model_type != model_type:
            raise ModelNotFoundError(f"model {served.info.id} is a {served.info.model_type} model, not {model_type}")
        return served

    def warm(self, tenant: str, assets: list[str], forecast: bool = False, model: str | None = None,
             quantiles: bool = True, forecast_type: str = "load") -> bool:
        """True when an online features read of `assets` now (with `forecast`: a forecast of each with
        `model`, as `forecast` takes it) would read nothing but Redis: the assets' latest hours, the
        serving model and (with quantiles) its recent widths at the issue hour are all cached. The HTTP
        service runs such calls on its event loop and every other one (a registry lookup, a model load,
        a warehouse query) in its thread pool. A generation or price forecast is never warm: it reads recent
        power or prices and the covariates for the target hours from the warehouse."""
        with self._caches:
            latest = [self._latest.get((tenant, a)) for a in assets]
        if not assets or any(hit is None or hit[0] is None for hit in latest):
            return False
        if not forecast:
            return True
        if forecast_type != "load":  # generation and price read the unit's or zone's stored rows and covariates
            return False  # from the warehouse on every call (inference/generation.py, pv.py, price.py)
        served = self.models.warm(tenant, model or DEFAULT_FORECAST_NAME)
        if served is None or reads_target_weather(getattr(served.python_model, "features", ())):
            return False  # target-hour weather is read from the warehouse
        if not quantiles or HORIZON not in getattr(served.python_model, "features", ()):
            return True
        # The issue hour is the latest complete hour as stored (an hour-aligned UTC datetime, which
        # hashes as the Timestamp key it equals); an unaligned one misses here and goes the slow way.
        with self._caches:
            return all((served.info.id, tenant, a, hit[0]) in self._recent
                       for a, hit in zip(assets, latest, strict=True))

    # ------------------------------------------------------------------ forecast
    def forecast(self, tenant: str, asset: str, horizon: int = 24, quantiles: bool = True, model: str | None = None,
                 as_of: datetime | None = None, history: pd.Series | None = None,
                 timezone: str = "UTC", overrides: dict[str, float] | None = None,
                 forecast_type: str = "load", weather_forecast=None, interval_minutes: int = 60) -> ForecastResult:
        """Forecast the next `horizon` hours (1-168) of an asset's hourly mean load.

        model: a model id `tenant:name:version`, a model name (its production version) or None
        (`load_forecaster` in production). as_of: issue the forecast at a past hour (features from the
        offline store). history: a caller-supplied series for an asset the store does not know
        (timestamps -> values, any resolution; `timezone` names its calendar zone). overrides: values
        that replace inputs the model reads at issue time (lags, rolling statistics, the weather
        observed at issue time, profile values; e.g. a corrected temperature), for every target hour;
        calendar inputs follow from each target hour and cannot be overridden. Each override is named
        in the result's warnings. forecast_type: load | generation | price; the asset's kind must have it
        (a consumption meter load, a generation unit generation, a market zone price) and so must the model
        (its `forecast_type` tag; versions without one forecast load). weather_forecast: the caller's weather
        forecast for the target hours, for a model whose feature service has target-hour weather (e.g.
        forecast_weather_ahead): a DataFrame indexed by the target hours' start (time-zone aware) or a mapping
        variable -> one value per target hour (temperature, humidity, solar_irradiance, wind_speed, wind_u,
        wind_v); it replaces the stored forecasts for those hours and is named in the warnings.
        interval_minutes: 60 (hourly), 15 or 30 (the means of those steps over the horizon's hours, from the step
        features of an asset whose readings are that fine, with `load_forecaster_{N}min`; inference/intervals.py)
        or 1440 (the hourly forecast aggregated to the asset's local days)."""
        check_tenant_id(tenant)
        check_asset_id(asset)
        interval = check_interval(interval_minutes)
        forecast_type = checks.forecast_type(forecast_type)
        horizon = checks.horizon(horizon)
        if interval in STEP_INTERVALS:
            given = [n for n, v in (("history", history), ("overrides", overrides),
                                    ("weather_forecast", weather_forecast)) if v is not None]
            if forecast_type != "load" or given:
                raise InvalidArgumentError(f"interval_minutes={interval} forecasts load from the stored step features "
                                           f"only: {', '.join(given) or f'forecast_type={forecast_type!r}'} not "
                                           "supported there")
            checks.flag(quantiles, "quantiles", "True: p10/p50/p90 and point; False: point only")
            checks.model(model, tenant)
            checks.time(as_of, "as_of")
            from inference import intervals

            return intervals.forecast(self, tenant, asset, horizon, interval, quantiles, model, as_of)
        if interval == 1440:
            from inference import intervals

            if forecast_type != "load" or history is not None:
                raise InvalidArgumentError("interval_minutes=1440 aggregates the stored asset's hourly load forecast: "
                                           f"{'history' if history is not None else f'forecast_type={forecast_type!r}'}"
                                           " not supported there")
            by_hour = self.forecast(tenant, asset, horizon, quantiles, model, as_of, None, timezone, overrides,
                                    forecast_type, weather_forecast)
            return intervals.daily(self, by_hour, tenant, asset, horizon)
        if forecast_type == "generation":
            _generation_only(horizon, history, overrides, weather_forecast)
        given = [n for n, v in (("history", history), ("overrides", overrides), ("weather_forecast", weather_forecast))
                 if v is not None]
        if forecast_type == "price" and given:
            raise InvalidArgumentError(f"{', '.join(given)} not supported for forecast_type='price': it reads the "
                                       "zone's stored prices and its site's stored day-ahead covariates")
        checks.flag(quantiles, "quantiles", "True: p10/p50/p90 and point; False: point only")
        checks.model(model, tenant)
        checks.time(as_of, "as_of")
        checks.series(history, "history")
        checks.timezone(timezone)
        # the asset first (one clear error for an unknown tenant/asset), then its model
        # the asset first (unknown, of a kind without this forecast type, as_of past its data), then its model
        if history is None:
            self._check_kind(tenant, asset, forecast_type)
        t = None if history is not None else self._issue_time(tenant, asset, as_of)
        default = DEFAULT_FORECAST_NAMES[forecast_type]
        if forecast_type == "generation":  # one model per technology: a PV unit's is pv_forecaster
            default = GENERATION_NAMES.get(self._state(tenant, asset).technology, default)
        served = self._served(tenant, model, default, "forecast")
        served_type = served.info.tags.get(TAG_FORECAST_TYPE, "load")
        if served_type != forecast_type:
            raise InvalidArgumentError(f"model {served.info.id} forecasts {served_type}, not {forecast_type}: "
                                       f"name a {forecast_type} model or leave the model out")
        if TAG_INTERVAL in served.info.tags:  # a sub-hourly model named for an hourly forecast
            from inference.intervals import check_model_interval

            check_model_interval(served, 60)
        if forecast_type == "generation":  # its own inputs: recent power and covariates_at (inference/generation.py)
            from inference import generation

            return generation.forecast(self, served, tenant, asset, horizon, quantiles, t)
        if forecast_type == "price":  # its own inputs: the zone's prices and day-ahead covariates (inference/price.py)
            from inference import price

            return price.forecast(self, served, tenant, asset, horizon, quantiles, t)
        weather = self._weather(served, weather_forecast, horizon, t, history)
        inputs = self._forecast_inputs(served, tenant, asset, horizon, as_of, history, timezone, t, weather)
        model = served.python_model
        if overrides is not None:
            self._override(inputs, model.features, overrides)
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

    def _check_kind(self, tenant: str, asset: str, forecast_type: str) -> None:
        """One clear error when the asset's kind does not have this forecast type."""
        state = self._state(tenant, asset)
        if FORECAST_TYPES[forecast_type] != state.kind:
            what = (f"a generation unit ({state.technology}, capacity {state.capacity:g})"
                    if state.kind == "generation" else {"consumption": "a consumption meter",
                                                        "market": "a market zone"}[state.kind])
            has = next(t for t, kind in FORECAST_TYPES.items() if kind == state.kind)
            raise InvalidArgumentError(f"asset {asset!r} of tenant {tenant!r} is {what}: it has {has} forecasts, "
                                       f"not forecast_type={forecast_type!r}")

    @staticmethod
    def _override(inputs: feats.Inputs, features: list[str], values: dict) -> None:
        """Replace issue-time inputs with the caller's values (checked: names the model takes at issue time)."""
        issue = [f for f in features if f in inputs.values]
        derived = [f for f in features if f not in inputs.values and f != HORIZON]
        for name, value in checks.overrides(values, issue, derived).items():
            was = inputs.values.get(name)
            inputs.columns[name] = np.full(len(inputs.columns[HORIZON]), value, dtype="float64")
            inputs.values[name] = value
            inputs.warnings.append(f"input {name} overridden by the caller: {value:g} (stored: "
                                   f"{'missing' if was is None or was != was else format(was, 'g')})")

    def _recent_widths(self, served, tenant: str, asset: str, t: pd.Timestamp) -> tuple[list | None, list[str]]:
        """p10-p90 widening per horizon bucket from the model's forecasts of the last RECENT_DAYS days at
        this hour (registry/forecaster.py), computed once per model, asset and issue hour. Without them
        (a model without horizon_h, too little history, a failed read) the trained widening applies."""
        from registry.forecaster import recent_origins, recent_widths

        model = served.python_model
        if "horizon_h" not in getattr(model, "features", ()):
            return None, []
        key = (served.info.id, tenant, asset, t)
        with self._caches:
            found = self._recent.get(key)
        if found is None:
            try:
                X, horizon, y = feats.recent_forecast_rows(self._source(tenant, asset), served.feature_service,
                                                           model.features, t, recent_origins(t))
                found = (recent_widths(horizon, model.nonconformity(X, y, asset)), [])
            except (EmsError, psycopg.Error, ValueError, KeyError) as e:
                logger.warning("recent-residual calibration of %s for %s failed: %s", served.info.id, asset, e)
                found = (None, [f"interval calibrated at training time (recent residuals unavailable: "
                                f"{type(e).__name__})"])
            with self._caches:
                self._recent[key] = found
        return found

    def _weather(self, served, value, horizon: int, t, history) -> pd.DataFrame | None:
        """The caller's weather forecast, checked; one clear error when the model reads none."""
        if value is None:
            return None
        if not reads_target_weather(getattr(served.python_model, "features", ())):
            raise InvalidArgumentError(f"model {served.info.id} (feature service {served.feature_service!r}) reads no "
                                       "weather forecast for the target hours: leave weather_forecast out, or use a "
                                       "model trained on a service with one (e.g. forecast_weather_ahead)")
        if history is not None:
            t = hourly(history).index[-1] + HOUR
        return checks.weather_forecast(value, horizon, t)

    def _forecast_inputs(self, served, tenant, asset, horizon, as_of, history, timezone, t=None,
                         weather=None) -> feats.Inputs:
        peers = uses_peers(getattr(served.python_model, "features", ()))
        if history is not None:
            inputs = feats.history_forecast_inputs(self.store, served.feature_service, history, horizon, timezone,
                                                   weather)
            if peers:
                inputs.warnings.append("a supplied history has no site peers: the model's peer inputs are missing")
            return inputs
        return feats.forecast_inputs(self._source(tenant, asset), served.feature_service, horizon, as_of, t,
                                     peers=peers, weather=weather)

    # ------------------------------------------------------------------ features
    def online_features(self, tenant: str, assets: list[str], service: str) -> tuple[list[dict], list[str]]:
        """A feature service's online values per asset (rows in the order of `assets`; calendar features
        describe each asset's latest complete hour), and one warning per asset whose online row trails
        its latest reading. One pipelined Redis read; the latest hours come from the client's cache
        (refreshed every latest_ttl_seconds), so a warm call runs no query."""
        import redis

        from inference.freshness import LOAD_VIEW, Freshness
        from inference.online import online_reader

        check_tenant_id(tenant)
        for a in assets:
            check_asset_id(a)
        if not assets:
            raise UnknownAssetError("no asset given: pass at least one asset id")
        latest = {a: self._latest_times(tenant, a) for a in dict.fromkeys(assets)}  # unknown asset: 404
        now = datetime.now(UTC)
        reader = online_reader(self.store)
        try:
            data = reader.read(service, tenant, list(assets), {"target_time": [latest[a][0] or now for a in assets]},
                               event_timestamps=True)
        except (redis.RedisError, ConnectionError, OSError) as e:
            raise FeaturesUnavailableError(f"online store unreachable ({type(e).__name__}: {e}); run `ems up`") from e
        plan = reader.plan(service)
        stamps = dict(zip(assets, reader.event_times([(tenant, a) for a in assets], LOAD_VIEW), strict=True)) \
            if LOAD_VIEW not in {v.name for v in plan.views} else {
                a: max((data[f"{f}__ts"][i] for v in plan.views if v.name == LOAD_VIEW for f in v.features), default=0)
                for i, a in enumerate(assets)}
        names = ["tenant_id", "asset_id", *plan.output]
        rows = [{n: _plain(data[n][i]) for n in names} for i in range(len(assets))]
        warnings = []
        for a in dict.fromkeys(assets):
            online_end = datetime.fromtimestamp(stamps[a], UTC) if stamps[a] else None
            if w := Freshness(tenant, a, online_end, *latest[a]).warning():
                warnings.append(w)
        return rows, warnings

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
        checks.lookback_hours(lookback_hours)
        checks.time(start, "start")
        checks.time(end, "end")
        checks.model(model, tenant)
        checks.series(series, "series")
        checks.timezone(timezone)
        if start is not None and end is not None:
            checks.time_range(start, end)
        latest = None if series is not None else self._issue_time(tenant, asset, None)
        if method == FORECAST_RESIDUAL:
            served = self._served(tenant, model, DEFAULT_FORECAST_NAME, "forecast")
        else:
            served = self._served(tenant, model, f"anomaly_{method}", "anomaly")
        frame, source = self._anomaly_frame(served, tenant, asset, start, end if end is not None else latest, series,
                                            lookback_hours, timezone)
        frame["asset_id"] = asset
        result, summary = scoring.score(served, frame, method, sensitivity)
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
        return feats.anomaly_frame(self._source(tenant, asset), served.feature_service, start, end), "offline"

    # ------------------------------------------------------------------ explain
    def explain(self, tenant: str, asset: str | None = None, horizon: int = 1, model: str | None = None,
                features: dict | None = None, as_of: datetime | None = None) -> Explanation:
        """SHAP contributions (TreeExplainer on the point model) to the forecast of one target hour:
        the asset's hour `horizon` ahead, or a model id plus the model's input values (`features`)."""
        check_tenant_id(tenant)
        horizon = checks.horizon(horizon)
        checks.model(model, tenant)
        checks.time(as_of, "as_of")
        if features is not None:
            checks.feature_values(features, [])  # a mapping, before the model is loaded
        served = self._served(tenant, model, DEFAULT_FORECAST_NAME, "forecast")
        names = served.python_model.features
        if features is not None:
            row, target = checks.feature_values(features, names), None
        else:
            if asset is None:
                raise FeaturesUnavailableError("explain needs an asset, or a model id plus feature values")
            check_asset_id(asset)
            t = self._issue_time(tenant, asset, as_of)
            inputs = self._forecast_inputs(served, tenant, asset, horizon, as_of, None, "UTC", t)
            row = inputs.matrix(names)[horizon - 1:horizon]
            target = inputs.issue_time + (horizon - 1) * HOUR
            explanation = explaining.explain_row(served, row, target, asset)
            explanation.warnings = [*inputs.warnings, *([] if as_of else self._behind(tenant, asset))]
            return explanation
        return explaining.explain_row(served, row, target, asset)

    def explain_global(self, model: str) -> GlobalExplanation:
        """Mean |SHAP| per model input on the model's held-out rows (computed at training)."""
        parse_model_id(model)
        return explaining.global_explanation(self.models.version(model), self.settings.mlflow_tracking_uri)


def _generation_only(horizon: int, history, overrides, weather_forecast) -> None:
    """What a generation forecast takes: horizons 1-48 of a stored unit, no overrides or caller weather."""
    from inference.generation import check_horizon

    check_horizon(horizon)
    given = [n for n, v in (("history", history), ("overrides", overrides), ("weather_forecast", weather_forecast))
             if v is not None]
    if given:
        raise InvalidArgumentError(f"{', '.join(given)} not supported for forecast_type='generation': it reads the "
                                   "unit's stored power and its site's stored weather forecasts")


def _history_loader(settings, tenant: str, asset: str, until: pd.Timestamp):
    """The asset's last week of hourly means (by hour start), read only when a plot needs it."""
    def load() -> pd.Series:
        from warehouse import hourly as stored

        s = stored.history(settings, tenant, [asset], until=until.to_pydatetime(), history_days=7).get(asset)
        return pd.Series(dtype=float) if s is None else pd.Series(s.to_numpy(), index=s.index - HOUR)

    return load


def _plain(value):
    """A JSON-ready scalar: numpy numbers as Python ones, NaN as None."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and value != value else value
