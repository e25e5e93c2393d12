-- Sales tasks get done: a person marks one done or dismissed, hands it to a colleague
-- (`assignee`, an API key's name), or gives it another due time. `version` counts the
-- task's changes (the ETag of PATCH /v1/tasks/{id}); every change is a funnel.task.updated.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks
    ADD COLUMN assignee    text,
    ADD COLUMN due_at      timestamptz,
    ADD COLUMN version     integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT tasks_status_check CHECK (status IN ('open', 'done', 'dismissed'));
-- The tasks made so far were "call now": due when made, unchanged since.
UPDATE tasks SET due_at = created_at, updated_at = created_at;

-- The list is newest first, paged by (created_at, id).
CREATE INDEX tasks_listing_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_assignee_idx ON tasks (assignee, created_at DESC, id DESC)
    WHERE assignee IS NOT NULL;
CREATE INDEX tasks_lead_idx ON tasks (lead_id);

-- The lead's owner (an API key's name, from stage-tracker's owner changes and the owner its
-- stage and score events carry): a playbook's task goes to the owner of its lead.
ALTER TABLE lead_state
    ADD COLUMN owner             text,
    ADD COLUMN owner_changed_at  timestamptz;
