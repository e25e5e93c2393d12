-- The Meta fetcher's claim asks for one platform's due leads in due order. Indexed by due time
-- alone, a plan that prices an index probe as memory does (docs/decisions/0091) preferred the
-- primary key's platform prefix and sorted every lead of the platform, parked ones included;
-- by platform, then due time, the claim reads the due range in order and stops at its limit.
DROP INDEX pending_platform_leads_due_idx;
CREATE INDEX pending_platform_leads_due_idx ON pending_platform_leads (platform, next_attempt_at);
