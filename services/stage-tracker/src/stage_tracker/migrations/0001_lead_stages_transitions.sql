-- Each lead's current stage, and every move it made (the "why is this lead here?").
CREATE TABLE lead_stages (
    lead_id         uuid PRIMARY KEY,
    funnel_id       text        NOT NULL,
    funnel_version  integer     NOT NULL,
    stage           text        NOT NULL,
    entered_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transitions (
    id                bigserial PRIMARY KEY,
    lead_id           uuid        NOT NULL,
    funnel_id         text        NOT NULL,
    funnel_version    integer     NOT NULL,
    from_stage        text,
    to_stage          text        NOT NULL,
    reason            text        NOT NULL,
    cause_event_id    text,
    cause_event_type  text,
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transitions_lead_idx ON transitions (lead_id, id);
