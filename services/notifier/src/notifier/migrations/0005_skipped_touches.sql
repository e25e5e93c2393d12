-- A touch whose trigger was older than its playbook's max_trigger_age when it would have been
-- scheduled is recorded 'skipped' (reason 'stale'): visible in a lead's touches, never sent.
ALTER TABLE touches DROP CONSTRAINT touches_status_check;
ALTER TABLE touches
    ADD CONSTRAINT touches_status_check CHECK (status IN
        ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'suppressed', 'skipped'));
