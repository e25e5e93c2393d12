-- The sender's claim finds touches whose send lease ran out (their sender died mid-send)
-- through this index, not by passing every scheduled touch: the due-touch index holds all
-- the future ones too (a nurture sequence's, days ahead), which the claim then skipped on
-- every poll (docs/decisions/0085).
CREATE INDEX touches_lease_idx ON touches (lease_until) WHERE status = 'sending';
