-- The conversion questions read their rows from the index alone (index-only scans): each
-- conversion table's key carries its counters (INCLUDE), so a period's rows of one
-- breakdown are read from a few index pages instead of one heap page per row (the heap
-- holds them in the order the projection wrote them, hours and breakdowns interleaved).
-- An index-only scan skips the heap only for pages vacuum has marked all-visible, so
-- these tables are vacuumed after 2% of their rows changed, not 20%
-- (docs/decisions/0059-conversion-rows-read-from-the-index.md).

ALTER TABLE entry_counts DROP CONSTRAINT entry_counts_pkey,
    ADD CONSTRAINT entry_counts_pkey PRIMARY KEY (funnel_id, stage, dim, hour, value) INCLUDE (leads);
ALTER TABLE entry_counts SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE entry_counts_hourly DROP CONSTRAINT entry_counts_hourly_pkey,
    ADD CONSTRAINT entry_counts_hourly_pkey PRIMARY KEY (funnel_id, stage, dim, hour, value) INCLUDE (leads);
ALTER TABLE entry_counts_hourly SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE entry_counts_6h DROP CONSTRAINT entry_counts_6h_pkey,
    ADD CONSTRAINT entry_counts_6h_pkey PRIMARY KEY (funnel_id, stage, dim, hour, value) INCLUDE (leads);
ALTER TABLE entry_counts_6h SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE entry_counts_daily DROP CONSTRAINT entry_counts_daily_pkey,
    ADD CONSTRAINT entry_counts_daily_pkey PRIMARY KEY (funnel_id, stage, dim, hour, value) INCLUDE (leads);
ALTER TABLE entry_counts_daily SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE entry_counts_weekly DROP CONSTRAINT entry_counts_weekly_pkey,
    ADD CONSTRAINT entry_counts_weekly_pkey PRIMARY KEY (funnel_id, stage, dim, hour, value) INCLUDE (leads);
ALTER TABLE entry_counts_weekly SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE pair_conversions DROP CONSTRAINT pair_conversions_pkey,
    ADD CONSTRAINT pair_conversions_pkey PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value) INCLUDE (c1d, c3d, c7d, c14d, c30d, c60d, c90d, c_any);
ALTER TABLE pair_conversions SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE pair_conversions_hourly DROP CONSTRAINT pair_conversions_hourly_pkey,
    ADD CONSTRAINT pair_conversions_hourly_pkey PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value) INCLUDE (c1d, c3d, c7d, c14d, c30d, c60d, c90d, c_any);
ALTER TABLE pair_conversions_hourly SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE pair_conversions_6h DROP CONSTRAINT pair_conversions_6h_pkey,
    ADD CONSTRAINT pair_conversions_6h_pkey PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value) INCLUDE (c1d, c3d, c7d, c14d, c30d, c60d, c90d, c_any);
ALTER TABLE pair_conversions_6h SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE pair_conversions_daily DROP CONSTRAINT pair_conversions_daily_pkey,
    ADD CONSTRAINT pair_conversions_daily_pkey PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value) INCLUDE (c1d, c3d, c7d, c14d, c30d, c60d, c90d, c_any);
ALTER TABLE pair_conversions_daily SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER TABLE pair_conversions_weekly DROP CONSTRAINT pair_conversions_weekly_pkey,
    ADD CONSTRAINT pair_conversions_weekly_pkey PRIMARY KEY (funnel_id, from_stage, dim, hour, to_stage, value) INCLUDE (c1d, c3d, c7d, c14d, c30d, c60d, c90d, c_any);
ALTER TABLE pair_conversions_weekly SET (autovacuum_vacuum_scale_factor = 0.02,
                        autovacuum_vacuum_insert_scale_factor = 0.02);
