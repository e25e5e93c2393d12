-- Sealed personal data of v2 lead events, kept until the contact resolver has fetched the
-- lead's data key from lead-intake (outside any transaction) and stored the contact. The
-- consumer only inserts here, so an unreachable lead-intake never stalls the lead events.
-- Erasure deletes a lead's rows (what they hold is unreadable without the erased key anyway).
CREATE TABLE pending_contacts (
    id           bigserial PRIMARY KEY,
    lead_id      uuid        NOT NULL,
    event_type   text        NOT NULL,
    sealed       jsonb       NOT NULL,
    locale       text,
    time_zone    text,
    attempts     integer     NOT NULL DEFAULT 0,
    next_try_at  timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_contacts_lead_idx ON pending_contacts (lead_id, id);
CREATE INDEX pending_contacts_due_idx ON pending_contacts (next_try_at);
