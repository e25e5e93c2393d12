"""Finding people at scale: the keyed search index against a plain scan of the names.

`.venv/bin/python -m bench.intake_lead_search --people 50000`

A fresh PostgreSQL (the devstack's, fsync on) gets intake's schema and N generated people
(names from small pools, so a 2-letter prefix matches many and a 5-letter one few), each with
their search index entries computed by the service's own `BlindIndex`. Each search is timed
with the service's own code (`lead_intake.people.service.find_people`: one page of 50), and a
naive query answers the same question in the same run without the index
(`lower(unaccent-free) name LIKE 'prefix%'` over every lead, what one would write without
0024): **ratio = naive p95 / index p95**. The two answers are compared first (the same ids).
A whole person (`people.service.person`, one query) is timed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, latency_stats, log, migrated_postgres, percentile, timed_ms
from funnel_servicekit.db import create_pool
from lead_intake.app import MIGRATIONS
from lead_intake.common.blind_index import BlindIndex, fold, query_words
from lead_intake.people import service
from lead_intake.people.models import Search

FIRST = ["Anna", "Åsa", "Erik", "Lars", "Maja", "Nils", "Olof", "Sara", "Tove", "Ulla", "Karl"]
LAST = ["Andersson", "Berg", "Öberg", "Lind", "Nyström", "Holm", "Ek", "Sjöberg", "Wallin"]
KEY = b"bench-search-index-key-0123456789abcdef"
QUERIES = ["an", "ber", "sjob", "nystr", "anna lind", "zz"]


async def _load(pool: asyncpg.Pool, people: int, index: BlindIndex) -> None:
    rng = random.Random(24)
    leads, terms = [], []
    for n in range(people):
        lead_id = uuid.uuid4()
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{fold(first)}.{fold(last)}{n}@example.com"
        leads.append((lead_id, email, first, last))
        digests = index.person_terms(email=email, phone=None, first_name=first, last_name=last)
        terms += [(d, lead_id) for d in digests]
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "leads", records=leads, columns=["id", "email", "first_name", "last_name"]
        )
        await conn.copy_records_to_table(
            "lead_search_terms", records=terms, columns=["digest", "lead_id"]
        )
        await conn.execute("ANALYZE leads; ANALYZE lead_search_terms")
    log(f"{people} people, {len(terms)} index entries")


async def _naive(pool: asyncpg.Pool, q: str) -> list[uuid.UUID]:
    """Without the index: every word a prefix of a name or the local part (folded in Python
    for the query only; the stored names compared lower-cased, so accents are not even
    ignored)."""
    conditions, args = [], []
    for word in query_words(q):
        args.append(word + "%")
        p = f"${len(args)}"
        conditions.append(
            f"(lower(first_name) LIKE {p} OR lower(last_name) LIKE {p} OR email LIKE {p})"
        )
    sql = (
        f"SELECT id FROM leads WHERE erased_at IS NULL AND {' AND '.join(conditions)} "  # noqa: S608
        "ORDER BY id LIMIT 51"
    )
    async with pool.acquire() as conn:
        return [r["id"] for r in await conn.fetch(sql, *args)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with migrated_postgres("intake", MIGRATIONS, name="search") as server:
        pool = await create_pool(server.dsn, "intake", min_size=1, max_size=2)
        index = BlindIndex(KEY)
        await _load(pool, args.people, index)
        result: dict[str, Any] = {"people": args.people, "queries": {}}
        for q in QUERIES:
            search = Search([index.prefix(w) for w in query_words(q)], None, 50)

            async def indexed(search: Search = search) -> Any:
                return await service.find_people(pool, search)

            async def naive(q: str = q) -> Any:
                return await _naive(pool, q)

            page = await indexed()
            plain = await naive()
            # Accents: the index finds Öberg and Sjöberg for "ber"... only as prefixes of words;
            # the naive LIKE sees the same words unfolded, so compare where no accent is involved.
            same = [p.lead_id for p in page.items] == plain[:50]
            index_ms = await timed_ms(indexed, args.runs)
            naive_ms = await timed_ms(naive, args.runs)
            result["queries"][q] = {
                "matches_on_page": len(page.items),
                "same_answer": same,
                "index_ms": latency_stats(index_ms, 3),
                "naive_ms": latency_stats(naive_ms, 3),
                "ratio_naive_to_index_p95": round(
                    percentile(naive_ms, 95) / percentile(index_ms, 95), 1
                ),
            }
            log(f"q={q!r}: {result['queries'][q]}")
        some = await pool.fetchval("SELECT id FROM leads LIMIT 1")

        async def whole() -> Any:
            return await service.person(pool, some)

        result["person_ms"] = latency_stats(await timed_ms(whole, args.runs), 3)
        await pool.close()
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="People search: the index against a scan.")
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"intake-lead-search-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
