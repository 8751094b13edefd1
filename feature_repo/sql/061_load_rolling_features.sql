-- Rolling-window statistics of the hourly mean load over the last 24 h / 168 h before
-- event_timestamp (hours starting in [T - 24 h, T)). Windows are time ranges, so gaps shrink the
-- sample instead of reaching further back; hours_24h / hours_168h say how many hours it holds.
CREATE OR REPLACE VIEW load_rolling_features AS
SELECT tenant_id,
       asset_id,
       bucket + INTERVAL '1 hour' AS event_timestamp,
       avg(avg_value) OVER w24                          AS historical_avg_24h,
       stddev_samp(avg_value) OVER w24                  AS historical_std_24h,
       min(avg_value) OVER w24                          AS min_24h,
       max(avg_value) OVER w24                          AS max_24h,
       max(avg_value) OVER w24 - min(avg_value) OVER w24 AS range_24h,
       count(*) OVER w24                                AS hours_24h,
       avg(avg_value) OVER w168                         AS historical_avg_168h,
       stddev_samp(avg_value) OVER w168                 AS historical_std_168h,
       min(avg_value) OVER w168                         AS min_168h,
       max(avg_value) OVER w168                         AS max_168h,
       max(avg_value) OVER w168 - min(avg_value) OVER w168 AS range_168h,
       count(*) OVER w168                               AS hours_168h,
       bucket + INTERVAL '1 hour' AS created
FROM readings_hourly
WINDOW w    AS (PARTITION BY tenant_id, asset_id ORDER BY bucket),
       w24  AS (w RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND CURRENT ROW),
       w168 AS (w RANGE BETWEEN INTERVAL '167 hours' PRECEDING AND CURRENT ROW);
