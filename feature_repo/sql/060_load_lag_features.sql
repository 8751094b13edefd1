-- Lag features, one row per asset and complete hour. event_timestamp is the END of the hour bucket:
-- the moment its inputs were complete, so the row at T uses only readings with ts < T.
-- lag_Nh is the mean load of the hour that started N hours before T (lag_1h = the last complete
-- hour, lag_24h = the same hour one day earlier than the hour starting at T). A missing hour gives
-- NULL, never a neighbour's value: RANGE frames address hours by time, not by row position.
CREATE OR REPLACE VIEW load_lag_features AS
SELECT tenant_id,
       asset_id,
       bucket + INTERVAL '1 hour' AS event_timestamp,
       avg_value AS lag_1h,
       avg(avg_value) OVER (w RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND INTERVAL '23 hours' PRECEDING)
           AS lag_24h,
       avg(avg_value) OVER (w RANGE BETWEEN INTERVAL '167 hours' PRECEDING AND INTERVAL '167 hours' PRECEDING)
           AS lag_168h,
       bucket + INTERVAL '1 hour' AS created
FROM readings_hourly
WINDOW w AS (PARTITION BY tenant_id, asset_id ORDER BY bucket);
