-- A lead's scheduled touches, found by lead: the consumer cancels them for many leads at once
-- (a stage left, an activity that makes them moot; docs/decisions/0090). With only
-- touches_due_idx matching `status = 'scheduled'`, a plan made while the table was small
-- read every scheduled touch of every lead on each call once it had grown.
CREATE INDEX touches_scheduled_lead_idx ON touches (lead_id) WHERE status = 'scheduled';
