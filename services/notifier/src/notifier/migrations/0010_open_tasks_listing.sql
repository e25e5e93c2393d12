-- The open tasks, newest first, and an assignee's: the work queue a sales rep reads. Done
-- and dismissed tasks only grow, and the listing index holds them all, so a page of open
-- tasks walked past every closed one; these hold the open ones alone (docs/decisions/0087).
CREATE INDEX tasks_open_listing_idx ON tasks (created_at DESC, id DESC) WHERE status = 'open';
CREATE INDEX tasks_open_assignee_idx ON tasks (assignee, created_at DESC, id DESC)
    WHERE status = 'open' AND assignee IS NOT NULL;
