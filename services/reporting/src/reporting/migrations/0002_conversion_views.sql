-- The complete projections. Each lead's state (no contact details) is kept as one JSON row;
-- every aggregate below is the sum over leads of what their state contributes, maintained by
-- applying the difference each event makes (reporting.domain.contributions). Queries read
-- the aggregates only: rows per hour and dimension value, never per lead.
--
-- The skeleton's stage_counts were counted another way; they are emptied here, and an
-- upgraded deployment rebuilds from the topics (`python -m reporting rebuild --swap`).
DROP TABLE lead_current_stage;
TRUNCATE stage_counts;
ALTER TABLE stage_counts DROP COLUMN stage_position;
-- Deltas are upserted, and PostgreSQL checks a CHECK on the proposed row before it sees the
-- conflict: a -1 for an existing row would be refused. The sums are proved by the tests.
ALTER TABLE stage_counts DROP CONSTRAINT stage_counts_leads_check;

CREATE TABLE lead_states (
    lead_id     uuid PRIMARY KEY,
    state       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Erased people: their state is gone, and a late event must not bring them back.
CREATE TABLE erased_leads (
    lead_id     uuid PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);

-- Stage order per funnel, as the stage events tell it.
CREATE TABLE funnel_stages (
    funnel_id   text    NOT NULL,
    stage       text    NOT NULL,
    position    integer NOT NULL,
    PRIMARY KEY (funnel_id, stage)
);

-- Leads by the UTC hour of their first entry into a stage, per breakdown value.
CREATE TABLE entry_counts (
    funnel_id   text        NOT NULL,
    stage       text        NOT NULL,
    dim         text        NOT NULL,
    hour        timestamptz NOT NULL,
    value       text        NOT NULL,
    leads       bigint      NOT NULL,
    PRIMARY KEY (funnel_id, stage, dim, hour, value)
);

-- Of the leads that first entered from_stage in `hour`: how many reached to_stage within
-- each window (edge inclusive), and at any time later. The first conversion counts.
CREATE TABLE pair_conversions (
    funnel_id   text        NOT NULL,
    from_stage  text        NOT NULL,
    to_stage    text        NOT NULL,
    dim         text        NOT NULL,
    hour        timestamptz NOT NULL,
    value       text        NOT NULL,
    c1d bigint NOT NULL, c3d bigint NOT NULL, c7d bigint NOT NULL, c14d bigint NOT NULL,
    c30d bigint NOT NULL, c60d bigint NOT NULL, c90d bigint NOT NULL, c_any bigint NOT NULL,
    PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value)
);

-- Completed stays by entry hour and duration bucket (upper edge in hours).
CREATE TABLE stage_stays (
    funnel_id    text        NOT NULL,
    stage        text        NOT NULL,
    hour         timestamptz NOT NULL,
    bucket_hours integer     NOT NULL,
    stays        bigint      NOT NULL,
    PRIMARY KEY (funnel_id, stage, hour, bucket_hours)
);

-- Leads of a stage touched by a playbook ('' = no touch at that stage), anchored at the
-- first send (or the stage entry), and how many ordered within each window after it.
CREATE TABLE touch_effect (
    funnel_id   text        NOT NULL,
    stage       text        NOT NULL,
    hour        timestamptz NOT NULL,
    playbook    text        NOT NULL,
    leads       bigint      NOT NULL,
    c1d bigint NOT NULL, c3d bigint NOT NULL, c7d bigint NOT NULL, c14d bigint NOT NULL,
    c30d bigint NOT NULL, c60d bigint NOT NULL, c90d bigint NOT NULL, c_any bigint NOT NULL,
    PRIMARY KEY (funnel_id, stage, hour, playbook)
);

-- Buyers by the hour of their first order and the interactions they had before it.
CREATE TABLE purchase_interactions (
    funnel_id        text        NOT NULL,
    hour             timestamptz NOT NULL,
    interactions     integer     NOT NULL,
    leads            bigint      NOT NULL,
    interactions_sum bigint      NOT NULL,
    PRIMARY KEY (funnel_id, hour, interactions)
);

CREATE TABLE customer_counts (
    funnel_id        text   NOT NULL,
    dim              text   NOT NULL,
    value            text   NOT NULL,
    customers        bigint NOT NULL,
    repeat_customers bigint NOT NULL,
    PRIMARY KEY (funnel_id, dim, value)
);

-- Net revenue (orders minus refunds) per currency, never summed across currencies.
CREATE TABLE revenue (
    funnel_id   text    NOT NULL,
    dim         text    NOT NULL,
    value       text    NOT NULL,
    currency    text    NOT NULL,
    revenue     numeric NOT NULL,
    orders      bigint  NOT NULL,
    refunds     bigint  NOT NULL,
    customers   bigint  NOT NULL,
    PRIMARY KEY (funnel_id, dim, value, currency)
);
