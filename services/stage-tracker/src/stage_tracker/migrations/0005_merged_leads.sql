-- Leads merged into another (the same person, `funnel.lead.merged.v1`): the work queue lists
-- the survivor alone. An erasure forgets the row with the rest.
CREATE TABLE merged_leads (
    lead_id     uuid        PRIMARY KEY,
    merged_into uuid        NOT NULL,
    merged_at   timestamptz NOT NULL
);
