-- The full lead state: scores, answers, the stall timer; every signal seen; funnel versions.
ALTER TABLE lead_stages
    ADD COLUMN previous_stage    text,
    ADD COLUMN fit_score         double precision NOT NULL DEFAULT 0,
    ADD COLUMN engagement_score  double precision NOT NULL DEFAULT 0,
    ADD COLUMN score             double precision NOT NULL DEFAULT 0,
    ADD COLUMN temperature       text             NOT NULL DEFAULT 'cold',
    ADD COLUMN answers           jsonb            NOT NULL DEFAULT '{}',
    ADD COLUMN last_activity_at  timestamptz,
    ADD COLUMN as_of             timestamptz,
    -- When the stall timer fires (stalled, or lost once stalled); durable, so restarts keep it.
    ADD COLUMN timer_due_at      timestamptz;
CREATE INDEX lead_stages_timer_idx ON lead_stages (timer_due_at) WHERE timer_due_at IS NOT NULL;

ALTER TABLE transitions
    ADD COLUMN to_position integer,
    ADD COLUMN actor       text;

-- Every signal a lead has had (its engagement points decay from here). `applied` is false
-- for signals that arrived before the lead's capture (another topic); the capture folds them.
CREATE TABLE lead_signals (
    lead_id      uuid             NOT NULL,
    event_id     text             NOT NULL,
    occurred_at  timestamptz      NOT NULL,
    points       double precision NOT NULL,
    applied      boolean          NOT NULL,
    signal       jsonb            NOT NULL,
    PRIMARY KEY (lead_id, event_id)
);

-- Erased people: events that straggle in afterwards must not bring their data back.
CREATE TABLE erased_leads (
    lead_id    uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL
);

-- Funnel definitions people write; version 1 of the defaults ships with the package.
CREATE TABLE funnel_definitions (
    funnel_id     text        NOT NULL,
    version       integer     NOT NULL CHECK (version >= 1),
    status        text        NOT NULL CHECK (status IN ('draft', 'published')),
    format        text        NOT NULL CHECK (format IN ('yaml', 'json')),
    source        text        NOT NULL,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    PRIMARY KEY (funnel_id, version)
);
