-- Each lead's current stage (per funnel), and the pre-aggregated count per stage that the
-- snapshot reads: a query reads one row per stage whatever the number of leads.
CREATE TABLE lead_current_stage (
    lead_id         uuid PRIMARY KEY,
    funnel_id       text        NOT NULL,
    stage           text        NOT NULL,
    changed_at      timestamptz NOT NULL
);

CREATE TABLE stage_counts (
    funnel_id       text    NOT NULL,
    stage           text    NOT NULL,
    stage_position  integer NOT NULL,
    leads           bigint  NOT NULL DEFAULT 0 CHECK (leads >= 0),
    PRIMARY KEY (funnel_id, stage)
);
