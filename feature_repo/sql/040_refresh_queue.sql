-- Time ranges touched by ingest, written in the ingest transaction; `ems refresh` recomputes the
-- hourly buckets they cover and deletes the entries it handled.
CREATE TABLE IF NOT EXISTS readings_refresh_queue (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    asset_id   text        NOT NULL,
    from_ts    timestamptz NOT NULL,
    to_ts      timestamptz NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS weather_refresh_queue (
    id         bigserial   PRIMARY KEY,
    site_id    text        NOT NULL,
    from_ts    timestamptz NOT NULL,
    to_ts      timestamptz NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);
