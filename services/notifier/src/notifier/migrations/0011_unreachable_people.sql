-- People whose touches earlier versions left scheduled for good (docs/decisions/0088): their
-- sealed contact data was parked (it never opens) or dropped (lead-intake knew no key), so no
-- contact came, and every claim passed their touches over. They get the contact with no
-- address that the contact resolver now stores in those cases: their touches are claimed and
-- suppressed as unreachable. Only touches scheduled a day ago or more count, so a person
-- whose lead event is merely behind their stage events is not taken for one with no contact.
INSERT INTO contacts (lead_id, email)
SELECT DISTINCT t.lead_id, ''
FROM touches t
WHERE t.status = 'scheduled' AND t.channel <> 'task'
  AND t.created_at < now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.lead_id = t.lead_id)
  AND NOT EXISTS (SELECT 1 FROM pending_contacts p
                  WHERE p.lead_id = t.lead_id AND p.next_try_at < 'infinity')
  AND NOT EXISTS (SELECT 1 FROM erased_leads e WHERE e.lead_id = t.lead_id)
ON CONFLICT (lead_id) DO NOTHING;
