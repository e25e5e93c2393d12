"""Realistic traffic at a steady open-loop rate, and the ledger of what it must leave behind.

Operations, chosen by weight at each tick (each on its own task, so a slow answer never delays
the next one):
- a form post: a new person, or (15%) someone who posted before, spelled differently; every
  logical post carries an Idempotency-Key, so a retry after a lost answer is counted once;
- an activity: the next step of one person's journey (page view, pricing, purchase, a repeat
  purchase), one person at a time so their own events stay in order; sometimes a batch sent
  again (same activity ids) or a purchase with an order id already counted, which must be
  answered as duplicates;
- a click: a person who viewed a page follows the tracked link of the email the notifier sent
  them (read from the mailbox's file), sometimes twice.

The ledger holds what must then be true everywhere (bench/soak_reconcile.py checks it). Posts
that fail for a transient reason (a service restarting, the database away) are retried with
backoff like a site would, for up to `retry_seconds`; only a 202 counts as accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx

from funnel_devstack.mailbox import read_raw_messages

FORM_PATH = "/v1/forms/demo/submissions"
FUNNEL_ID = "digital-sales"
# The stage a person ends in after n journey steps (digital-sales: awareness, page view ->
# interest, pricing -> desire, purchase -> action, another purchase -> loyalty).
STAGE_AFTER_STEPS = ("awareness", "interest", "desire", "action", "loyalty")
JOURNEY_WEIGHTS = (35, 25, 15, 15, 10)  # how many steps people take (0..4)
SOURCES = (("google", "cpc"), ("facebook", "paid-social"), ("newsletter", "email"), (None, None))
PRICES = (Decimal("19.00"), Decimal("29.00"), Decimal("49.50"), Decimal("99.00"))

# The welcome email, replaced for the run by one with a tracked link, so that people can click.
WELCOME_WITH_LINK = """
name: welcome
trigger: {type: stage_entered, position: 0}
kind: transactional
templates:
  en:
    subject: "Welcome, {{ first_name or 'friend' }}"
    text: "Start here: {{ tracked('https://shop.example.com/start') }}"
    html: "<p><a href=\\"{{ tracked('https://shop.example.com/start') }}\\">Start here</a></p>"
