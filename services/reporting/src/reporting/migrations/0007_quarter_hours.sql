-- Every IANA zone's days, exactly: the base rows of every time-keyed aggregate are now kept
-- per UTC quarter hour (the column keeps its name `hour`), so that a day in India (+05:30),
-- Nepal (+05:45) or Adelaide (+09:30) is a whole number of rows. The two tables a conversion
-- question reads gain an hourly rollup beside the 6-hour, daily and weekly ones: a period in
-- an hourly zone reads the same number of rows as before, a period in a quarter-hour zone a
-- few quarter rows more at its two edges (reporting.domain.slots).
--
-- Rows written before this migration are keyed by their hour, which is also the first
-- quarter of it: every hourly zone reads them exactly as before. To place the history of a
-- quarter-hour zone's edges exactly, rebuild (`python -m reporting rebuild --swap`).
CREATE TABLE entry_counts_hourly (LIKE entry_counts INCLUDING ALL);
CREATE TABLE pair_conversions_hourly (LIKE pair_conversions INCLUDING ALL);

INSERT INTO entry_counts_hourly
SELECT funnel_id, stage, dim, date_trunc('hour', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       value, sum(leads)
FROM entry_counts GROUP BY 1, 2, 3, 4, 5;

INSERT INTO pair_conversions_hourly
SELECT funnel_id, from_stage, to_stage, dim,
       date_trunc('hour', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM pair_conversions GROUP BY 1, 2, 3, 4, 5, 6;
