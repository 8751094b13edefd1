-- Sub-hourly intervals (issue "Generation and price forecasts", item 5). Readings stay at their native step
-- in `readings`; the asset records that step (ingest: the most common spacing of its readings, the finest seen),
-- and assets whose step divides 15 or 30 minutes get feature rows at that step, rolled up from the readings
-- (mean per step bucket). The hourly relation and tables are untouched. Both paths (plain and TimescaleDB)
-- compute these tables the same way, from `readings`, in `ems refresh`.
ALTER TABLE assets ADD COLUMN IF NOT EXISTS step_minutes integer;
ALTER TABLE assets DROP CONSTRAINT IF EXISTS assets_step_check;
ALTER TABLE assets ADD CONSTRAINT assets_step_check CHECK (step_minutes IS NULL OR step_minutes BETWEEN 1 AND 1440);

-- One row per asset and complete step bucket, event_timestamp = the end of the bucket; every feature at T uses
-- readings with ts < T only. Same columns in both tables (one per step: each is one Feast source).
CREATE TABLE IF NOT EXISTS load_features_30min (
    tenant_id        text             NOT NULL,
    asset_id         text             NOT NULL,
    event_timestamp  timestamptz      NOT NULL,
    last_value       double precision,  -- mean of the bucket [T - step, T)
    lag_1d           double precision,  -- mean of the bucket starting 1 day before T
    lag_7d           double precision,  -- mean of the bucket starting 7 days before T
    avg_1d           double precision,  -- mean / std / min / max of the bucket means of the last day
    std_1d           double precision,
    min_1d           double precision,
    max_1d           double precision,
    steps_1d         bigint,            -- buckets with readings in the last day
    avg_7d           double precision,
    std_7d           double precision,
    n_readings       bigint             NOT NULL,  -- readings in the bucket [T - step, T)
    created          timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, event_timestamp)
);
CREATE TABLE IF NOT EXISTS load_features_15min (LIKE load_features_30min INCLUDING ALL);