"""
_LINK = re.compile(r"(/t/c/[A-Za-z0-9_.\-]+)")
_PARSER = BytesParser(policy=email.policy.default)


@dataclass
class Person:
    email: str
    journey: int  # steps this person will take
    lead_id: str | None = None
    steps_done: int = 0
    busy: bool = False
    orders: list[str] = field(default_factory=list)
    mail_link: str | None = None
    clicked: bool = False


@dataclass
class PostTiming:
    sent: float
    answered: float
    status: int
    new_lead: bool


@dataclass
class Ledger:
    """What the traffic was told by the stack; what must be found everywhere afterwards."""

    people: dict[str, Person] = field(default_factory=dict)  # by email
    submissions: set[str] = field(default_factory=set)
    activity_ids: set[str] = field(default_factory=set)
    orders: dict[str, Decimal] = field(default_factory=dict)
    clicked_links: set[str] = field(default_factory=set)
    posts: list[PostTiming] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    behind_journey: int = 0  # leads the tracker holds behind their journey (reconciliation)

    @property
    def leads(self) -> dict[str, Person]:
        return {p.lead_id: p for p in self.people.values() if p.lead_id}

    def stage_counts(self) -> Counter[str]:
        """Leads expected in each stage now."""
        return Counter(STAGE_AFTER_STEPS[p.steps_done] for p in self.leads.values())

    def entered_counts(self) -> Counter[str]:
        """Leads expected to have entered each stage (their journeys skip nothing)."""
        return Counter(
            STAGE_AFTER_STEPS[s] for p in self.leads.values() for s in range(p.steps_done + 1)
        )

    def revenue(self) -> Decimal:
        return sum(self.orders.values(), Decimal(0))


class Traffic:
    """Drives one stack at `rate` operations per second until stopped."""

    def __init__(
        self,
        urls: dict[str, str],
        api_key: str,
        mail_dir: Path,
        *,
        rate: float,
        seed: int = 8,
        retry_seconds: float = 150.0,
        max_in_flight: int = 3000,
        ledger: Ledger | None = None,
    ) -> None:
        self.urls = urls
        self.auth = {"Authorization": f"Bearer {api_key}"}
        self.mail_dir = mail_dir
        self.rate = rate
        self.rng = random.Random(seed)  # traffic shape, not security
        self.run_id = uuid.uuid4().hex[:6]
        self.retry_seconds = retry_seconds
        self.max_in_flight = max_in_flight
        self.ledger = ledger if ledger is not None else Ledger()  # shared across runs
        self.ticks = 0
        self.skipped_ticks = 0
        self.started = 0.0
        self.stopped = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._mail_read = 0  # how far into the mailbox's file the scan has read
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def __aenter__(self) -> Traffic:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        for name, url in self.urls.items():
            self._clients[name] = httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def install_welcome_with_link(self) -> None:
        response = await self._clients["notifier"].put(
            "/v1/playbooks/welcome",
            content=WELCOME_WITH_LINK,
            headers={**self.auth, "content-type": "application/yaml"},
        )
        response.raise_for_status()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, seconds: float) -> None:
        """Tick at the rate for `seconds` (or until stopped), then wait for every operation."""
        self.started = time.perf_counter()
        period = 1.0 / self.rate
        next_tick = self.started
        while not self._stop.is_set() and time.perf_counter() - self.started < seconds:
            self.ticks += 1
            if len(self._tasks) >= self.max_in_flight:
                self.skipped_ticks += 1  # the stack fell this far behind: the rate is not held
            else:
                task = asyncio.create_task(self._one_operation())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            next_tick += period
            delay = next_tick - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        self.stopped = time.perf_counter()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- operations -----------------------------------------------------------------------

    async def _one_operation(self) -> None:
        roll = self.rng.random()
        try:
            if roll < 0.15 and await self._click():
                return
            if roll < 0.50 and await self._activity():
                return
            await self._form_post()
        except Exception as exc:  # a bug here must show in the figures, not kill the run
            self.ledger.problems[f"traffic error {type(exc).__name__}: {exc}"[:160]] += 1

    async def _send(
        self, kind: str, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        """Send, retrying transport errors, 5xx and 429 with backoff until the deadline."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                response = await self._clients[service].request(method, path, **kwargs)
                if response.status_code < 500 and response.status_code != 429:
                    return response
                reason = str(response.status_code)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            self.ledger.retries[f"{kind} {reason}"] += 1
            if time.monotonic() > deadline:
                self.ledger.problems[f"{kind}: gave up after {self.retry_seconds:.0f}s"] += 1
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def post_new_person(self) -> str | None:
        """One form post from a new person (a probe); their lead id once accepted."""
        return await self._form_post(new=True)

    async def _form_post(self, *, new: bool = False) -> str | None:
        ledger = self.ledger
        known = [p for p in ledger.people.values() if p.lead_id and not p.busy]
        if known and not new and self.rng.random() < 0.15:
            person = self.rng.choice(known)
            email = f"  {person.email.upper()} "  # the same person, spelled differently
        else:
            n = len(ledger.people)
            person = Person(
                email=f"soak-{self.run_id}-{n}@example.com",
                journey=self.rng.choices(range(5), JOURNEY_WEIGHTS)[0],
            )
            ledger.people[person.email] = person
            email = person.email
        source, medium = self.rng.choice(SOURCES)
        payload: dict[str, Any] = {"email": email, "first_name": "Soak"}
        if source:
            payload |= {"utm_source": source, "utm_medium": medium, "utm_campaign": "soak"}
        ledger.operations["form post"] += 1
        person.busy = True
        sent = time.perf_counter()
        try:
            response = await self._send(
                "form post",
                "lead-intake",
                "POST",
                FORM_PATH,
                json=payload,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        finally:
            person.busy = False
        if response is None:
            return None
        if response.status_code != 202:
            ledger.problems[f"form post answered {response.status_code}"] += 1
            return None
        body = response.json()
        if person.lead_id not in (None, body["lead_id"]):
            ledger.problems["a known person got another lead id"] += 1
        person.lead_id = body["lead_id"]
        ledger.submissions.add(body["submission_id"])
        ledger.posts.append(
            PostTiming(sent, time.perf_counter(), response.status_code, bool(body["new_lead"]))
        )
        return person.lead_id

    def _activity_item(self, person: Person, step: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "lead_id": person.lead_id,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        if step == 1:
            return item | {"type": "page_view", "page_url": "https://shop.example.com/catalogue"}
        if step == 2:
            return item | {"type": "pricing_viewed", "page_url": "https://shop.example.com/pricing"}
        order = f"S-{self.run_id}-{person.lead_id}-{step}"
        amount = self.rng.choice(PRICES)
        return item | {
            "type": "purchase_completed",
            "order_id": order,
            "amount": str(amount),
            "currency": "EUR",
        }

    async def _activity(self) -> bool:
        ledger = self.ledger
        ready = [
            p
            for p in ledger.people.values()
            if p.lead_id and not p.busy and p.steps_done < p.journey
        ]
        if not ready:
            return False
        person = self.rng.choice(ready)
        step = person.steps_done + 1
        item = self._activity_item(person, step)
        batch = [item]
        duplicates = 0
        if person.orders and self.rng.random() < 0.3:  # the shop reports an order again
            again = self._activity_item(person, 3) | {"order_id": person.orders[-1]}
            batch.append(again)
            duplicates += 1
        ledger.operations["activity"] += 1
        person.busy = True
        try:
            response = await self._send(
                "activity",
                "lead-intake",
                "POST",
                "/v1/activities",
                json={"activities": batch},
                headers=self.auth,
            )
            if response is None:
                return True
            if response.status_code != 202:
                ledger.problems[f"activity answered {response.status_code}"] += 1
                return True
            answer = response.json()
            # A retried batch that had committed answers "duplicate" for its own items.
            if answer["accepted"] + answer["duplicates"] != len(batch):
                ledger.problems["activity answer does not add up"] += 1
            if answer["duplicates"] < duplicates:
                ledger.problems["a reported order counted twice"] += 1
            ledger.activity_ids.add(item["id"])
            if "order_id" in item:
                ledger.orders[item["order_id"]] = Decimal(item["amount"])
                person.orders.append(item["order_id"])
            person.steps_done = step
            if self.rng.random() < 0.05:  # a sender retrying a batch it already delivered
                ledger.operations["activity sent again"] += 1
                await self._resend(batch)
        finally:
            person.busy = False
        return True

    async def _resend(self, batch: list[dict[str, Any]]) -> None:
        response = await self._send(
            "activity",
            "lead-intake",
            "POST",
            "/v1/activities",
            json={"activities": batch},
            headers=self.auth,
        )
        if response is not None and (
            response.status_code != 202 or response.json()["accepted"] != 0
        ):
            self.ledger.problems["a batch sent again was not all duplicates"] += 1

    def _scan_mail(self) -> None:
        by_email = self.ledger.people
        new, self._mail_read = read_raw_messages(self.mail_dir, self._mail_read)
        for raw in new:
            message = _PARSER.parsebytes(raw)
            person = by_email.get(str(message["To"]).lower())
            body = message.get_body(("html", "plain"))
            link = _LINK.search(body.get_content()) if body is not None else None
            if person is not None and link is not None:
                person.mail_link = link.group(1)

    async def _click(self) -> bool:
        self._scan_mail()
        ready = [
            p
            for p in self.ledger.people.values()
            if p.mail_link and p.steps_done >= 1 and not p.clicked and not p.busy
        ]
        if not ready:
            return False
        person = self.rng.choice(ready)
        assert person.mail_link is not None
        person.clicked = True
        self.ledger.operations["click"] += 1
        times = 2 if self.rng.random() < 0.1 else 1  # some people click twice
        for _ in range(times):
            response = await self._send("click", "notifier", "GET", person.mail_link)
            if response is None:
                return True
            if response.status_code != 302:
                self.ledger.problems[f"click answered {response.status_code}"] += 1
                return True
        self.ledger.clicked_links.add(person.mail_link)
        return True
