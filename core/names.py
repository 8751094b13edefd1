"""Names shared across modules: id rules, feature service names, model naming."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import EmsError

# Tenants become part of MLflow model names (`{tenant}.{name}`) and Redis keys: lowercase, no dots.
TENANT_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
# Asset and site ids come from meter systems: letters, digits and . _ : - (no spaces, no quotes).
ASSET_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"

# The seed services, then the richer forecasting sets (feature_repo/services.py).
FEATURE_SERVICES = ("forecast_basic", "forecast_advanced", "anomaly_detection", "forecast_load", "forecast_weather",
                    "forecast_regional", "forecast_weather_ahead", "forecast_load_30min", "forecast_load_15min")

# Model registry: public id `{tenant}:{name}:{version}`, registered model `{tenant}.{name}`.
MODEL_NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
STAGES = ("staging", "production", "archived")
ALIAS_PRODUCTION = "production"
TAG_TENANT = "tenant_id"
TAG_MODEL_TYPE = "model_type"
TAG_FEATURE_SERVICE = "feast.feature_service"  # the key Feast's MLflow integration reads
TAG_FEAST_PROJECT = "feast_project"
TAG_SERVICE = "feature_service"  # DESIGN's name; the same value as TAG_FEATURE_SERVICE
TAG_WINDOW_START = "training_window_start"
TAG_WINDOW_END = "training_window_end"
TAG_FINGERPRINT = "data_fingerprint"
TAG_VALIDATION = "validation_status"
TAG_ARTIFACT_LOCATION = "artifact_location"  # where the version's files are (its logged model's artifacts)
MODEL_TYPES = ("forecast", "anomaly")
DEFAULT_FORECAST_NAME = "load_forecaster"
# What a forecast is of, the kind of asset that has it, and the model name served for it by default.
TAG_FORECAST_TYPE = "forecast_type"  # on forecast versions; versions without it forecast load
FORECAST_TYPES = {"load": "consumption", "generation": "generation", "price": "market"}
DEFAULT_FORECAST_NAMES = {"load": DEFAULT_FORECAST_NAME, "generation": "generation_forecaster",
                          "price": "price_forecaster"}
ASSET_KINDS = ("consumption", "generation", "market")
# Forecast intervals (minutes): 60 is the hourly feature tables' step; 15 and 30 have feature tables at their
# step (assets whose readings are that fine; feature_repo/sql/124_step_features.sql); 1440 aggregates the
# hourly model's forecast to days. A sub-hourly model carries its interval (tag and param TAG_INTERVAL).
INTERVALS = (15, 30, 60, 1440)
STEP_INTERVALS = (15, 30)
TAG_INTERVAL = "interval_minutes"
STEP_SERVICES = {30: "forecast_load_30min", 15: "forecast_load_15min"}  # feature_repo/services.py
TECHNOLOGIES = ("wind", "pv")
# A generation model forecasts the units of one technology (their designs differ: wind speed vs the sun's
# position and irradiance): the version's tag says which (none: wind, trained before PV), and the name served by
# default for a unit follows its technology.
TAG_TECHNOLOGY = "technology"
GENERATION_NAMES = {"wind": DEFAULT_FORECAST_NAMES["generation"], "pv": "pv_forecaster"}
ANOMALY_METHODS = ("z_score", "iqr", "isolation_forest", "local_outlier_factor")  # trained detectors
STATISTICAL_METHODS = ("z_score", "iqr")  # scored against the 24 h rolling statistics, no fitted model
FORECAST_RESIDUAL = "forecast_residual"  # scored on the production forecaster's residuals
DETECT_METHODS = (*ANOMALY_METHODS, FORECAST_RESIDUAL)  # what detect_anomalies and the evaluations accept
DEFAULT_ANOMALY_SERVICE = "anomaly_detection"


def experiment_name(tenant: str) -> str:
    """One MLflow experiment per tenant."""
    return f"tenant-{tenant}"
DEFAULT_FORECAST_SERVICE = "forecast_weather"  # the best backtest (README, Evaluation)


class InvalidIdError(EmsError, ValueError):
    """A tenant, asset or site id breaks the id rules; the message names the value and the rule."""


def check_tenant_id(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(TENANT_ID_PATTERN, value):
        raise InvalidIdError(
            f"tenant id {value!r} is invalid: use 1-63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_asset_id(value: str, what: str = "asset") -> str:
    if not isinstance(value, str) or not re.fullmatch(ASSET_ID_PATTERN, value):
        raise InvalidIdError(
            f"{what} id {value!r} is invalid: use 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return value


class InvalidIntervalError(EmsError, ValueError):
    """An interval that is not one of INTERVALS, or finer than (or not a multiple of) an asset's readings."""