-- Recompute the step features of the given ranges [lo, hi) (hour-aligned, from the readings refresh queue) and
-- of the rows that depend on them (a bucket moves the rows up to 7 days later), for the assets whose step
-- divides p_step; write only rows whose values changed, queue their entities for `ems materialize` (relation =
-- the table), return the rows written. The context read is the 7 days before each range (window frames).
CREATE OR REPLACE FUNCTION ems_refresh_step_features(p_step integer, p_tenant text[], p_asset text[],
                                                     p_lo timestamptz[], p_hi timestamptz[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    target text := CASE p_step WHEN 30 THEN 'load_features_30min' WHEN 15 THEN 'load_features_15min' END;
    step interval := make_interval(mins => p_step);
    written bigint;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'step % has no feature table (15 or 30)', p_step;
    END IF;
    DROP TABLE IF EXISTS _ems_step_out, _ems_step_rows;
    CREATE TEMP TABLE _ems_step_out ON COMMIT DROP AS
        SELECT tenant_id, asset_id, row_number() OVER () AS rid, lower(r) AS lo, upper(r) AS hi
        FROM (SELECT d.tenant_id, d.asset_id, unnest(range_agg(tstzrange(d.lo, d.hi + INTERVAL '7 days'))) AS r
              FROM unnest(p_tenant, p_asset, p_lo, p_hi) AS d(tenant_id, asset_id, lo, hi)
              JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
              WHERE a.step_minutes IS NOT NULL AND a.step_minutes <= p_step AND p_step % a.step_minutes = 0
              GROUP BY d.tenant_id, d.asset_id) AS merged;
    CREATE TEMP TABLE _ems_step_rows ON COMMIT DROP AS
        SELECT tenant_id, asset_id, event_timestamp, last_value, lag_1d, lag_7d, avg_1d, std_1d, min_1d, max_1d,
               steps_1d, avg_7d, std_7d, n_readings
        FROM (
            SELECT b.tenant_id, b.asset_id, b.bucket, o.lo, b.bucket + step AS event_timestamp,
                   b.value AS last_value,
                   avg(b.value) OVER (w RANGE BETWEEN INTERVAL '1 day' - step PRECEDING
                                              AND INTERVAL '1 day' - step PRECEDING) AS lag_1d,
                   avg(b.value) OVER (w RANGE BETWEEN INTERVAL '7 days' - step PRECEDING
                                              AND INTERVAL '7 days' - step PRECEDING) AS lag_7d,
                   avg(b.value) OVER w1d AS avg_1d, stddev_samp(b.value) OVER w1d AS std_1d,
                   min(b.value) OVER w1d AS min_1d, max(b.value) OVER w1d AS max_1d, count(*) OVER w1d AS steps_1d,
                   avg(b.value) OVER w7d AS avg_7d, stddev_samp(b.value) OVER w7d AS std_7d,
                   b.n AS n_readings
            FROM _ems_step_out o
            CROSS JOIN LATERAL (
                SELECT r.tenant_id, r.asset_id,
                       date_bin(step, r.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
                       avg(r.value) AS value, count(*) AS n
                FROM readings r
                WHERE r.tenant_id = o.tenant_id AND r.asset_id = o.asset_id
                  AND r.ts >= o.lo - INTERVAL '7 days' AND r.ts < o.hi
                GROUP BY 1, 2, 3) AS b
            WINDOW w   AS (PARTITION BY o.rid ORDER BY b.bucket),
                   w1d AS (w RANGE BETWEEN INTERVAL '1 day' - step PRECEDING AND CURRENT ROW),
                   w7d AS (w RANGE BETWEEN INTERVAL '7 days' - step PRECEDING AND CURRENT ROW)
        ) AS computed
        WHERE bucket >= lo;
    EXECUTE format($q$
        DELETE FROM _ems_step_rows n USING %1$I t
         WHERE t.tenant_id = n.tenant_id AND t.asset_id = n.asset_id AND t.event_timestamp = n.event_timestamp
           AND (t.last_value, t.lag_1d, t.lag_7d, t.avg_1d, t.std_1d, t.min_1d, t.max_1d, t.steps_1d, t.avg_7d,
                t.std_7d, t.n_readings)
               IS NOT DISTINCT FROM
               (n.last_value, n.lag_1d, n.lag_7d, n.avg_1d, n.std_1d, n.min_1d, n.max_1d, n.steps_1d, n.avg_7d,
                n.std_7d, n.n_readings)$q$, target);
    EXECUTE format($q$
        INSERT INTO %1$I (tenant_id, asset_id, event_timestamp, last_value, lag_1d, lag_7d, avg_1d, std_1d, min_1d,
                          max_1d, steps_1d, avg_7d, std_7d, n_readings, created)
        SELECT tenant_id, asset_id, event_timestamp, last_value, lag_1d, lag_7d, avg_1d, std_1d, min_1d, max_1d,
               steps_1d, avg_7d, std_7d, n_readings, event_timestamp
        FROM _ems_step_rows
        ON CONFLICT (tenant_id, asset_id, event_timestamp) DO UPDATE
           SET last_value = EXCLUDED.last_value, lag_1d = EXCLUDED.lag_1d, lag_7d = EXCLUDED.lag_7d,
               avg_1d = EXCLUDED.avg_1d, std_1d = EXCLUDED.std_1d, min_1d = EXCLUDED.min_1d,
               max_1d = EXCLUDED.max_1d, steps_1d = EXCLUDED.steps_1d, avg_7d = EXCLUDED.avg_7d,
               std_7d = EXCLUDED.std_7d, n_readings = EXCLUDED.n_readings$q$, target);
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO online_refresh_queue (tenant_id, asset_id, relation)
    SELECT DISTINCT tenant_id, asset_id, target FROM _ems_step_rows;
    DROP TABLE _ems_step_out, _ems_step_rows;
    RETURN written;
END $$;
