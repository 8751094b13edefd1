-- The online refresh queue names the feature relation whose rows changed, so `ems materialize`
-- rewrites only the online views reading it: an hourly cycle no longer rewrites an asset's static
-- `asset_profile` row (or its weather row) because its load features moved. NULL: every view of the
-- entity (an asset created or moved to another site; entries queued before this migration).
-- The two refresh functions are those of 095 and 093 with only their queue insert changed
-- (applied migrations are immutable, so the redefinition repeats their bodies).
ALTER TABLE online_refresh_queue ADD COLUMN IF NOT EXISTS relation text;

CREATE OR REPLACE FUNCTION ems_refresh_load_features(p_tenant text[], p_asset text[], p_lo timestamptz[],
                                                     p_hi timestamptz[])
RETURNS TABLE (lag_rows bigint, rolling_rows bigint) LANGUAGE plpgsql AS $$
DECLARE
    narrow_rows CONSTANT integer := 120;
BEGIN
    DROP TABLE IF EXISTS _ems_out, _ems_lags, _ems_rolling;
    CREATE TEMP TABLE _ems_out ON COMMIT DROP AS
        SELECT m.*, (SELECT count(*) FROM (SELECT 1 FROM readings_hourly h
                                            WHERE h.tenant_id = m.tenant_id AND h.asset_id = m.asset_id
                                              AND h.bucket >= m.lo AND h.bucket < m.hi
                                            LIMIT narrow_rows + 1) AS capped) <= narrow_rows AS narrow
        FROM (SELECT tenant_id, asset_id, row_number() OVER () AS rid, lower(r) AS lo, upper(r) AS hi
              FROM (SELECT d.tenant_id, d.asset_id,
                           unnest(range_agg(tstzrange(d.lo, d.hi + INTERVAL '167 hours'))) AS r
                    FROM unnest(p_tenant, p_asset, p_lo, p_hi) AS d(tenant_id, asset_id, lo, hi)
                    GROUP BY d.tenant_id, d.asset_id) AS merged) AS m;
    CREATE TEMP TABLE _ems_rolling ON COMMIT DROP AS
        SELECT * FROM (
            SELECT h.tenant_id, h.asset_id, h.bucket, o.lo,
                   h.bucket + INTERVAL '1 hour' AS event_timestamp,
                   h.avg_value AS lag_1h,
                   avg(h.avg_value) OVER (w RANGE BETWEEN INTERVAL '23 hours' PRECEDING
                                                      AND INTERVAL '23 hours' PRECEDING) AS lag_24h,
                   avg(h.avg_value) OVER (w RANGE BETWEEN INTERVAL '167 hours' PRECEDING
                                                      AND INTERVAL '167 hours' PRECEDING) AS lag_168h,
                   avg(h.avg_value) OVER w24                                AS historical_avg_24h,
                   stddev_samp(h.avg_value) OVER w24                        AS historical_std_24h,
                   min(h.avg_value) OVER w24                                AS min_24h,
                   max(h.avg_value) OVER w24                                AS max_24h,
                   max(h.avg_value) OVER w24 - min(h.avg_value) OVER w24    AS range_24h,
                   count(*) OVER w24                                        AS hours_24h,
                   avg(h.avg_value) OVER w168                               AS historical_avg_168h,
                   stddev_samp(h.avg_value) OVER w168                       AS historical_std_168h,
                   min(h.avg_value) OVER w168                               AS min_168h,
                   max(h.avg_value) OVER w168                               AS max_168h,
                   max(h.avg_value) OVER w168 - min(h.avg_value) OVER w168  AS range_168h,
                   count(*) OVER w168                                       AS hours_168h
            FROM _ems_out o
            JOIN readings_hourly h ON h.tenant_id = o.tenant_id AND h.asset_id = o.asset_id
                                  AND h.bucket >= o.lo - INTERVAL '167 hours' AND h.bucket < o.hi
            WHERE NOT o.narrow
            WINDOW w    AS (PARTITION BY o.rid ORDER BY h.bucket),
                   w24  AS (w RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND CURRENT ROW),
                   w168 AS (w RANGE BETWEEN INTERVAL '167 hours' PRECEDING AND CURRENT ROW)
        ) AS computed
        WHERE bucket >= lo;
    -- The same frames per row: [b - 23 h, b] and [b - 167 h, b]; the lags are the one bucket 23 h and
    -- 167 h before (avg of one value, as the window's one-row frame gives).
    INSERT INTO _ems_rolling
    SELECT b.tenant_id, b.asset_id, b.bucket, o.lo, b.bucket + INTERVAL '1 hour', b.avg_value,
           f.lag_24h, f.lag_168h, f.avg_24h, f.std_24h, f.min_24h, f.max_24h, f.max_24h - f.min_24h, f.hours_24h,
           f.avg_168h, f.std_168h, f.min_168h, f.max_168h, f.max_168h - f.min_168h, f.hours_168h
    FROM _ems_out o
    JOIN readings_hourly b ON b.tenant_id = o.tenant_id AND b.asset_id = o.asset_id
                          AND b.bucket >= o.lo AND b.bucket < o.hi
    CROSS JOIN LATERAL (
        SELECT avg(h.avg_value) FILTER (WHERE h.bucket = b.bucket - INTERVAL '23 hours')  AS lag_24h,
               avg(h.avg_value) FILTER (WHERE h.bucket = b.bucket - INTERVAL '167 hours') AS lag_168h,
               avg(h.avg_value ORDER BY h.bucket) FILTER (WHERE h.bucket >= b.bucket - INTERVAL '23 hours') AS avg_24h,
               stddev_samp(h.avg_value ORDER BY h.bucket)
                   FILTER (WHERE h.bucket >= b.bucket - INTERVAL '23 hours')              AS std_24h,
               min(h.avg_value) FILTER (WHERE h.bucket >= b.bucket - INTERVAL '23 hours') AS min_24h,
               max(h.avg_value) FILTER (WHERE h.bucket >= b.bucket - INTERVAL '23 hours') AS max_24h,
               count(*) FILTER (WHERE h.bucket >= b.bucket - INTERVAL '23 hours')         AS hours_24h,
               avg(h.avg_value ORDER BY h.bucket)                                         AS avg_168h,
               stddev_samp(h.avg_value ORDER BY h.bucket)                                 AS std_168h,
               min(h.avg_value)                                                           AS min_168h,
               max(h.avg_value)                                                           AS max_168h,
               count(*)                                                                   AS hours_168h
        FROM readings_hourly h
        WHERE h.tenant_id = b.tenant_id AND h.asset_id = b.asset_id
          AND h.bucket >= b.bucket - INTERVAL '167 hours' AND h.bucket <= b.bucket) AS f
    WHERE o.narrow;
    CREATE TEMP TABLE _ems_lags ON COMMIT DROP AS
        SELECT tenant_id, asset_id, event_timestamp, lag_1h, lag_24h, lag_168h FROM _ems_rolling;

    DELETE FROM _ems_lags n USING load_lag_features t
     WHERE t.tenant_id = n.tenant_id AND t.asset_id = n.asset_id AND t.event_timestamp = n.event_timestamp
       AND (t.lag_1h, t.lag_24h, t.lag_168h) IS NOT DISTINCT FROM (n.lag_1h, n.lag_24h, n.lag_168h);
    DELETE FROM _ems_rolling n USING load_rolling_features t
     WHERE t.tenant_id = n.tenant_id AND t.asset_id = n.asset_id AND t.event_timestamp = n.event_timestamp
       AND (t.historical_avg_24h, t.historical_std_24h, t.min_24h, t.max_24h, t.range_24h, t.hours_24h,
            t.historical_avg_168h, t.historical_std_168h, t.min_168h, t.max_168h, t.range_168h, t.hours_168h)
           IS NOT DISTINCT FROM
           (n.historical_avg_24h, n.historical_std_24h, n.min_24h, n.max_24h, n.range_24h, n.hours_24h,
            n.historical_avg_168h, n.historical_std_168h, n.min_168h, n.max_168h, n.range_168h, n.hours_168h);

    INSERT INTO load_lag_features (tenant_id, asset_id, event_timestamp, lag_1h, lag_24h, lag_168h, created)
    SELECT tenant_id, asset_id, event_timestamp, lag_1h, lag_24h, lag_168h, event_timestamp FROM _ems_lags
    ON CONFLICT (tenant_id, asset_id, event_timestamp) DO UPDATE
       SET lag_1h = EXCLUDED.lag_1h, lag_24h = EXCLUDED.lag_24h, lag_168h = EXCLUDED.lag_168h;
    GET DIAGNOSTICS lag_rows = ROW_COUNT;
    INSERT INTO load_rolling_features (tenant_id, asset_id, event_timestamp, historical_avg_24h, historical_std_24h,
                                       min_24h, max_24h, range_24h, hours_24h, historical_avg_168h,
                                       historical_std_168h, min_168h, max_168h, range_168h, hours_168h, created)
    SELECT tenant_id, asset_id, event_timestamp, historical_avg_24h, historical_std_24h, min_24h, max_24h,
           range_24h, hours_24h, historical_avg_168h, historical_std_168h, min_168h, max_168h, range_168h,
           hours_168h, event_timestamp
    FROM _ems_rolling
    ON CONFLICT (tenant_id, asset_id, event_timestamp) DO UPDATE
       SET historical_avg_24h = EXCLUDED.historical_avg_24h, historical_std_24h = EXCLUDED.historical_std_24h,
           min_24h = EXCLUDED.min_24h, max_24h = EXCLUDED.max_24h, range_24h = EXCLUDED.range_24h,
           hours_24h = EXCLUDED.hours_24h, historical_avg_168h = EXCLUDED.historical_avg_168h,
           historical_std_168h = EXCLUDED.historical_std_168h, min_168h = EXCLUDED.min_168h,
           max_168h = EXCLUDED.max_168h, range_168h = EXCLUDED.range_168h, hours_168h = EXCLUDED.hours_168h;
    GET DIAGNOSTICS rolling_rows = ROW_COUNT;

    INSERT INTO online_refresh_queue (tenant_id, asset_id, relation)
    SELECT DISTINCT tenant_id, asset_id, 'load_lag_features' FROM _ems_lags
    UNION ALL SELECT DISTINCT tenant_id, asset_id, 'load_rolling_features' FROM _ems_rolling;
    DROP TABLE _ems_out, _ems_lags, _ems_rolling;
    RETURN NEXT;
END $$;

CREATE OR REPLACE FUNCTION ems_refresh_asset_weather(p_site text[], p_lo timestamptz[], p_hi timestamptz[],
                                                     p_tenant text[], p_asset text[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
    removed bigint;
BEGIN
    DROP TABLE IF EXISTS _ems_weather;
    CREATE TEMP TABLE _ems_weather ON COMMIT DROP AS
        SELECT a.tenant_id, a.asset_id, w.bucket + INTERVAL '1 hour' AS event_timestamp,
               w.temperature, w.humidity, w.solar_irradiance, w.wind_speed
        FROM unnest(p_site, p_lo, p_hi) AS d(site_id, lo, hi)
        JOIN assets a ON a.site_id = d.site_id
        JOIN weather_hourly w ON w.site_id = d.site_id AND w.bucket >= d.lo AND w.bucket < d.hi
        WHERE (a.tenant_id, a.asset_id) NOT IN (SELECT * FROM unnest(p_tenant, p_asset))
        UNION ALL
        SELECT a.tenant_id, a.asset_id, w.bucket + INTERVAL '1 hour',
               w.temperature, w.humidity, w.solar_irradiance, w.wind_speed
        FROM (SELECT DISTINCT * FROM unnest(p_tenant, p_asset) AS x(tenant_id, asset_id)) AS x
        JOIN assets a ON a.tenant_id = x.tenant_id AND a.asset_id = x.asset_id
        JOIN weather_hourly w ON w.site_id = a.site_id;

    DELETE FROM asset_weather_features t
     USING (SELECT DISTINCT * FROM unnest(p_tenant, p_asset) AS x(tenant_id, asset_id)) AS x
     WHERE t.tenant_id = x.tenant_id AND t.asset_id = x.asset_id
       AND NOT EXISTS (SELECT 1 FROM _ems_weather n WHERE n.tenant_id = t.tenant_id AND n.asset_id = t.asset_id
                                                      AND n.event_timestamp = t.event_timestamp);
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM _ems_weather n USING asset_weather_features t
     WHERE t.tenant_id = n.tenant_id AND t.asset_id = n.asset_id AND t.event_timestamp = n.event_timestamp
       AND (t.temperature, t.humidity, t.solar_irradiance, t.wind_speed)
           IS NOT DISTINCT FROM (n.temperature, n.humidity, n.solar_irradiance, n.wind_speed);
    INSERT INTO asset_weather_features (tenant_id, asset_id, event_timestamp, temperature, humidity,
                                        solar_irradiance, wind_speed, created)
    SELECT tenant_id, asset_id, event_timestamp, temperature, humidity, solar_irradiance, wind_speed,
           event_timestamp
    FROM _ems_weather
    ON CONFLICT (tenant_id, asset_id, event_timestamp) DO UPDATE
       SET temperature = EXCLUDED.temperature, humidity = EXCLUDED.humidity,
           solar_irradiance = EXCLUDED.solar_irradiance, wind_speed = EXCLUDED.wind_speed;
    GET DIAGNOSTICS written = ROW_COUNT;

    INSERT INTO online_refresh_queue (tenant_id, asset_id, relation)
    SELECT DISTINCT tenant_id, asset_id, 'asset_weather_features' FROM _ems_weather
    UNION SELECT x.tenant_id, x.asset_id, NULL FROM unnest(p_tenant, p_asset) AS x(tenant_id, asset_id);
    DROP TABLE _ems_weather;
    RETURN written + removed;
END $$;
