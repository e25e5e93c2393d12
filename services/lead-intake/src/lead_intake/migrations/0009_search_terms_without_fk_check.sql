-- The search index's rows are derived from their lead and written only with it (in the
-- statement that writes a new lead, or while holding a known lead's row); leads are never
-- deleted (an erasure deletes the entries). The foreign key's check, one lookup per entry
-- (a person has some 20 to 80), was 40 % of an import's database work (docs/decisions/0056).
ALTER TABLE lead_search_terms DROP CONSTRAINT IF EXISTS lead_search_terms_lead_id_fkey;
