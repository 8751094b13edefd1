-- Plain PostgreSQL: hourly weather as a table, kept current by ems_refresh_weather_hourly().
CREATE TABLE IF NOT EXISTS weather_hourly (
    site_id           text        NOT NULL,
    bucket            timestamptz NOT NULL,
    temperature       double precision,
    humidity          double precision,
    solar_irradiance  double precision,
    wind_speed        double precision,
    PRIMARY KEY (site_id, bucket)
);
