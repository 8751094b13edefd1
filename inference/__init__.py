"""EMS AI Hub SDK.

    from inference import forecast, detect_anomalies, explain, explain_global

    f = forecast("demo", "zone1", horizon=24)          # p10/p50/p90 + point, metadata, f.plot()
    a = detect_anomalies("demo", "zone1", method="z_score", sensitivity=3, lookback_hours=168)
    e = explain("demo", "zone1", horizon=1)            # SHAP contributions, e.summary, e.plot()
    g = explain_global("demo:load_forecaster:3")       # mean |SHAP| ranking

The functions share one default `Client` (settings from the environment, the Feast store, a model
cache that follows promotions). Build your own `Client(settings, model_ttl_seconds=...)` for other
stacks. Importing this package is light: Feast, MLflow and LightGBM load on the first call.
"""

from __future__ import annotations

from core.errors import (
    EmsError,
    FeaturesUnavailableError,
    InvalidArgumentError,
    InvalidHorizonError,
    InvalidRangeError,
    InvalidSeriesError,
    ModelNotFoundError,
    ModelUnavailableError,
    UnknownAssetError,
    UnknownFeatureServiceError,
)

_default = None


def default_client():
    """The shared Client behind the module-level functions (created on first use)."""
    global _default
    if _default is None:
        from inference.client import Client

        _default = Client()
    return _default


def forecast(tenant: str, asset: str, horizon: int = 24, **kwargs):
    """See `Client.forecast`."""
    return default_client().forecast(tenant, asset, horizon, **kwargs)


def detect_anomalies(tenant: str, asset: str, **kwargs):
    """See `Client.detect_anomalies`."""
    return default_client().detect_anomalies(tenant, asset, **kwargs)


def explain(tenant: str, asset: str | None = None, horizon: int = 1, **kwargs):
    """See `Client.explain`."""
    return default_client().explain(tenant, asset, horizon, **kwargs)


def explain_global(model: str):
    """See `Client.explain_global`."""
    return default_client().explain_global(model)


def __getattr__(name: str):
    if name == "Client":
        from inference.client import Client

        return Client
    raise AttributeError(f"module 'inference' has no attribute {name!r}")


__all__ = ["Client", "EmsError", "FeaturesUnavailableError", "InvalidArgumentError", "InvalidHorizonError",
           "InvalidRangeError", "InvalidSeriesError", "ModelNotFoundError", "ModelUnavailableError",
           "UnknownAssetError", "UnknownFeatureServiceError", "default_client", "detect_anomalies", "explain",
           "explain_global", "forecast"]
