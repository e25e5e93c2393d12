-- The leads workspace (docs/decisions/0023): each lead's owner (a key's name), a version
-- bumped on every change of the row (the journey's ETag, If-Match on moves and owners), and
-- what serves "the score now" from an index: the half-life of the lead's funnel version and
-- the decay key of its engagement (stage_tracker.scoring.models.decay).
ALTER TABLE lead_stages
    ADD COLUMN owner              text,
    ADD COLUMN version            bigint           NOT NULL DEFAULT 1,
    ADD COLUMN half_life_seconds  double precision NOT NULL DEFAULT 1209600,
    ADD COLUMN decay_sign         smallint         NOT NULL DEFAULT 0,
    ADD COLUMN decay_key          double precision NOT NULL DEFAULT '-Infinity';

-- Backfill. The half-life of each lead's funnel version: version 1 of the shipped funnels is
-- built in (not in funnel_definitions), the others are read from their definition's text
-- (`half_life_days: N`, YAML or JSON); a definition without it has the default, 14 days.
UPDATE lead_stages l
SET half_life_seconds = 86400 * coalesce(
        (SELECT substring(d.source FROM 'half_life_days"?\s*:\s*([0-9]+(?:\.[0-9]+)?)')::float8
         FROM funnel_definitions d
         WHERE d.funnel_id = l.funnel_id AND d.version = l.funnel_version),
        CASE WHEN l.funnel_version = 1 THEN
            CASE l.funnel_id WHEN 'digital-sales' THEN 14 WHEN 'subscription' THEN 21
                             WHEN 'b2b-sales-cycle' THEN 30 END
        END,
        14);

-- The key: sign * (log2(|engagement|) + epoch(as_of) / h); -Infinity for no engagement.
UPDATE lead_stages
SET decay_sign = sign(engagement_score)::smallint,
    decay_key = CASE WHEN engagement_score = 0 THEN '-Infinity'::float8
                ELSE sign(engagement_score) * (
                    ln(abs(engagement_score)) / ln(2::float8)
                    + extract(epoch FROM coalesce(as_of, entered_at))::float8 / half_life_seconds)
                END;

-- The work queue: one range scan per group (version, h, fit, sign) in key order, with or
-- without a stage; and by entry time.
CREATE INDEX lead_stages_queue_stage_score_idx ON lead_stages
    (funnel_id, stage, funnel_version, half_life_seconds, fit_score, decay_sign, decay_key, lead_id);
CREATE INDEX lead_stages_queue_score_idx ON lead_stages
    (funnel_id, funnel_version, half_life_seconds, fit_score, decay_sign, decay_key, lead_id);
CREATE INDEX lead_stages_queue_stage_entered_idx ON lead_stages
    (funnel_id, stage, entered_at, lead_id);
CREATE INDEX lead_stages_queue_entered_idx ON lead_stages (funnel_id, entered_at, lead_id);
