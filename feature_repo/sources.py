"""Offline sources: the SQL views created by feature_repo/sql/ (event_timestamp = end of the hour)."""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

load_lags_source = PostgreSQLSource(
    name="load_lags_source",
    query="SELECT * FROM load_lag_features",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Hourly load lags (1 h, 24 h, 168 h) from the hourly aggregate.",
)

load_rolling_source = PostgreSQLSource(
    name="load_rolling_source",
    query="SELECT * FROM load_rolling_features",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Rolling 24 h / 168 h statistics of the hourly mean load.",
)

asset_weather_source = PostgreSQLSource(
    name="asset_weather_source",
    query="SELECT * FROM asset_weather_features",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Hourly observed weather of each asset's site.",
)

asset_profile_source = PostgreSQLSource(
    name="asset_profile_source",
    query="SELECT * FROM asset_profile_features",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Static asset attributes: site and IANA time zone.",
)
