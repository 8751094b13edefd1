"""Batch feature views over the hourly SQL relations (one row per asset and complete hour)."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from feature_repo.entities import asset, target_hour, tenant
from feature_repo.sources import (
    asset_covariate_forecast_source,
    asset_profile_source,
    asset_weather_source,
    load_15min_source,
    load_30min_source,
    load_lags_source,
    load_rolling_source,
)

# Rows arrive every hour; a row older than 3 h means the feed has stalled (two missing hours, such
# as a DST gap, are tolerated). Also bounds Feast's point-in-time join to 3 h of feature rows.
HOURLY_TTL = timedelta(hours=3)

load_lags = FeatureView(
    name="load_lags",
    entities=[tenant, asset],
    ttl=HOURLY_TTL,
    schema=[
        Field(name="lag_1h", dtype=Float64, description="Mean load of the last complete hour."),
        Field(name="lag_24h", dtype=Float64, description="Mean load of the hour starting 24 h before."),
        Field(name="lag_168h", dtype=Float64, description="Mean load of the hour starting 168 h before."),
    ],
    source=load_lags_source,
    online=True,
    description="Load lags at the end of each hour; NULL where that hour has no readings.",
    tags={"domain": "load", "granularity": "1h"},
)

load_rolling = FeatureView(
    name="load_rolling",
    entities=[tenant, asset],
    ttl=HOURLY_TTL,
    schema=[
        Field(name="historical_avg_24h", dtype=Float64, description="Mean of the last 24 hourly means."),
        Field(name="historical_std_24h", dtype=Float64, description="Sample std of the last 24 hourly means."),
        Field(name="min_24h", dtype=Float64),
        Field(name="max_24h", dtype=Float64),
        Field(name="range_24h", dtype=Float64, description="max_24h - min_24h."),
        Field(name="hours_24h", dtype=Int64, description="Hours with readings in the 24 h window."),
        Field(name="historical_avg_168h", dtype=Float64),
        Field(name="historical_std_168h", dtype=Float64),
        Field(name="min_168h", dtype=Float64),
        Field(name="max_168h", dtype=Float64),
        Field(name="range_168h", dtype=Float64),
        Field(name="hours_168h", dtype=Int64),
    ],
    source=load_rolling_source,
    online=True,
    description="Rolling-window statistics of the hourly mean load before each hour's end.",
    tags={"domain": "load", "granularity": "1h"},
)

weather_hourly = FeatureView(
    name="weather_hourly",
    entities=[tenant, asset],
    ttl=HOURLY_TTL,
    schema=[
        Field(name="temperature", dtype=Float64, description="deg C, last complete hour at the asset's site."),
        Field(name="humidity", dtype=Float64, description="% relative humidity."),
        Field(name="solar_irradiance", dtype=Float64, description="W/m2 (global/diffuse flux where measured)."),
        Field(name="wind_speed", dtype=Float64, description="m/s."),
    ],
    source=asset_weather_source,
    online=True,
    description="Observed weather of the asset's site; absent for assets without a site.",
    tags={"domain": "weather", "granularity": "1h"},
)

asset_profile = FeatureView(
    name="asset_profile",
    entities=[tenant, asset],
    ttl=timedelta(0),  # static attributes: valid for all time
    schema=[
        Field(name="site_id", dtype=String),
        Field(name="timezone", dtype=String, description="IANA time zone for calendar features."),
    ],
    source=asset_profile_source,
    online=True,
    description="Static asset attributes used by on-demand views.",
    tags={"domain": "asset"},
)

# Forecasts issued more than 2 days before the origin are stale (weather services issue every 6-12 h).
FORECAST_TTL = timedelta(days=2)

weather_forecast = FeatureView(
    name="weather_forecast",
    entities=[tenant, asset, target_hour],
    ttl=FORECAST_TTL,
    schema=[
        Field(name="temperature", dtype=Float64, description="deg C forecast for the target hour."),
        Field(name="humidity", dtype=Float64, description="% relative humidity forecast."),
        Field(name="solar_irradiance", dtype=Float64, description="W/m2 forecast."),
        Field(name="wind_speed", dtype=Float64, description="m/s forecast."),
        Field(name="wind_u", dtype=Float64, description="m/s, eastward wind component forecast."),
        Field(name="wind_v", dtype=Float64, description="m/s, northward wind component forecast."),
    ],
    source=asset_covariate_forecast_source,
    # Offline for now: `ems materialize` writes views keyed by (tenant, asset); serving reads the latest
    # issue at the forecast's origin from the warehouse (warehouse/covariates.py), by the same rule.
    online=False,
    description="Weather forecast of the asset's site for each target hour: the latest issue at or before the "
                "entity time (the forecast's origin), never one issued later.",
    tags={"domain": "weather", "granularity": "1h", "kind": "covariate_forecast"},
)

market_forecast = FeatureView(
    name="market_forecast",
    entities=[tenant, asset, target_hour],
    ttl=FORECAST_TTL,
    schema=[
        Field(name="load_forecast", dtype=Float64,
              description="MW, the market's day-ahead (system) load forecast for the target hour."),
        Field(name="wind_forecast", dtype=Float64, description="MW, the market's day-ahead wind power forecast."),
        Field(name="zonal_load_forecast", dtype=Float64, description="MW, the zone's day-ahead load forecast."),
    ],
    source=asset_covariate_forecast_source,
    # The same covariate store and point-in-time rule as weather_forecast (a market zone's site holds them);
    # offline like it: the price forecaster reads the same rows at its origin from the warehouse
    # (warehouse/market.py).
    online=False,
    description="Exogenous forecasts a market publishes before its auction for each target hour: the latest issue "
                "at or before the entity time (the forecast's origin), never one issued later.",
    tags={"domain": "market", "granularity": "1h", "kind": "covariate_forecast"},
)


def _step_fields(step: str) -> list[Field]:
    return [
        Field(name="last_value", dtype=Float64, description=f"Mean load of the last complete {step} step."),
        Field(name="lag_1d", dtype=Float64, description=f"Mean load of the {step} step starting 1 day before."),
        Field(name="lag_7d", dtype=Float64, description=f"Mean load of the {step} step starting 7 days before."),
        Field(name="avg_1d", dtype=Float64, description=f"Mean of the last day's {step} means."),
        Field(name="std_1d", dtype=Float64, description=f"Sample std of the last day's {step} means."),
        Field(name="min_1d", dtype=Float64),
        Field(name="max_1d", dtype=Float64),
        Field(name="steps_1d", dtype=Int64, description="Steps with readings in the last day."),
        Field(name="avg_7d", dtype=Float64, description=f"Mean of the last 7 days' {step} means."),
        Field(name="std_7d", dtype=Float64),
        Field(name="n_readings", dtype=Int64, description="Readings in the last step."),
    ]


# A row arrives every step; three steps without one mean the feed has stalled (the hourly views' rule).
load_30min = FeatureView(
    name="load_30min",
    entities=[tenant, asset],
    ttl=timedelta(minutes=90),
    schema=_step_fields("30-minute"),
    source=load_30min_source,
    online=True,
    description="Load features at the end of each 30-minute step, rolled up from finer readings.",
    tags={"domain": "load", "granularity": "30min"},
)

load_15min = FeatureView(
    name="load_15min",
    entities=[tenant, asset],
    ttl=timedelta(minutes=45),
    schema=_step_fields("15-minute"),
    source=load_15min_source,
    online=True,
    description="Load features at the end of each 15-minute step, rolled up from finer readings.",
    tags={"domain": "load", "granularity": "15min"},
)
