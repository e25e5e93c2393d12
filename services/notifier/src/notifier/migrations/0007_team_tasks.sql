-- Team tasks: a leak playbook's task is about a funnel step, not a person. `leak_id` names
-- the leak (the touch behind the task is keyed by it, in lead_id); such a task is no
-- person's: the API shows it with lead_id null, a lead's task list leaves it out.
ALTER TABLE tasks ADD COLUMN leak_id uuid;
UPDATE tasks t SET leak_id = t.lead_id
WHERE t.playbook = 'leak-alert'
   OR EXISTS (SELECT 1 FROM playbooks p
              WHERE p.name = t.playbook AND p.definition -> 'trigger' ->> 'type' = 'leak');
