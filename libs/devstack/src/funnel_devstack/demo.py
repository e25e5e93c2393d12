"""Demo traffic: a few hundred realistic form posts, then the numbers they produced."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
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
) -> int:
    """Post every payload; returns how many were accepted (202)."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=intake_url, timeout=30) as client:

        async def post(payload: dict[str, Any]) -> bool:
            async with limit:
                response = await client.post(f"/v1/forms/{form_id}/submissions", json=payload)
                return response.status_code == 202

        results = await asyncio.gather(*(post(p) for p in payloads))
    return sum(results)


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


async def run_demo(intake_url: str, reporting_url: str, api_key: str, leads: int) -> DemoResult:
    payloads = demo_payloads(leads)
    started = time.monotonic()
    accepted = await post_all(intake_url, payloads)
    people = unique_people(payloads)
    snapshot = await wait_for_snapshot(reporting_url, api_key, "digital-sales", people)
    return DemoResult(len(payloads), accepted, people, snapshot, time.monotonic() - started)
