"""Demo traffic: a few hundred realistic form posts, then the numbers they produced."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


async def post_all(
    intake_url: str, payloads: list[dict[str, Any]], form_id: str = "demo", concurrency: int = 16
) -> list[str]:
    """Post every payload; returns the lead id of each accepted (202) post."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=intake_url, timeout=30) as client:

        async def post(payload: dict[str, Any]) -> str | None:
            async with limit:
                response = await client.post(f"/v1/forms/{form_id}/submissions", json=payload)
                return str(response.json()["lead_id"]) if response.status_code == 202 else None

        results = await asyncio.gather(*(post(p) for p in payloads))
    return [r for r in results if r is not None]


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
        while time.monotonic() < deadline:
            snapshot = (await client.get(f"/v1/funnels/{funnel_id}/snapshot")).json()
            if snapshot.get("total", 0) >= total:
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
    started = time.monotonic()
    lead_ids = await post_all(intake_url, payloads)
    people = unique_people(payloads)
    await wait_for_snapshot(reporting_url, api_key, "digital-sales", people)
    seen = time.monotonic() - started
    activities = await post_activities(intake_url, api_key, demo_journeys(lead_ids))
    snapshot = await wait_until_settled(reporting_url, api_key, "digital-sales")
    return DemoResult(len(payloads), len(lead_ids), people, snapshot, seen, activities)
