-- The form registry's full definition, a public key per form for activity beacons.
ALTER TABLE forms
    ADD COLUMN definition jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN public_key text UNIQUE;
UPDATE forms SET public_key = 'pk_' || md5(random()::text || clock_timestamp()::text || id)
 WHERE public_key IS NULL;
ALTER TABLE forms ALTER COLUMN public_key SET NOT NULL;

-- Identity is the normalized email, else the phone (E.164): email may be absent; an erased
-- lead keeps its id but no personal data.
ALTER TABLE leads
    ALTER COLUMN email DROP NOT NULL,
    ADD COLUMN source        text        NOT NULL DEFAULT 'form',
    ADD COLUMN captured_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN first_touch   jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN last_touch    jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN consent       jsonb,
    ADD COLUMN custom_fields jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN locale        text,
    ADD COLUMN time_zone     text,
    ADD COLUMN erased_at     timestamptz;
CREATE INDEX leads_phone_idx ON leads (phone) WHERE phone IS NOT NULL;

-- What each submission carried; the IP only truncated (/24 for IPv4, /48 for IPv6).
ALTER TABLE submissions
    ADD COLUMN source        text NOT NULL DEFAULT 'form',
    ADD COLUMN visitor_id    text,
    ADD COLUMN ip_truncated  text,
    ADD COLUMN consent       jsonb,
    ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN qualification jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN captured_at   timestamptz NOT NULL DEFAULT now();

-- Retries with an Idempotency-Key get the first answer; a different body is refused.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    body_sha256  text        NOT NULL,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Anonymous visitors, linked to a lead once they identify through a form.
CREATE TABLE visitors (
    visitor_id  text PRIMARY KEY,
    lead_id     uuid        NOT NULL REFERENCES leads (id),
    linked_at   timestamptz NOT NULL DEFAULT now()
);

-- Every activity; lead_id is null while the visitor is anonymous (emitted once linked).
CREATE TABLE activities (
    id            uuid PRIMARY KEY,
    lead_id       uuid REFERENCES leads (id),
    visitor_id    text,
    form_id       text REFERENCES forms (id),
    activity_type text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    order_id      text,
    details       jsonb       NOT NULL DEFAULT '{}',
    emitted_at    timestamptz
);
CREATE INDEX activities_pending_idx ON activities (visitor_id) WHERE lead_id IS NULL;
CREATE INDEX activities_lead_idx ON activities (lead_id);
-- A purchase with the same order id counts once.
CREATE UNIQUE INDEX activities_purchase_once ON activities (order_id)
    WHERE activity_type = 'purchase_completed' AND order_id IS NOT NULL;

-- Erasure requests: who asked is kept only as a hash, never the address itself.
CREATE TABLE erasure_requests (
    id            uuid PRIMARY KEY,
    email_sha256  text        NOT NULL,
    lead_ids      uuid[]      NOT NULL,
    requested_by  text        NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now()
);
