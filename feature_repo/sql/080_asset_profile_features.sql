-- Static asset attributes (site, IANA time zone) for the calendar on-demand view. They hold for
-- all time, so event_timestamp is the epoch; created orders corrections.
CREATE OR REPLACE VIEW asset_profile_features AS
SELECT tenant_id,
       asset_id,
       coalesce(site_id, '') AS site_id,
       timezone,
       TIMESTAMPTZ '1970-01-01 00:00:00+00' AS event_timestamp,
       updated_at AS created
FROM assets;
