-- Test leads (docs/decisions/0032): a capture flagged `test` marks its lead here, once. The
-- work queue leaves them out unless asked for them; an erasure forgets the mark too.
CREATE TABLE test_leads (
    lead_id   uuid        PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);
