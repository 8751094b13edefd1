-- Where an asset is (issue 26, item 3): a PV unit's forecast needs the sun's position over its plant, from
-- the latitude and longitude (decimal degrees, WGS 84). Set with `ems assets set ... --latitude --longitude`.
-- There is no table of sites (a site is the series id of its weather), so the position is the asset's; both or
-- neither. One file for both flavours: `assets` is a plain table in each.
ALTER TABLE assets ADD COLUMN IF NOT EXISTS latitude double precision;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS longitude double precision;
ALTER TABLE assets DROP CONSTRAINT IF EXISTS assets_position_check;
ALTER TABLE assets ADD CONSTRAINT assets_position_check CHECK (
    (latitude IS NULL AND longitude IS NULL)
    OR (latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180));