def check_interval(value) -> int:
    """interval_minutes: one of INTERVALS (bools and non-integers are refused, named in the message)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in INTERVALS:
        raise InvalidIntervalError(f"interval_minutes={value!r} is not supported; allowed: "
                                   f"{', '.join(map(str, INTERVALS))}")
    return value


def check_interval_for_step(interval: int, step: int | None, asset: str) -> int:
    """A sub-hourly interval the asset's readings can be rolled up to: a multiple of its native step."""
    if interval not in STEP_INTERVALS:
        return interval
    if step is None:
        raise InvalidIntervalError(f"interval_minutes={interval}: asset {asset!r} has no reading step recorded "
                                   "(ingest its readings first); 60 and 1440 need none")
    if interval < step:
        raise InvalidIntervalError(f"interval_minutes={interval} is finer than asset {asset!r}'s data: its readings "
                                   f"come every {step} minutes; use {step if step in INTERVALS else 60} or coarser")
    if interval % step:
        raise InvalidIntervalError(f"interval_minutes={interval} does not roll up from asset {asset!r}'s {step}-minute "
                                   f"readings (not a multiple of {step}); use "
                                   f"{', '.join(str(i) for i in INTERVALS if i % step == 0)}")
    return interval


def step_model_name(interval: int) -> str:
    """The default model name of a sub-hourly load forecaster: load_forecaster_30min."""
    return f"{DEFAULT_FORECAST_NAME}_{interval}min"


class InvalidModelIdError(EmsError, ValueError):
    """A model id is not `{tenant}:{name}:{version}`."""


@dataclass(frozen=True)
class ModelRef:
    tenant: str
    name: str
    version: int

    @property
    def id(self) -> str:
        return f"{self.tenant}:{self.name}:{self.version}"


def registered_name(tenant: str, name: str) -> str:
    return f"{tenant}.{name}"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise InvalidModelIdError(
            f"model name {name!r} is invalid: use 1-63 lowercase letters, digits, '_' or '-'"
        )
    return name


def parse_model_id(model_id: str) -> ModelRef:
    """`demo:load_forecaster:3` -> ModelRef; one clear error for anything else."""
    parts = model_id.split(":") if isinstance(model_id, str) else []
    if (len(parts) != 3 or not re.fullmatch(TENANT_ID_PATTERN, parts[0])
            or not re.fullmatch(MODEL_NAME_PATTERN, parts[1]) or not re.fullmatch(r"[1-9][0-9]{0,8}", parts[2])):
        raise InvalidModelIdError(
            f"model id {model_id!r} is malformed: use tenant:name:version, e.g. demo:load_forecaster:3"
        )
    return ModelRef(parts[0], parts[1], int(parts[2]))


class InvalidMethodError(EmsError, ValueError):
    """An anomaly method that does not exist."""


def check_anomaly_method(method: str) -> str:
    if method not in ANOMALY_METHODS:
        raise InvalidMethodError(f"anomaly method {method!r} is not one of {', '.join(ANOMALY_METHODS)}")
    return method
