-- The projection no longer upserts a partition batch's conversion deltas into the quarter-hour
-- tables and their four rollups (some 30 row upserts per event, each in five tables): it
-- appends the batch's summed deltas to a queue, in the inbox's transaction, one row per
-- (funnel, first stage, dimension) holding the rest as arrays. The fold loop
-- (reporting.projection.worker) moves queued rows into the quarter-hour table and every rollup
-- in one transaction, summed over many batches. A report reads the tables plus the queued
-- deltas of its funnel, stage and dimension (the index below) in one statement, so its numbers
-- stay exact and real time (docs/decisions/0067-conversion-deltas-queued-then-folded.md).
CREATE TABLE entry_counts_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    funnel_id   text          NOT NULL,
    stage       text          NOT NULL,
    dim         text          NOT NULL,
    hour        timestamptz[] NOT NULL,
    value       text[]        NOT NULL,
    leads       bigint[]      NOT NULL
);
CREATE INDEX entry_counts_queue_by_question ON entry_counts_queue (funnel_id, stage, dim);

CREATE TABLE pair_conversions_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    funnel_id   text          NOT NULL,
    from_stage  text          NOT NULL,
    dim         text          NOT NULL,
    to_stage    text[]        NOT NULL,
    hour        timestamptz[] NOT NULL,
    value       text[]        NOT NULL,
    c1d bigint[] NOT NULL, c3d bigint[] NOT NULL, c7d bigint[] NOT NULL, c14d bigint[] NOT NULL,
    c30d bigint[] NOT NULL, c60d bigint[] NOT NULL, c90d bigint[] NOT NULL,
    c_any bigint[] NOT NULL
);
CREATE INDEX pair_conversions_queue_by_question
    ON pair_conversions_queue (funnel_id, from_stage, dim);
