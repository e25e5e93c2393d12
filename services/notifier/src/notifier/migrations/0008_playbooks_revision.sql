-- The playbooks' revision: one counter moved by every write to the playbooks table (in the
-- writing transaction, so it is seen together with what changed). The consumer and the
-- sender keep the effective playbooks in memory and read them again only when the revision
-- they are told with their batch's own reads has moved.
CREATE TABLE playbooks_revision (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    revision bigint  NOT NULL
);
INSERT INTO playbooks_revision (only_row, revision) VALUES (true, 1);

CREATE FUNCTION playbooks_changed() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE playbooks_revision SET revision = revision + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER playbooks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON playbooks
    FOR EACH STATEMENT EXECUTE FUNCTION playbooks_changed();
