-- Ad-platform leads whose details must still be fetched (Meta sends only ids): kept until
-- the fetch succeeds, retried with backoff, so nothing is lost while the platform fails.
CREATE TABLE pending_platform_leads (
    platform        text        NOT NULL,
    external_id     text        NOT NULL,
    form_id         text        NOT NULL REFERENCES forms (id),
    notice          jsonb       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX pending_platform_leads_due_idx ON pending_platform_leads (next_attempt_at);

-- External lead ids already captured: a redelivered webhook changes nothing.
CREATE TABLE platform_leads_seen (
    platform    text        NOT NULL,
    external_id text        NOT NULL,
    lead_id     uuid        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, external_id)
);
