-- Who can be reached (from lead events), and the durable schedule of touches.
CREATE TABLE contacts (
    lead_id     uuid PRIMARY KEY,
    email       text        NOT NULL,
    first_name  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE touches (
    id              uuid PRIMARY KEY,
    lead_id         uuid        NOT NULL,
    playbook        text        NOT NULL,
    channel         text        NOT NULL,
    template        text        NOT NULL,
    funnel_id       text,
    stage           text,
    cause_event_id  text,
    status          text        NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'sending', 'sent', 'failed', 'cancelled')),
    due_at          timestamptz NOT NULL,
    lease_until     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    message_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    -- A playbook touches a lead once per cause: the welcome is sent once, ever.
    UNIQUE (lead_id, playbook)
);
CREATE INDEX touches_due_idx ON touches (due_at) WHERE status IN ('scheduled', 'sending');
