"""Feature services: the seed names and contents; richer sets get their own names."""

from feast import FeatureService

from feature_repo.on_demand import calendar
from feature_repo.views import load_15min, load_30min, load_lags, load_rolling, weather_forecast, weather_hourly

forecast_basic = FeatureService(
    name="forecast_basic",
    features=[
        load_lags[["lag_1h", "lag_24h"]],
        calendar[["hour_of_day", "day_of_week", "is_weekend", "month"]],
    ],
    description="6 features: recent and same-hour-yesterday load plus the target hour's calendar.",
    tags={"model_type": "forecast"},
)

forecast_advanced = FeatureService(
    name="forecast_advanced",
    features=[
        load_lags[["lag_1h", "lag_24h", "lag_168h"]],
        load_rolling[["historical_avg_24h", "historical_std_24h"]],
        calendar[["hour_of_day", "day_of_week", "is_weekend", "month", "is_business_hours"]],
        weather_hourly[["temperature", "humidity", "solar_irradiance"]],
    ],
    description="13 features: basic + weekly lag, rolling 24 h, business hours and site weather (NULL without a site).",
    tags={"model_type": "forecast"},
)

anomaly_detection = FeatureService(
    name="anomaly_detection",
    features=[
        calendar[["hour_of_day", "day_of_week"]],
        load_rolling[["historical_avg_24h", "historical_std_24h", "max_24h", "min_24h", "range_24h"]],
    ],
    description="7 features: time of day/week and the last 24 h's level, spread and range.",
    tags={"model_type": "anomaly"},
)

# Richer forecasting sets (issue-time load state over a day and a week, target-hour calendar with public
# holidays and without the month: a year of history never shows a model every month before its test window).
_LOAD_STATE = [
    load_lags[["lag_1h", "lag_24h", "lag_168h"]],
    load_rolling[["historical_avg_24h", "historical_std_24h", "min_24h", "max_24h",
                  "historical_avg_168h", "historical_std_168h", "min_168h", "max_168h"]],
    calendar[["hour_of_day", "day_of_week", "is_weekend", "is_business_hours", "is_holiday"]],
]

forecast_load = FeatureService(
    name="forecast_load",
    features=_LOAD_STATE,
    description="16 features: lags 1/24/168 h, rolling 24 h and 168 h mean/std/min/max, target-hour calendar "
                "(no month) with public holidays; no weather.",
    tags={"model_type": "forecast"},
)

forecast_weather = FeatureService(
    name="forecast_weather",
    features=[*_LOAD_STATE, weather_hourly[["temperature", "humidity", "solar_irradiance", "wind_speed"]]],
    description="20 features: forecast_load + the site's last-hour temperature, humidity, solar irradiance and "
                "wind speed (NULL without a site).",
    tags={"model_type": "forecast"},
)

forecast_regional = FeatureService(
    name="forecast_regional",
    features=[*_LOAD_STATE, weather_hourly[["temperature", "humidity", "solar_irradiance", "wind_speed"]]],
    description="20 features: forecast_weather; a forecaster trained on it also reads how the asset's site peers "
                "(the tenant's other assets at its site) load relative to their last week (4 peer inputs).",
    tags={"model_type": "forecast", "peer_inputs": "site"},
)

forecast_weather_ahead = FeatureService(
    name="forecast_weather_ahead",
    features=[*_LOAD_STATE, weather_forecast[["temperature", "humidity", "solar_irradiance", "wind_speed"]]],
    description="20 features: forecast_load + the site's weather forecast for each target hour (the latest issued "
                "at or before the issue time; inputs target_temperature, ...). Trained on archived forecasts, or "
                "on the observed weather with a forecast's error where none are archived (registry/target_weather.py).",
    tags={"model_type": "forecast", "weather": "target_hour_forecast"},
)

# Sub-hourly load forecasting (interval_minutes 30 and 15): the step's own features; the calendar of each target
# step (minute of day in the asset's time zone) and the same-step lags of the target are built by the model
# (registry/step_design.py), as the hourly model builds its target-aligned lags.
_STEP_FEATURES = ["last_value", "lag_1d", "lag_7d", "avg_1d", "std_1d", "min_1d", "max_1d", "avg_7d", "std_7d"]

forecast_load_30min = FeatureService(
    name="forecast_load_30min",
    features=[load_30min[_STEP_FEATURES]],
    description="9 features at the 30-minute step: last step, same step 1 d / 7 d before, 1-day mean/std/min/max, "
                "7-day mean/std.",
    tags={"model_type": "forecast", "interval_minutes": "30"},
)

forecast_load_15min = FeatureService(
    name="forecast_load_15min",
    features=[load_15min[_STEP_FEATURES]],
    description="9 features at the 15-minute step (as forecast_load_30min).",
    tags={"model_type": "forecast", "interval_minutes": "15"},
)
