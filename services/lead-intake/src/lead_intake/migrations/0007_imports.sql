-- Imports of existing contacts (CSV or JSON): the import, its rows staged as sent, the errors
-- of its bad rows. The request stages every row in one transaction (a refused request leaves
-- nothing); the import runner then works through them in batches, counting as it goes.
CREATE TABLE imports (
    id              uuid        PRIMARY KEY,
    form_id         text        NOT NULL REFERENCES forms (id),
    on_existing     text        NOT NULL CHECK (on_existing IN ('skip', 'update')),
    -- The same file sent again (same Idempotency-Key, or the same content) is this import.
    idempotency_key text        UNIQUE,
    content_sha256  bytea       NOT NULL UNIQUE,
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'done')),
    rows            integer     NOT NULL,
    next_row        integer     NOT NULL DEFAULT 1,  -- rows before it are done
    imported        integer     NOT NULL DEFAULT 0,
    existing        integer     NOT NULL DEFAULT 0,
    updated         integer     NOT NULL DEFAULT 0,
    failed          integer     NOT NULL DEFAULT 0,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX imports_waiting_idx ON imports (created_at) WHERE status <> 'done';

-- Rows waiting to be imported, as field name -> text; deleted once their batch is done.
CREATE TABLE import_rows (
    import_id uuid    NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_no    integer NOT NULL,
    data      jsonb   NOT NULL,
    PRIMARY KEY (import_id, row_no)
);

CREATE TABLE import_errors (
    import_id uuid    NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_no    integer NOT NULL,
    field     text    NOT NULL,
    message   text    NOT NULL
);
CREATE INDEX import_errors_idx ON import_errors (import_id, row_no);
