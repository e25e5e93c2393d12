-- Look-ups by a lead that had no index, each a scan of a whole table that only grows:
-- - the leads merged into a person (a lead's notes, an erasure's merged leads);
-- - a lead's visitors and Meta deliveries, moved to the survivor by every merge (an
--   automatic one included, in a form post) and deleted by an erasure.
-- (docs/decisions/0086)
CREATE INDEX leads_merged_into_idx ON leads (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX visitors_lead_idx ON visitors (lead_id);
CREATE INDEX platform_leads_seen_lead_idx ON platform_leads_seen (lead_id);
