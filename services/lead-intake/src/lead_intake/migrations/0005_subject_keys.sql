-- Each person's own data key (AES-256): the personal data in their lead events is sealed with
-- it. Erasure deletes the row, and every copy of those events on every topic becomes noise.
CREATE TABLE subject_keys (
    lead_id     uuid PRIMARY KEY REFERENCES leads (id),
    data_key    bytea       NOT NULL CHECK (octet_length(data_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
