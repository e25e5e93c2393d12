-- Playbooks, what we know of each lead to re-check conditions at send time, per-category
-- consent, sales tasks, and the columns a touch needs to be scheduled, deferred or suppressed.

ALTER TABLE contacts
    ADD COLUMN locale    text,
    ADD COLUMN time_zone text;

-- A person's consent per category; a missing row means "never given".
CREATE TABLE consents (
    lead_id     uuid        NOT NULL,
    category    text        NOT NULL,
    granted     boolean     NOT NULL,
    source      text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lead_id, category)
);

-- Where each lead is now (from stage and scoring events), for the "still in the stage?" check.
CREATE TABLE lead_state (
    lead_id           uuid PRIMARY KEY,
    funnel_id         text,
    stage             text,
    stage_changed_at  timestamptz,
    temperature       text,
    score             double precision,
    scored_at         timestamptz
);

-- The last time a lead did each kind of thing ("no purchase since?").
CREATE TABLE lead_activities (
    lead_id        uuid        NOT NULL,
    activity_type  text        NOT NULL,
    last_at        timestamptz NOT NULL,
    PRIMARY KEY (lead_id, activity_type)
);

-- Leads erased here: later events about them (other topics may lag) schedule nothing.
CREATE TABLE erased_leads (
    lead_id    uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT now()
);

-- Playbooks saved through the API; they override the shipped defaults of the same name.
CREATE TABLE playbooks (
    name        text PRIMARY KEY,
    definition  jsonb       NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL
);

-- Touches: a playbook touches a lead once per dedupe key ('' = once ever, else per cause).
ALTER TABLE touches DROP CONSTRAINT touches_lead_id_playbook_key;
ALTER TABLE touches DROP CONSTRAINT touches_status_check;
ALTER TABLE touches
    ADD COLUMN dedupe_key     text        NOT NULL DEFAULT '',
    ADD COLUMN kind           text        NOT NULL DEFAULT 'transactional'
               CHECK (kind IN ('marketing', 'transactional')),
    ADD COLUMN category       text,
    ADD COLUMN requires_stage text,
    ADD COLUMN cancel_on      text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN triggered_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN first_due_at   timestamptz,
    ADD COLUMN reason         text,
    ADD COLUMN trace_context  jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN opened_at      timestamptz,
    ADD CONSTRAINT touches_status_check CHECK (status IN
        ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'suppressed')),
    ADD CONSTRAINT touches_once UNIQUE (lead_id, playbook, dedupe_key);
UPDATE touches SET first_due_at = due_at;
ALTER TABLE touches ALTER COLUMN first_due_at SET NOT NULL;
CREATE INDEX touches_lead_idx ON touches (lead_id, created_at);
CREATE INDEX touches_recent_sends_idx ON touches (lead_id, channel, sent_at) WHERE status = 'sent';

-- Each engagement (an open, a click on one link) is emitted once.
CREATE TABLE touch_engagements (
    touch_id    uuid        NOT NULL,
    kind        text        NOT NULL,
    url         text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (touch_id, kind, url)
);

-- Tasks for sales ("hot lead: call now"); one per task touch.
CREATE TABLE tasks (
    id          uuid PRIMARY KEY,
    lead_id     uuid        NOT NULL,
    playbook    text        NOT NULL,
    title       text        NOT NULL,
    funnel_id   text,
    stage       text,
    score       double precision,
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_open_idx ON tasks (created_at) WHERE status = 'open';
