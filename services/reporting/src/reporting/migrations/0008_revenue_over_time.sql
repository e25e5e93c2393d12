-- Revenue over time and subscriptions (reporting.projection.models.contributions): per UTC
-- quarter hour (any zone's days are whole quarters, 0007) and currency, never per lead.
--
-- Net revenue of the orders and refunds of each quarter hour; a customer is new at their
-- first order in a currency and becomes a repeat customer at their second.
CREATE TABLE revenue_by_time (
    funnel_id        text        NOT NULL,
    hour             timestamptz NOT NULL,
    currency         text        NOT NULL,
    revenue          numeric     NOT NULL,
    orders           bigint      NOT NULL,
    refunds          bigint      NOT NULL,
    new_customers    bigint      NOT NULL,
    repeat_customers bigint      NOT NULL,
    PRIMARY KEY (funnel_id, hour, currency)
);

-- Changes of monthly recurring revenue: MRR and subscribers at an instant are the sums of
-- the changes before it; new subscriptions and cancellations are counted where they happen.
CREATE TABLE subscription_changes (
    funnel_id        text        NOT NULL,
    hour             timestamptz NOT NULL,
    currency         text        NOT NULL,
    mrr              numeric     NOT NULL,
    subscribers      bigint      NOT NULL,
    new_subscribers  bigint      NOT NULL,
    cancellations    bigint      NOT NULL,
    PRIMARY KEY (funnel_id, hour, currency)
);
-- Filled by the projection from now on; `python -m reporting rebuild --swap` fills the past.
