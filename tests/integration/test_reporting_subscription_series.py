"""The subscription report handles a funnel's changes once, not once per bucket.

MRR and subscribers at an instant are sums of every change before it. The report used to
join each bucket of the period with the whole history before its end (a year by day: every
change since the first subscription, 365 times over). It now sums the history before the
period once, each bucket's own changes once, and runs a sum over the buckets. Checked on a
year and a half of random changes in three currencies (with rows that net to nothing, which
make no currency appear) against the per-bucket definition, kept here as the reference: the
same rows, number for number, for periods that start mid-history or before any change, in
several zones and intervals; and the rows each step of the plan handles, measured.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from reporting.domain.slots import Cohort
from reporting.reports import store
from reporting.reports.models import Period
from reporting.settings import MIGRATIONS, ReportingSettings
from tests.integration.plans import (
    generic_plan_as_sent,
    migrated,
    rows_read,
    sent_with_args,
    widest_step,
)

pytestmark = pytest.mark.integration

FIRST = datetime(2025, 7, 1, tzinfo=UTC)
QUARTER_HOURS = 4 * 24 * 540  # a year and a half

# The report as it was defined: for each bucket, every change before its end.
REFERENCE = """
    SELECT r.label AS period, t.currency,
           coalesce(sum(t.subscribers) FILTER (WHERE t.hour < r.lo), 0)::bigint
               AS subscribers_at_start,
           sum(t.mrr) AS mrr, sum(t.subscribers)::bigint AS subscribers,
           coalesce(sum(t.new_subscribers) FILTER (WHERE t.hour >= r.lo), 0)::bigint
               AS new_subscribers,
           coalesce(sum(t.cancellations) FILTER (WHERE t.hour >= r.lo), 0)::bigint
               AS cancellations
    FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS r(label, lo, hi)
    JOIN subscription_changes t ON t.funnel_id = $1 AND t.hour < r.hi
      AND (t.mrr <> 0 OR t.subscribers <> 0 OR t.new_subscribers <> 0
           OR t.cancellations <> 0)
    GROUP BY 1, 2
    ORDER BY 1, 2"""


@pytest.fixture(scope="module")
def changes() -> list[tuple[Any, ...]]:
    """About 6,000 quarter hours with changes: subscriptions (new), renewals at a new price,
    cancellations, and rows that net to nothing; GBP starts only in the second year."""
    rng = random.Random(20261207)
    rows: list[tuple[Any, ...]] = []
    for q in sorted(rng.sample(range(QUARTER_HOURS), 6000)):
        hour = FIRST + timedelta(minutes=15 * q)
        currencies = ["EUR", "USD"] + (["GBP"] if q > QUARTER_HOURS * 2 // 3 else [])
        currency = rng.choice(currencies)
        kind = rng.random()
        if kind < 0.5:
            row = (Decimal(rng.choice(["19.00", "49.50", "99"])), 1, 1, 0)
        elif kind < 0.75:
            row = (Decimal(rng.choice(["10.25", "-5.5", "30"])), 0, 0, 0)
        elif kind < 0.95:
            row = (Decimal(rng.choice(["-19.00", "-49.50"])), -1, 0, 1)
        else:
            row = (Decimal("0"), 0, 0, 0)  # a subscriber erased: nets to nothing
        rows.append(("subscription", hour, currency, *row))
    return rows


@pytest.fixture
async def conn(fresh_dsn: str, changes: list[tuple[Any, ...]]) -> AsyncIterator[asyncpg.Connection]:
    async with migrated(
        fresh_dsn, ReportingSettings(database_url=fresh_dsn), MIGRATIONS
    ) as connection:
        await connection.copy_records_to_table(
            "subscription_changes",
            records=changes,
            columns=[
                "funnel_id", "hour", "currency", "mrr", "subscribers",
                "new_subscribers", "cancellations",
            ],
        )  # fmt: skip
        await connection.execute("ANALYZE subscription_changes")
        yield connection


PERIODS: list[tuple[Period, Cohort]] = [
    (Period(date(2026, 1, 1), date(2026, 12, 31), "UTC"), "day"),
    (Period(date(2026, 1, 10), date(2026, 11, 20), "Asia/Kathmandu"), "week"),
    (Period(date(2025, 6, 1), date(2026, 12, 31), "America/St_Johns"), "month"),
    (Period(date(2026, 10, 3), date(2026, 10, 3), "Europe/London"), "day"),
    (Period(date(2024, 1, 1), date(2024, 3, 31), "UTC"), "month"),  # before any change
    (Period(date(2027, 2, 1), date(2027, 4, 30), "UTC"), "month"),  # after the last one
]


@pytest.mark.parametrize(("period", "interval"), PERIODS)
async def test_the_series_equals_the_per_bucket_sums(
    conn: asyncpg.Connection, period: Period, interval: Cohort
) -> None:
    got = await store.subscription_series(conn, "subscription", period, interval)
    expected = await conn.fetch(REFERENCE, "subscription", *store._bucket_args(period, interval))
    as_text = [tuple(str(v) for v in r.values()) for r in got]  # 49.50 stays 49.50
    assert as_text == [tuple(str(v) for v in r.values()) for r in expected]
    if period.start.year == 2026:
        assert {r["currency"] for r in got} == {"EUR", "USD", "GBP"}
        assert sum(r["cancellations"] for r in got) > 0
    elif period.start.year == 2027:  # the history alone: every currency, nothing new
        assert len(got) == 9
        assert {r["new_subscribers"] + r["cancellations"] for r in got} == {0}
    elif period.start.year == 2024:
        assert got == []
    assert await store.subscription_series(conn, "another", period, interval) == []


async def test_a_year_by_day_reads_the_changes_once(conn: asyncpg.Connection) -> None:
    period = Period(date(2026, 1, 1), date(2026, 12, 31), "UTC")
    total = int(await conn.fetchval("SELECT count(*) FROM subscription_changes"))

    async def year_by_day() -> None:
        await store.subscription_series(conn, "subscription", period, "day")

    [(query, args)] = [
        sent
        for sent in await sent_with_args(conn, year_by_day)
        if "subscription_changes" in sent[0]
    ]
    plan = await generic_plan_as_sent(conn, query, args, analyze=True)
    reference = await generic_plan_as_sent(conn, REFERENCE, args, analyze=True)
    # Every change up to the period's end read about once (a few more at the buckets' edges)
    # and no step of the plan handles many more rows than that; the per-bucket definition
    # joined each bucket with every change before it (1.4 million rows here).
    read = rows_read(plan, "subscription_changes")
    assert read < 1.1 * total, f"{read} rows of subscription_changes read for {total} rows"
    assert widest_step(plan) < 1.1 * total, widest_step(plan)
    assert widest_step(reference) > 100 * total, widest_step(reference)
