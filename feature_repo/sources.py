"""Offline sources: the SQL views created by feature_repo/sql/ (event_timestamp = end of the hour)."""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource


def _view_source(name: str, view: str, description: str) -> PostgreSQLSource:
    """Every source reads one named view with the same timestamp columns."""
    return PostgreSQLSource(
        name=name,
        query=f"SELECT * FROM {view}",  # view names are fixed literals in this module
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=description,
    )


load_lags_source = _view_source(
    "load_lags_source", "load_lag_features", "Hourly load lags (1 h, 24 h, 168 h) from the hourly aggregate."
)
load_rolling_source = _view_source(
    "load_rolling_source", "load_rolling_features", "Rolling 24 h / 168 h statistics of the hourly mean load."
)
asset_weather_source = _view_source(
    "asset_weather_source", "asset_weather_features", "Hourly observed weather of each asset's site."
)
asset_profile_source = _view_source(
    "asset_profile_source", "asset_profile_features", "Static asset attributes: site and IANA time zone."
)

asset_covariate_forecast_source = _view_source(
    "asset_covariate_forecast_source", "asset_covariate_forecasts",
    "Forecasts of each asset's site per target hour, event_timestamp = the forecast's issue time.",
)

# Sub-hourly load features (feature_repo/sql/124_step_features.sql), event_timestamp = end of the step bucket.
load_30min_source = _view_source(
    "load_30min_source", "load_features_30min",
    "30-minute load features (last step, same step 1 d / 7 d before, 1 d and 7 d statistics) of assets whose "
    "readings divide 30 minutes.",
)
load_15min_source = _view_source(
    "load_15min_source", "load_features_15min",
    "15-minute load features of assets whose readings divide 15 minutes (same columns as load_30min_source).",
)
