-- Each lead's current stage, as the skeleton's table of that name showed it (operators and
-- the fault tests read it): the latest stage entry of the lead's state. Erased leads have
-- no state, so they are not in it.
CREATE VIEW lead_current_stage AS
SELECT s.lead_id,
       last.entry ->> 'funnel_id' AS funnel_id,
       last.entry ->> 'stage' AS stage,
       (last.entry ->> 'at')::timestamptz AS changed_at
FROM lead_states s
CROSS JOIN LATERAL (SELECT s.state -> 'entries' -> -1 AS entry) last
WHERE last.entry IS NOT NULL;
