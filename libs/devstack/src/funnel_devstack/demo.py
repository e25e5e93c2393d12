"""Demo traffic: a few hundred realistic form posts, then the numbers they produced."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import httpx

SOURCES = [  # (utm_source, utm_medium, utm_campaign, weight)
    ("google", "cpc", "brand-search", 35),
    ("facebook", "paid-social", "autumn-sale", 25),
    ("newsletter", "email", "november-issue", 20),
    ("linkedin", "social", "webinar", 10),
    (None, None, None, 10),  # direct traffic
]
FIRST_NAMES = [
    "Ada",
    "Linus",
    "Grace",
    "Alan",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Astrid",
    "Mei",
    "Olga",
    "Björn",
    "Yuki",
    "Ivan",
    "Sofia",
]


@dataclass
class DemoResult:
    posted: int
    accepted: int
    unique_people: int
    snapshot: dict[str, Any]
    seconds_to_visible: float
    activities: int = 0


def demo_payloads(count: int, *, seed: int = 7, repeat_share: float = 0.1) -> list[dict[str, Any]]:
    """`count` form posts; about `repeat_share` of them come from people who posted before."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not security)
    payloads: list[dict[str, Any]] = []
    people: list[str] = []
    weights = [w for *_, w in SOURCES]
    for i in range(count):
        if people and rng.random() < repeat_share:
            email = rng.choice(people).upper()  # same person, different spelling
        else:
            email = f"demo.person{i}@example.com"
            people.append(email)
        source, medium, campaign, _ = rng.choices(SOURCES, weights)[0]
        payload: dict[str, Any] = {
            "email": f"  {email} ",
            "first_name": rng.choice(FIRST_NAMES),
            "landing_page": "https://shop.example.com/autumn",
        }
        if source:
            payload |= {"utm_source": source, "utm_medium": medium, "utm_campaign": campaign}
        payloads.append(payload)
    return payloads


def unique_people(payloads: list[dict[str, Any]]) -> int:
    return len({p["email"].strip().lower() for p in payloads})


@dataclass(frozen=True)
class Posted:
    lead_ids: list[str]  # of each accepted (202) post
    new_leads: int  # the people those posts made (those known before are not new)


async def post_all(
    intake_url: str, payloads: list[dict[str, Any]], form_id: str = "demo", concurrency: int = 16
) -> Posted:
    """Post every payload."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=intake_url, timeout=30) as client:

        async def post(payload: dict[str, Any]) -> dict[str, Any] | None:
            async with limit:
                response = await client.post(f"/v1/forms/{form_id}/submissions", json=payload)
                answer: dict[str, Any] = response.json()
                return answer if response.status_code == 202 else None

        results = [r for r in await asyncio.gather(*(post(p) for p in payloads)) if r is not None]
    new = {str(r["lead_id"]) for r in results if r.get("new_lead")}
    return Posted([str(r["lead_id"]) for r in results], len(new))


def demo_journeys(lead_ids: list[str], *, seed: int = 7) -> list[dict[str, Any]]:
    """What the people do after the form, with the drop-off of a real shop at each step."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not security)
    now = datetime.now(UTC)
    activities: list[dict[str, Any]] = []

    def did(lead_id: str, kind: str, step: int, **extra: Any) -> None:
        at = now + timedelta(seconds=step)
        activities.append(
            {"type": kind, "lead_id": lead_id, "occurred_at": at.isoformat(), **extra}
        )

    for n, lead_id in enumerate(sorted(set(lead_ids))):
        if rng.random() > 0.65:
            continue  # looked once, never came back
        did(lead_id, "page_view", 1, page_url="https://shop.example.com/autumn/catalogue")
        if rng.random() > 0.45:
            continue
        did(lead_id, "pricing_viewed", 2, page_url="https://shop.example.com/pricing")
        if rng.random() > 0.35:
            continue
        price = f"{rng.choice([19, 29, 49, 99])}.00"
        did(lead_id, "purchase_completed", 3, amount=price, currency="EUR", order_id=f"D-{n}-1")
        if rng.random() < 0.3:
            did(lead_id, "purchase_completed", 4, amount=price, currency="EUR", order_id=f"D-{n}-2")
    return activities


