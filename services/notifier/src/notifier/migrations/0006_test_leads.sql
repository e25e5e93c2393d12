-- Test leads (an ad platform's test, or set by an admin key at lead-intake): no playbook
-- touches them; touches scheduled before the notifier learnt it are cancelled.
CREATE TABLE test_leads (
    lead_id   uuid        PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);
