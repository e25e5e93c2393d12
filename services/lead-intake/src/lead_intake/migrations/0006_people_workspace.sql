-- The people workspace: a person read, found and corrected by the team.

-- Consent changed by hand, per category: {"marketing": {"granted": false, "at": ..., "source":
-- "manual:ana"}}. The consent a capture brought stays in `consent`; the newer of the two wins.
ALTER TABLE leads
    ADD COLUMN consent_changes jsonb   NOT NULL DEFAULT '{}',
    ADD COLUMN is_test         boolean NOT NULL DEFAULT false,
    ADD COLUMN merged_into     uuid REFERENCES leads (id);

-- Keyed blind indexes of people (docs/decisions/0024): HMAC-SHA256 under
-- FUNNEL_SEARCH_INDEX_KEY (never stored here) of each person's exact email and phone, and of
-- each 2..12-character prefix of the words of their names and of their email's local part.
-- A search hashes what it looks for and reads this index; erasure deletes a person's rows.
CREATE TABLE lead_search_terms (
    digest   bytea NOT NULL CHECK (octet_length(digest) = 16),
    lead_id  uuid  NOT NULL REFERENCES leads (id),
    PRIMARY KEY (digest, lead_id)
);
CREATE INDEX lead_search_terms_lead_idx ON lead_search_terms (lead_id);
