-- TimescaleDB: hourly weather as a continuous aggregate with a refresh policy.
CREATE MATERIALIZED VIEW IF NOT EXISTS weather_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT site_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       avg(temperature)       AS temperature,
       avg(humidity)          AS humidity,
       avg(solar_irradiance)  AS solar_irradiance,
       avg(wind_speed)        AS wind_speed
FROM weather
GROUP BY site_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('weather_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => TRUE);
