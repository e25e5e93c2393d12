-- A person's timeline: one row per thing that happened to them, written by the projection in
-- the same transaction as their state (reporting.projection.service.project), from the events
-- only. `key` is the item's identity taken from its event (a submission, activity, touch or
-- task version id; a move's funnel, stage and time), so an event delivered twice, or replayed
-- by a rebuild, writes the same row once; it is also the tie-breaker of items at one instant.
-- No personal data beyond what the events carry in the clear (no name, email or phone).
CREATE TABLE timeline_timeline (
    lead_id     uuid            NOT NULL,
    at          timestamptz     NOT NULL,
    key         text COLLATE "C" NOT NULL,
    kind        text            NOT NULL,
    fields      jsonb           NOT NULL,
    -- The touch an open or click belongs to (its playbook and channel are copied from the
    -- send, whichever of them arrives first).
    touch_id    uuid
);

-- A page is one range scan of this index: the lead, newest first, the key breaking ties.
CREATE UNIQUE INDEX timeline_timeline_page ON timeline_timeline (lead_id, at DESC, key DESC);
