-- Leak alerts (reporting.leaks): a step of a funnel whose conversion dropped significantly
-- below its own trailing baseline, overall or for one first-touch source. At most one open
-- leak per step and segment; the baseline it was opened against is kept (it decides the
-- recovery), the current figures are those of the latest check.
CREATE TABLE leaks (
    leak_id            uuid PRIMARY KEY,
    funnel_id          text        NOT NULL,
    from_stage         text        NOT NULL,
    to_stage           text        NOT NULL,
    segment            text        NOT NULL,
    window_days        integer     NOT NULL,
    baseline_entered   bigint      NOT NULL,
    baseline_converted bigint      NOT NULL,
    current_entered    bigint      NOT NULL,
    current_converted  bigint      NOT NULL,
    p_value            double precision NOT NULL,
    opened_at          timestamptz NOT NULL,
    checked_at         timestamptz NOT NULL,
    resolved_at        timestamptz
);

CREATE UNIQUE INDEX leaks_one_open ON leaks (funnel_id, from_stage, to_stage, segment)
    WHERE resolved_at IS NULL;
CREATE INDEX leaks_by_funnel ON leaks (funnel_id, opened_at DESC);
