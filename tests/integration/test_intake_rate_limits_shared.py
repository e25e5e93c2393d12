"""Rate limits shared across replicas and kept across restarts: two lead-intake processes on
one real PostgreSQL count in the same token buckets, and a restarted process still refuses
a caller that used its limit up (form posts, activity beacons and webhooks alike)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from funnel_devstack.ports import free_port
from funnel_devstack.processes import start_process, stop_popen
from funnel_devstack.stack import Stack
from funnel_servicekit.cli import migrate
from funnel_servicekit.db import connect
from lead_intake.app import MIGRATIONS
from lead_intake.forms.models import FormIn
from lead_intake.forms.service import seed_form
from lead_intake.settings import IntakeSettings

pytestmark = pytest.mark.integration
ENV = {
    "FUNNEL_RUN_WORKERS": "false",
    "FUNNEL_ADMIN_API_KEY": "shared-limits-admin-key-0123456789",
    "FUNNEL_WEBHOOK_HMAC_SECRET": "shared-limits-hmac-secret",
    "FUNNEL_WEBHOOK_RATE_LIMIT_PER_IP": "4/minute",
    "FUNNEL_WEBHOOK_RATE_LIMIT_PER_FORM": "unlimited",
}


class Replicas:
    """lead-intake processes on one database; each started on a port of its own."""

    def __init__(self, dsn: str, kafka: str, logs: Path) -> None:
        self.env = {
            **ENV,
            "FUNNEL_DATABASE_URL": dsn,
            "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "FUNNEL_HTTP_HOST": "127.0.0.1",
        }
        self.logs = logs
        self.procs: dict[str, Any] = {}
        self.urls: dict[str, str] = {}
        self.form_keys: dict[str, str] = {}

    async def start(self, name: str) -> str:
        port = free_port()
        self.procs[name] = start_process(
            [sys.executable, "-m", "lead_intake", "serve"],
            log_file=self.logs / f"{name}.log",
            env={**self.env, "FUNNEL_HTTP_PORT": str(port)},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                assert self.procs[name].poll() is None, (self.logs / f"{name}.log").read_text()
                assert time.monotonic() < deadline, f"{name} not ready"
                await asyncio.sleep(0.3)
        self.urls[name] = url
        return url

    def stop(self, name: str) -> None:
        stop_popen(self.procs.pop(name), 30, signal.SIGTERM)
        self.urls.pop(name)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def guard_records(self) -> list[str]:
        return [
            line
            for log in self.logs.glob("*.log")
            for line in log.read_text(errors="replace").splitlines()
            if "network call inside a database transaction" in line
        ]


@pytest.fixture
async def replicas(fresh_dsn: str, infra: Stack, tmp_path: Path) -> AsyncIterator[Replicas]:
    settings = IntakeSettings(database_url=fresh_dsn, kafka_bootstrap_servers=infra.kafka_bootstrap)
    await migrate(settings, MIGRATIONS)
    conn = await connect(fresh_dsn, settings.db_schema)
    try:
        for form_id, per_ip, per_form in (
            ("per-ip", "6/minute", "unlimited"),
            ("per-form", "unlimited", "5/minute"),
            ("beacons", "4/minute", "unlimited"),
        ):
            await seed_form(
                conn,
                form_id,
                FormIn(
                    funnel_id="digital-sales",
                    name=form_id,
                    rate_limit_per_ip=per_ip,
                    rate_limit_per_form=per_form,
                ),
            )
        keys = dict(await conn.fetch("SELECT id, public_key FROM forms"))
    finally:
        await conn.close()
    running = Replicas(fresh_dsn, infra.kafka_bootstrap, tmp_path)
    running.form_keys = keys
    await asyncio.gather(running.start("a"), running.start("b"))
    try:
        yield running
    finally:
        running.stop_all()
    assert running.guard_records() == []


def _round_robin(urls: list[str]) -> Iterator[str]:
    return itertools.cycle(urls)


async def _posts(
    urls: list[str], n: int, path: str, body: Any, ip_of: Any, headers: Any = None
) -> list[int]:
    """`n` posts, turn by turn to each replica, each from the address `ip_of(i)`."""
    targets = _round_robin(urls)
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(n):
            response = await client.post(
                f"{next(targets)}{path}",
                json=body(i),
                headers={"X-Forwarded-For": ip_of(i), **(headers(i) if headers else {})},
            )
            if response.status_code == 429:
                assert response.json()["type"] == "urn:funnel:problem:rate-limited"
                assert int(response.headers["retry-after"]) >= 1
            statuses.append(response.status_code)
    return statuses


async def test_two_intake_processes_hold_one_limit_together_and_after_a_restart(
    replicas: Replicas,
) -> None:
    both = list(replicas.urls.values())

    per_ip = await _posts(
        both,
        16,
        "/v1/forms/per-ip/submissions",
        lambda i: {"email": f"ip{i}@example.com"},
        lambda i: "203.0.113.10",
    )
    other_ip = await _posts(
        both,
        1,
        "/v1/forms/per-ip/submissions",
        lambda i: {"email": "other@example.com"},
        lambda i: "203.0.113.11",
    )
    per_form = await _posts(
        both,
        14,
        "/v1/forms/per-form/submissions",
        lambda i: {"email": f"form{i}@example.com"},
        lambda i: f"198.51.100.{i + 1}",
    )
    keys = replicas.form_keys
    beacons = await _posts(
        both,
        10,
        f"/v1/activities?key={keys['beacons']}",
        lambda i: {
            "activities": [
                {
                    "type": "page_view",
                    "visitor_id": f"visitor-{i}",
                    "occurred_at": "2026-11-26T10:00:00Z",
                }
            ]
        },
        lambda i: "203.0.113.20",
    )
    # Webhook deliveries with a wrong signature, to a form that does not even exist: counted
    # per source address before the signature is looked at (4/minute for both processes).
    webhooks = await _posts(
        both,
        10,
        "/v1/forms/nobody/webhooks/generic",
        lambda i: {"id": i},
        lambda i: "203.0.113.30",
        lambda i: {"x-funnel-signature": f"t={int(time.time())},v1=00"},
    )

    assert per_ip.count(202) == 6, per_ip  # 6/minute, whichever process answered
    assert per_ip.count(429) == 10, per_ip
    assert per_ip[:6] == [202] * 6
    assert other_ip == [202]
    assert (per_form.count(202), per_form.count(429)) == (5, 9), per_form
    assert (beacons.count(202), beacons.count(429)) == (4, 6), beacons
    assert (webhooks.count(401), webhooks.count(429)) == (4, 6), webhooks

    # Both processes gone, one started again: the buckets are in PostgreSQL, not in memory.
    replicas.stop_all()
    again = await replicas.start("a-again")
    after_restart = await _posts(
        [again],
        2,
        "/v1/forms/per-ip/submissions",
        lambda i: {"email": f"later{i}@example.com"},
        lambda i: "203.0.113.10",
    )
    fresh_address = await _posts(
        [again],
        1,
        "/v1/forms/per-ip/submissions",
        lambda i: {"email": "fresh@example.com"},
        lambda i: "203.0.113.12",
    )
    assert after_restart == [429, 429]
    assert fresh_address == [202]


def test_the_env_names_the_settings_that_exist() -> None:
    """The settings this test sets are the service's own (a typo would test nothing)."""
    fields = IntakeSettings.model_fields
    for name in ENV:
        assert name.removeprefix("FUNNEL_").lower() in fields, name
