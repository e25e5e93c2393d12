-- Forms sites post to, the people they capture, and every submission.
CREATE TABLE forms (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    funnel_id   text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One person is one lead: identity is the normalized email.
CREATE TABLE leads (
    id          uuid PRIMARY KEY,
    email       text        NOT NULL UNIQUE,
    first_name  text,
    last_name   text,
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE submissions (
    id          uuid PRIMARY KEY,
    lead_id     uuid        NOT NULL REFERENCES leads (id),
    form_id     text        NOT NULL REFERENCES forms (id),
    utm         jsonb       NOT NULL DEFAULT '{}',
    landing_page text,
    referrer    text,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submissions_lead_idx ON submissions (lead_id);
