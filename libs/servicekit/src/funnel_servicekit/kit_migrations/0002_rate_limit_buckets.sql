-- Token buckets of the public rate limits, shared by every replica and kept across restarts.
-- A bucket untouched since `full_at` is full again, the same as no row: those are deleted.
-- UNLOGGED: a hit writes no WAL, so it waits for no fsync (decision 0042); after a crash of
-- PostgreSQL itself (not a clean restart) the buckets start full again.
CREATE UNLOGGED TABLE rate_limit_buckets (
    key        text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    allowed    boolean          NOT NULL,
    updated_at timestamptz      NOT NULL,
    full_at    timestamptz      NOT NULL
);
CREATE INDEX rate_limit_buckets_full_at ON rate_limit_buckets (full_at);
