-- Raw meter readings. ts is the start of the measured interval (UTC); value is in the asset's unit.
CREATE TABLE IF NOT EXISTS readings (
    tenant_id    text             NOT NULL,
    asset_id     text             NOT NULL,
    ts           timestamptz      NOT NULL,
    value        double precision NOT NULL,
    unit         text,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, asset_id, ts)
);
