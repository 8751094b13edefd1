-- Plain PostgreSQL: incremental refresh of the hourly tables from the refresh queues. Each call
-- recomputes the whole UTC hours covered by the queued ranges (so late or corrected readings are
-- picked up), in one transaction, serialised by an advisory lock. Returns the rows written.
CREATE OR REPLACE FUNCTION ems_refresh_readings_hourly() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last_id bigint;
    written bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ems_refresh_readings_hourly'));
    SELECT max(id) INTO last_id FROM readings_refresh_queue;
    IF last_id IS NULL THEN
        RETURN 0;
    END IF;
    CREATE TEMP TABLE _dirty ON COMMIT DROP AS
        SELECT tenant_id, asset_id,
               date_bin(INTERVAL '1 hour', min(from_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00') AS lo,
               date_bin(INTERVAL '1 hour', max(to_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00')
                   + INTERVAL '1 hour' AS hi
        FROM readings_refresh_queue WHERE id <= last_id
        GROUP BY tenant_id, asset_id;
    DELETE FROM readings_hourly h USING _dirty d
     WHERE h.tenant_id = d.tenant_id AND h.asset_id = d.asset_id AND h.bucket >= d.lo AND h.bucket < d.hi;
    INSERT INTO readings_hourly (tenant_id, asset_id, bucket, avg_value, min_value, max_value,
                                 std_value, n_readings)
    SELECT r.tenant_id, r.asset_id,
           date_bin(INTERVAL '1 hour', r.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           avg(r.value), min(r.value), max(r.value), stddev_samp(r.value), count(*)
    FROM readings r
    JOIN _dirty d ON r.tenant_id = d.tenant_id AND r.asset_id = d.asset_id AND r.ts >= d.lo AND r.ts < d.hi
    GROUP BY 1, 2, 3;
    GET DIAGNOSTICS written = ROW_COUNT;
    DELETE FROM readings_refresh_queue WHERE id <= last_id;
    DROP TABLE _dirty;
    RETURN written;
END $$;

CREATE OR REPLACE FUNCTION ems_refresh_weather_hourly() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last_id bigint;
    written bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ems_refresh_weather_hourly'));
    SELECT max(id) INTO last_id FROM weather_refresh_queue;
    IF last_id IS NULL THEN
        RETURN 0;
    END IF;
    CREATE TEMP TABLE _dirty_weather ON COMMIT DROP AS
        SELECT site_id,
               date_bin(INTERVAL '1 hour', min(from_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00') AS lo,
               date_bin(INTERVAL '1 hour', max(to_ts), TIMESTAMPTZ '2000-01-01 00:00:00+00')
                   + INTERVAL '1 hour' AS hi
        FROM weather_refresh_queue WHERE id <= last_id
        GROUP BY site_id;
    DELETE FROM weather_hourly h USING _dirty_weather d
     WHERE h.site_id = d.site_id AND h.bucket >= d.lo AND h.bucket < d.hi;
    INSERT INTO weather_hourly (site_id, bucket, temperature, humidity, solar_irradiance, wind_speed)
    SELECT w.site_id, date_bin(INTERVAL '1 hour', w.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           avg(w.temperature), avg(w.humidity), avg(w.solar_irradiance), avg(w.wind_speed)
    FROM weather w
    JOIN _dirty_weather d ON w.site_id = d.site_id AND w.ts >= d.lo AND w.ts < d.hi
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;
    DELETE FROM weather_refresh_queue WHERE id <= last_id;
    DROP TABLE _dirty_weather;
    RETURN written;
END $$;