async def post_activities(intake_url: str, api_key: str, activities: list[dict[str, Any]]) -> int:
    """Report activities in batches of 500; returns how many were accepted."""
    accepted = 0
    async with httpx.AsyncClient(
        base_url=intake_url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        for start in range(0, len(activities), 500):
            batch = activities[start : start + 500]
            response = await client.post("/v1/activities", json={"activities": batch})
            if response.status_code < 300:
                accepted += len(batch)
    return accepted


async def wait_for_snapshot(
    reporting_url: str, api_key: str, funnel_id: str, total: int, timeout: float = 90
) -> dict[str, Any]:
    """Poll the snapshot until it counts `total` leads (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    snapshot: dict[str, Any] = {}
    async with httpx.AsyncClient(
        base_url=reporting_url, timeout=10, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        while True:
            snapshot = (await client.get(f"/v1/funnels/{funnel_id}/snapshot")).json()
            if snapshot.get("total", 0) >= total or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
    return snapshot


async def wait_until_settled(
    reporting_url: str, api_key: str, funnel_id: str, quiet: float = 3.0, timeout: float = 60
) -> dict[str, Any]:
    """Poll the snapshot until it stops changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(
        base_url=reporting_url, timeout=10, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        last = (await client.get(f"/v1/funnels/{funnel_id}/snapshot")).json()
        since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            await asyncio.sleep(0.25)
            current = (await client.get(f"/v1/funnels/{funnel_id}/snapshot")).json()
            if current != last:
                last, since = current, time.monotonic()
    snapshot: dict[str, Any] = last
    return snapshot


async def run_demo(intake_url: str, reporting_url: str, api_key: str, leads: int) -> DemoResult:
    payloads = demo_payloads(leads)
    # Leads already counted (a history imported first) are not the demo's.
    before = (await wait_for_snapshot(reporting_url, api_key, "digital-sales", 0, 0)).get(
        "total", 0
    )
    started = time.monotonic()
    posted = await post_all(intake_url, payloads)
    lead_ids = posted.lead_ids
    people = unique_people(payloads)
    # The people new to the funnel (an earlier run's people are counted already).
    await wait_for_snapshot(reporting_url, api_key, "digital-sales", before + posted.new_leads)
    seen = time.monotonic() - started
    activities = await post_activities(intake_url, api_key, demo_journeys(lead_ids))
    snapshot = await wait_until_settled(reporting_url, api_key, "digital-sales")
    return DemoResult(len(payloads), len(lead_ids), people, snapshot, seen, activities)


# --- 60 days of history ----------------------------------------------------------------------
# (utm_source, utm_medium, utm_campaign, weight, p(page view), p(pricing | view),
#  p(purchase | pricing)): sources of different quality.
HISTORY_SOURCES = [
    ("google", "cpc", "brand-search", 30, 0.75, 0.55, 0.5),
    ("facebook", "paid-social", "autumn-sale", 25, 0.65, 0.5, 0.4),
    ("newsletter", "email", "weekly-issue", 20, 0.8, 0.6, 0.55),
    ("linkedin", "social", "webinar", 10, 0.5, 0.3, 0.2),
    (None, None, None, 15, 0.55, 0.35, 0.3),
]
LEAKING_CAMPAIGN = "autumn-sale"  # its pricing and purchase steps collapse lately
WEEKDAY_LEADS = (32, 34, 33, 31, 27, 14, 10)  # Monday first: a business's weekday rhythm


@dataclass
class HistoryPerson:
    import_row: dict[str, Any]
    # (seconds after capture, activity) pairs, only those that happened before `now`.
    activities: list[tuple[float, dict[str, Any]]]


def demo_history(now: datetime, *, days: int = 60, seed: int = 11) -> list[HistoryPerson]:
    """People captured over the last `days` days (weekday rhythm, five sources of different
    quality), with what they did since, at their own times: page views, pricing, purchases,
    repeat purchases, monthly subscription renewals and a few cancellations. The
    autumn-sale campaign's people of the last two weeks mostly stop at the catalogue."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not security)
    weights = [s[3] for s in HISTORY_SOURCES]
    people: list[HistoryPerson] = []
    first_day = (now - timedelta(days=days)).date()
    for offset in range(days + 1):
        day = first_day + timedelta(days=offset)
        for i in range(round(WEEKDAY_LEADS[day.weekday()] * rng.uniform(0.8, 1.2))):
            source, medium, campaign, _, p_view, p_pricing, p_buy = rng.choices(
                HISTORY_SOURCES, weights
            )[0]
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            # Mostly office hours, some evenings.
            captured = start + timedelta(hours=rng.choice((8, 9, 10, 11, 13, 14, 15, 16, 20, 21)),
                                         minutes=rng.randrange(60))  # fmt: skip
            if captured >= now:
                continue
            row: dict[str, Any] = {
                "email": f"history.{day.isoformat()}.{i}@example.com",
                "first_name": rng.choice(FIRST_NAMES),
                "captured_at": captured.isoformat(),
                "landing_page": "https://shop.example.com/autumn",
                "original_source": "demo history",
            }
            if source:
                row["utm"] = {"source": source, "medium": medium, "campaign": campaign}
            if campaign == LEAKING_CAMPAIGN and now - captured < timedelta(days=14):
                p_pricing, p_buy = 0.2, 0.03
            people.append(HistoryPerson(row, _history_journey(rng, p_view, p_pricing, p_buy)))
    for person in people:
        captured = datetime.fromisoformat(person.import_row["captured_at"])
        person.activities = [
            (s, a) for s, a in person.activities if captured + timedelta(seconds=s) < now
        ]
    return people


def _history_journey(
    rng: random.Random, p_view: float, p_pricing: float, p_buy: float
) -> list[tuple[float, dict[str, Any]]]:
    out: list[tuple[float, dict[str, Any]]] = []
    if rng.random() > p_view:
        return out
    at = rng.uniform(600, 2 * 86400)
    out.append((at, {"type": "page_view", "page_url": "https://shop.example.com/autumn/catalogue"}))
    if rng.random() > p_pricing:
        return out
    at += rng.uniform(600, 4 * 86400)
    out.append((at, {"type": "pricing_viewed", "page_url": "https://shop.example.com/pricing"}))
    if rng.random() > p_buy:
        return out
    at += rng.uniform(1800, 6 * 86400)
    price = rng.choice([19, 29, 49, 99])
    order = f"H-{rng.getrandbits(40):x}"
    out.append((at, {"type": "purchase_completed", "amount": f"{price}.00", "currency": "EUR",
                     "order_id": f"{order}-1"}))  # fmt: skip
    if rng.random() < 0.2:  # buys again: loyalty
        again = at + rng.uniform(10, 40) * 86400
        out.append((again, {"type": "purchase_completed", "amount": f"{price}.00",
                            "currency": "EUR", "order_id": f"{order}-2"}))  # fmt: skip
    if rng.random() < 0.4:  # a subscriber: renews monthly, a few cancel
        renewal = at
        for _ in range(3):
            renewal += 30 * 86400
            if rng.random() < 0.12:
                out.append((renewal - 86400, {"type": "subscription_cancelled"}))
                break
            out.append((renewal, {"type": "subscription_renewed", "amount": f"{price}.00",
                                  "currency": "EUR"}))  # fmt: skip
    return out


_HISTORY_IDS = UUID("5d0c2f57-6a35-4a8e-9a43-5c1f8e6b2d10")  # namespace of the history's ids


async def _lead_ids_by_email(client: httpx.AsyncClient, emails: list[str]) -> list[str]:
    """Each known person's lead id, found by email (16 lookups at a time)."""
    gate = asyncio.Semaphore(16)

    async def one(email: str) -> str:
        async with gate:
            response = await client.get("/v1/leads", params={"email": email})
        response.raise_for_status()
        return str(response.json()["items"][0]["lead_id"])

    return list(await asyncio.gather(*(one(e) for e in emails)))


async def import_history(
    intake_url: str, api_key: str, people: list[HistoryPerson], form_id: str = "demo"
) -> tuple[list[str], int]:
    """Import the people (their own capture times) and report what they did (their own
    times), through the public APIs; returns the lead ids and the activities accepted."""
    lead_ids: list[str] = []
    async with httpx.AsyncClient(
        base_url=intake_url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        for start in range(0, len(people), 1000):
            batch = people[start : start + 1000]
            response = await client.post(
                "/v1/leads/import",
                json={"form_id": form_id, "leads": [p.import_row for p in batch]},
            )
            response.raise_for_status()
            ids = response.json().get("lead_ids")
            if ids is None:
                # The same file was imported before (an earlier run today, into the same
                # `.funnel/`): the answer is that import's, and its people are known by email.
                ids = await _lead_ids_by_email(client, [p.import_row["email"] for p in batch])
            lead_ids += [str(i) for i in ids]
    activities = [
        {
            **activity,
            # The same id for the same activity on every run: reported again, it counts once.
            "id": str(uuid5(_HISTORY_IDS, f"{person.import_row['email']}:{n}")),
            "lead_id": lead_id,
            "occurred_at": (
                datetime.fromisoformat(person.import_row["captured_at"])
                + timedelta(seconds=seconds)
            ).isoformat(),
        }
        for person, lead_id in zip(people, lead_ids, strict=True)
        for n, (seconds, activity) in enumerate(person.activities)
    ]
    activities.sort(key=lambda a: a["occurred_at"])
    return lead_ids, await post_activities(intake_url, api_key, activities)


@dataclass
class HistoryResult:
    days: int
    people: int
    activities: int
    seconds: float
    snapshot: dict[str, Any]


async def run_history(
    intake_url: str, reporting_url: str, api_key: str, days: int
) -> HistoryResult:
    started = time.monotonic()
    people = demo_history(datetime.now(UTC), days=days)
    lead_ids, activities = await import_history(intake_url, api_key, people)
    await wait_for_snapshot(reporting_url, api_key, "digital-sales", len(set(lead_ids)))
    snapshot = await wait_until_settled(reporting_url, api_key, "digital-sales")
    return HistoryResult(days, len(set(lead_ids)), activities, time.monotonic() - started, snapshot)
