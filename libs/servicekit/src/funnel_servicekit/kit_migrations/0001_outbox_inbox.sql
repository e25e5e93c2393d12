-- The kit's own tables, created in every service's schema.

-- Transactional outbox: rows written in the same transaction as the state change,
-- published in id order by the relay, deleted once the broker acknowledged them.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea       NOT NULL,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    event_type  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Inbox: one row per consumed event (source, id); a duplicate finds its row and is skipped.
CREATE TABLE inbox (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- Poison messages sent to a dead-letter topic, counted for /metrics and for operators.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    error       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
