-- Activities naming an email nobody has given yet wait for that person. They are found by
-- the SHA-256 of the normalized address, never the address itself, and are emitted when a
-- lead with that email appears.
ALTER TABLE activities ADD COLUMN pending_email_sha256 text;
CREATE INDEX activities_pending_email_idx ON activities (pending_email_sha256)
    WHERE lead_id IS NULL AND pending_email_sha256 IS NOT NULL;

-- A new lead (or a visitor identifying) claims what waited for it. The advisory locks pair
-- with the ones `POST /v1/activities` takes before deciding an activity must wait, so a
-- pending row and the lead it waits for can never both commit unseen by the other. One
-- function, one round trip: each statement in it sees what committed before it ran.
CREATE FUNCTION claim_pending_activities(p_lead uuid, p_visitor text, p_email_sha256 text)
RETURNS SETOF activities LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_email_sha256 IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('pending-email:' || p_email_sha256));
        RETURN QUERY UPDATE activities SET lead_id = p_lead, emitted_at = now()
            WHERE lead_id IS NULL AND pending_email_sha256 = p_email_sha256 RETURNING *;
    END IF;
    IF p_visitor IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('pending-visitor:' || p_visitor));
        -- An activity that named an email waits for that email, not for the visitor.
        RETURN QUERY UPDATE activities SET lead_id = p_lead, emitted_at = now()
            WHERE lead_id IS NULL AND visitor_id = p_visitor AND pending_email_sha256 IS NULL
            RETURNING *;
    END IF;
END $$;

-- Meta Lead Ads: which of our forms each Meta lead form feeds, and how its questions map.
CREATE TABLE meta_forms (
    meta_form_id text PRIMARY KEY,
    form_id      text        NOT NULL REFERENCES forms (id),
    field_map    jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meta_forms_form_idx ON meta_forms (form_id);

-- Webhook secrets per form and platform. The previous secret keeps working until
-- previous_valid_until, so a sender can be switched over without dropping deliveries.
CREATE TABLE form_webhook_secrets (
    form_id              text        NOT NULL REFERENCES forms (id),
    platform             text        NOT NULL,
    secret               text        NOT NULL,
    previous_secret      text,
    previous_valid_until timestamptz,
    rotated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (form_id, platform)
);
