-- Observed weather per site. ts is the start of the observation interval (UTC).
CREATE TABLE IF NOT EXISTS weather (
    site_id           text             NOT NULL,
    ts                timestamptz      NOT NULL,
    temperature       double precision,
    humidity          double precision,
    solar_irradiance  double precision,
    wind_speed        double precision,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, ts)
);
