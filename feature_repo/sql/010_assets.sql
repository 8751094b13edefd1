-- Assets (meters, buildings, feeders) of each tenant, with the site whose weather applies and the
-- IANA time zone used for calendar features.
CREATE TABLE IF NOT EXISTS assets (
    tenant_id   text        NOT NULL,
    asset_id    text        NOT NULL,
    site_id     text,
    timezone    text        NOT NULL DEFAULT 'UTC',
    unit        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, asset_id)
);
CREATE INDEX IF NOT EXISTS assets_site_idx ON assets (site_id);
