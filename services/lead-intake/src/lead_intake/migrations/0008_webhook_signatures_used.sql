-- Timestamped generic-webhook signatures already used: a replay within the tolerance is refused
-- by every replica (rows older than the tolerance are useless and deleted as new ones come).
CREATE TABLE webhook_signatures_used (
    form_id   text        NOT NULL,
    digest    text        NOT NULL,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (form_id, digest)
);
CREATE INDEX webhook_signatures_used_signed_at ON webhook_signatures_used (signed_at);

-- Forms made before the timestamped signature keep taking the body-only one until switched off;
-- new forms do not.
UPDATE forms SET definition = definition || '{"accept_body_only_signature": true}'::jsonb;
