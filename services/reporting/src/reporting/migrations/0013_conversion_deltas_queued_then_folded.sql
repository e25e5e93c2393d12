-- The projection no longer upserts a partition batch's conversion deltas into the quarter-hour
-- tables and their four rollups (some 30 row upserts per event): it appends the batch's summed
-- deltas as one row of arrays to a queue, in the inbox's transaction. The fold loop
-- (reporting.projection.worker) moves queued rows into the quarter-hour table and every
-- rollup in one transaction, summed over many batches. A report reads the tables plus the
-- queued deltas of its slots in one statement, so its numbers stay exact and real time
-- (docs/decisions/0067-conversion-deltas-queued-then-folded.md).
CREATE TABLE entry_counts_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    funnel_id   text[]        NOT NULL,
    stage       text[]        NOT NULL,
    hour        timestamptz[] NOT NULL,
    dim         text[]        NOT NULL,
    value       text[]        NOT NULL,
    leads       bigint[]      NOT NULL
);

CREATE TABLE pair_conversions_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    funnel_id   text[]        NOT NULL,
    from_stage  text[]        NOT NULL,
    to_stage    text[]        NOT NULL,
    hour        timestamptz[] NOT NULL,
    dim         text[]        NOT NULL,
    value       text[]        NOT NULL,
    c1d bigint[] NOT NULL, c3d bigint[] NOT NULL, c7d bigint[] NOT NULL, c14d bigint[] NOT NULL,
    c30d bigint[] NOT NULL, c60d bigint[] NOT NULL, c90d bigint[] NOT NULL,
    c_any bigint[] NOT NULL
);
