-- Rollups by 6 hours (from 00:00 UTC) and by week (from Monday 00:00 UTC) of the two tables a
-- conversion question reads, beside the hourly rows and the daily rollup. A period is read
-- as its whole weeks, the edges as whole days, 6-hour blocks and hours, and an edge that is
-- most of a bucket as the bucket minus the rest (reporting.domain.slots): for a 30-day
-- period in Los Angeles 12 rows per breakdown value and step instead of 53, the same sums.
CREATE TABLE entry_counts_6h (LIKE entry_counts INCLUDING ALL);
CREATE TABLE pair_conversions_6h (LIKE pair_conversions INCLUDING ALL);
CREATE TABLE entry_counts_weekly (LIKE entry_counts INCLUDING ALL);
CREATE TABLE pair_conversions_weekly (LIKE pair_conversions INCLUDING ALL);

INSERT INTO entry_counts_6h
SELECT funnel_id, stage, dim, date_bin('6 hours', hour, timestamptz '2001-01-01 00:00+00'),
       value, sum(leads)
FROM entry_counts GROUP BY 1, 2, 3, 4, 5;

INSERT INTO pair_conversions_6h
SELECT funnel_id, from_stage, to_stage, dim,
       date_bin('6 hours', hour, timestamptz '2001-01-01 00:00+00'), value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM pair_conversions GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO entry_counts_weekly
SELECT funnel_id, stage, dim, date_trunc('week', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       value, sum(leads)
FROM entry_counts_daily GROUP BY 1, 2, 3, 4, 5;

INSERT INTO pair_conversions_weekly
SELECT funnel_id, from_stage, to_stage, dim,
       date_trunc('week', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', value,
       sum(c1d), sum(c3d), sum(c7d), sum(c14d), sum(c30d), sum(c60d), sum(c90d), sum(c_any)
FROM pair_conversions_daily GROUP BY 1, 2, 3, 4, 5, 6;
