-- The operators' view of each lead's current stage holds the leads the reports count: not a
-- lead merged into another (its survivor is the person), nor a test lead.
CREATE OR REPLACE VIEW lead_current_stage AS
SELECT s.lead_id,
       last.entry ->> 'funnel_id' AS funnel_id,
       last.entry ->> 'stage' AS stage,
       (last.entry ->> 'at')::timestamptz AS changed_at
FROM lead_states s
CROSS JOIN LATERAL (SELECT s.state -> 'entries' -> -1 AS entry) last
WHERE last.entry IS NOT NULL
  AND s.state ->> 'merged_into' IS NULL
  AND coalesce((s.state ->> 'test')::boolean, false) = false;
