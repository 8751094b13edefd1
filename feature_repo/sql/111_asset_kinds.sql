-- What an asset is (issue "Generation and price forecasts"): a consumption meter (load forecasts), a
-- generation unit with its capacity and technology (generation forecasts, normalised by the capacity and
-- bounded to [0, capacity]) or a market zone (price forecasts). Existing assets are consumption meters.
ALTER TABLE assets ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'consumption';
ALTER TABLE assets ADD COLUMN IF NOT EXISTS capacity double precision;  -- in the asset's unit (e.g. MW)
ALTER TABLE assets ADD COLUMN IF NOT EXISTS technology text;
ALTER TABLE assets DROP CONSTRAINT IF EXISTS assets_kind_check;
ALTER TABLE assets ADD CONSTRAINT assets_kind_check CHECK (coalesce(  -- NULL (a missing capacity) is false here
    (kind = 'generation' AND capacity > 0 AND technology IN ('wind', 'pv'))
    OR (kind IN ('consumption', 'market') AND capacity IS NULL AND technology IS NULL), false));
