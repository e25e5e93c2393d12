-- A rebuild (or the live projection) reads the leak events of one step from several
-- partitions in any order: a leak's detection may be projected before an earlier leak of the
-- same step is resolved. The unique "one open leak per step" index made that detection
-- vanish (ON CONFLICT DO NOTHING), so the table depended on the reading order. The rule
-- belongs to the watch, which now holds an advisory lock for its check and opens a leak only
-- where the step has none open; the index stays, not unique, for that lookup.
DROP INDEX leaks_one_open;
CREATE INDEX leaks_open_by_step ON leaks (funnel_id, from_stage, to_stage, segment)
    WHERE resolved_at IS NULL;
