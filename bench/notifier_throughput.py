"""Notifier throughput and scheduler lag, against a bare SMTP client in the same run.

Both send the same rendered messages to one local SMTP server (a separate process that
accepts and discards, so the server is not what is measured). The baseline is aiosmtplib on
one connection, messages built and flattened beforehand, each sent with `sendmail`: the
cost of SMTP alone. The notifier run is the real sender on a real PostgreSQL: claim due
touches (SKIP LOCKED), re-check conditions, render, send, record `sent` with its touch.sent
outbox row. Rounds alternate ABBA.

Scheduler lag: touches are scheduled to fall due at a steady rate (a share of the measured
throughput) while the sender loop runs as in production; lag = recorded send - due time.

Notifier CPU per touch: the process time of this process (the sender: claim, render, build,
send, record) over the touches sent; PostgreSQL and the SMTP server are other processes.

Run: `.venv/bin/python -m bench.notifier_throughput [--touches 2000] [--rounds 2]`.
Results: bench/results/notifier-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiosmtplib
import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, log, median, percentile
from funnel_contracts import Envelope, LeadCaptured, StageChanged
from funnel_devstack.ports import free_port, wait_for_port
from funnel_devstack.postgres import PostgresServer
from funnel_servicekit import migrations
from funnel_servicekit.db import create_pool
from notifier.app import MIGRATIONS
from notifier.playbooks.models.templates import pick, render, shipped
from notifier.settings import NotifierSettings
from notifier.touches.consumer import handle
from notifier.touches.models.email_message import MailEnvelope, build_email
from notifier.touches.worker import TouchSender


def _sink_main(port: int) -> None:
    """A local SMTP server that accepts every message and keeps nothing."""
    import threading

    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    threading.Event().wait()


def _start_sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.notifier_throughput", "--sink", str(port)],
        cwd=str(Path(__file__).resolve().parent.parent),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, 20)
    return proc


async def _database(pg: PostgresServer) -> str:
    dsn = await pg.create_database("bench")
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn, "notifier", MIGRATIONS)
    finally:
        await conn.close()
    return dsn


async def _seed(pool: asyncpg.Pool, count: int, *, due_from: datetime, rate: float | None) -> None:
    """`count` leads, each with a welcome touch; due now, or one every 1/rate seconds."""
    for i in range(count):
        lead = uuid4()
        at = due_from if rate is None else due_from + timedelta(seconds=i / rate)
        events = (
            LeadCaptured(
                lead_id=lead, submission_id=uuid4(), form_id="demo", funnel_id="digital-sales",
                email=f"{lead.hex[:12]}@example.com", first_name="Ada", captured_at=at,
            ),
            StageChanged(
                lead_id=lead, funnel_id="digital-sales", funnel_version=1, from_stage=None,
                to_stage="awareness", to_stage_position=0, reason="bench", changed_at=at,
            ),
        )  # fmt: skip
        async with pool.acquire() as conn, conn.transaction():
            for event in events:
                await handle(conn, Envelope.of(event, source="bench"), event)


def _messages(count: int, settings: NotifierSettings) -> list[EmailMessage]:
    """The same welcome email the notifier sends, built ahead (the baseline's input)."""
    locale, template = pick(shipped("welcome"), "en")
    out = []
    for _ in range(count):
        touch = uuid4()
        rendered = render(template, {"first_name": "Ada", "tracked": str}, locale)
        out.append(
            build_email(
                MailEnvelope(
                    touch_id=touch, to=f"{touch.hex[:12]}@example.com",
                    mail_from=settings.mail_from, domain=settings.message_id_domain,
                    locale=locale, open_pixel_url=f"{settings.public_base_url}/t/o/x.gif",
                ),
                rendered,
            )
        )  # fmt: skip
    return out


async def _baseline(port: int, messages: list[EmailMessage]) -> float:
    """SMTP alone: the messages flattened beforehand, each handed over with `sendmail`."""
    wire = [
        (str(m["From"].addresses[0].addr_spec), [str(m["To"])], m.as_bytes(policy=SMTP))
        for m in messages
    ]
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    started = time.perf_counter()
    await smtp.connect()
    for sender, recipients, data in wire:
        await smtp.sendmail(sender, recipients, data)
    await smtp.quit()
    return len(messages) / (time.perf_counter() - started)


async def _notifier(pg: PostgresServer, settings: NotifierSettings, count: int) -> dict[str, Any]:
    dsn = await _database(pg)
    pool = await create_pool(dsn, "notifier", min_size=2, max_size=8)
    try:
        await _seed(pool, count, due_from=datetime.now(UTC), rate=None)
        sender = TouchSender(pool, settings.model_copy(update={"database_url": dsn}))
        started, cpu_started = time.perf_counter(), time.process_time()
        while await sender.send_due():
            pass
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started  # this process: the sender (not PostgreSQL)
        sent = await pool.fetchval("SELECT count(*) FROM touches WHERE status = 'sent'")
    finally:
        await pool.close()
    return {
        "touches_per_s": sent / elapsed,
        "sent": sent,
        "seconds": round(elapsed, 2),
        "cpu_ms_per_touch": round(cpu / max(sent, 1) * 1000, 3),
    }


async def _lag(
    pg: PostgresServer, settings: NotifierSettings, count: int, rate: float
) -> dict[str, Any]:
    dsn = await _database(pg)
    pool = await create_pool(dsn, "notifier", min_size=2, max_size=8)
    try:
        start = datetime.now(UTC) + timedelta(seconds=2)
        await _seed(pool, count, due_from=start + timedelta(seconds=3), rate=rate)
        sender = TouchSender(pool, settings.model_copy(update={"database_url": dsn}))
        loop = asyncio.create_task(sender.run())
        deadline = time.monotonic() + 10 + count / rate * 3
        while time.monotonic() < deadline:
            done = await pool.fetchval("SELECT count(*) FROM touches WHERE status = 'sent'")
            if done >= count:
                break
            await asyncio.sleep(0.5)
        sender.stop()
        await loop
        lags = [
            float(r["lag"])
            for r in await pool.fetch(
                "SELECT extract(epoch FROM sent_at - first_due_at) AS lag FROM touches"
                " WHERE status = 'sent'"
            )
        ]
    finally:
        await pool.close()
    return {
        "touches": count,
        "rate_per_s": round(rate, 1),
        "sent": len(lags),
        "lag_ms_p50": round(percentile(lags, 50) * 1000, 1),
        "lag_ms_p99": round(percentile(lags, 99) * 1000, 1),
        "lag_ms_max": round(max(lags) * 1000, 1) if lags else None,
    }


def _fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="funnel-bench-notifier-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach it
    return root


async def measure(touches: int, rounds: int, lag_share: float) -> dict[str, Any]:
    root = _fresh_root()
    pg = PostgresServer(root / "postgres", free_port(), password=uuid4().hex, fast=False,
                        log_file=root / "postgres.log")  # fmt: skip
    smtp_port = free_port()
    sink = _start_sink(smtp_port)
    try:
        pg.start()
        await pg.wait_ready()
        settings = NotifierSettings(
            smtp_port=smtp_port, quiet_hours_start=None, quiet_hours_end=None,
            scheduler_poll_seconds=0.5, send_batch_size=100,
        )  # fmt: skip
        runs: list[dict[str, Any]] = []
        for target in (["baseline", "notifier", "notifier", "baseline"] * rounds)[: 4 * rounds]:
            if target == "baseline":
                rate = await _baseline(smtp_port, _messages(touches, settings))
                runs.append({"target": target, "per_s": round(rate, 1)})
            else:
                result = await _notifier(pg, settings, touches)
                runs.append({"target": target, "per_s": round(result["touches_per_s"], 1),
                             "sent": result["sent"],
                             "cpu_ms_per_touch": result["cpu_ms_per_touch"],
                             "load_average_1m": round(os.getloadavg()[0], 2)})  # fmt: skip
            log(f"{target}: {runs[-1]['per_s']:.0f}/s"
                + (f", {runs[-1]['cpu_ms_per_touch']} ms CPU per touch"
                   if "cpu_ms_per_touch" in runs[-1] else ""))  # fmt: skip
        base = median([r["per_s"] for r in runs if r["target"] == "baseline"])
        notif = median([r["per_s"] for r in runs if r["target"] == "notifier"])
        cpu = round(median([r["cpu_ms_per_touch"] for r in runs if r["target"] == "notifier"]), 3)
        lag_rate = max(notif * lag_share, 1.0)
        lag = await _lag(pg, settings, min(touches, int(lag_rate * 20)), lag_rate)
        log(f"lag at {lag_rate:.0f}/s: p50 {lag['lag_ms_p50']} ms, p99 {lag['lag_ms_p99']} ms")
    finally:
        sink.terminate()
        sink.wait(10)
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "touches_per_round": touches,
        "runs": runs,
        "baseline_per_s_median": base,
        "notifier_per_s_median": notif,
        "ratio_notifier_to_baseline": round(notif / base, 3),
        "notifier_cpu_ms_per_touch_median": cpu,
        "scheduler_lag": lag,
    }


def markdown(result: dict[str, Any]) -> str:
    lag = result["scheduler_lag"]
    return "\n".join(
        [
            f"# Notifier benchmark, {result['started_at']}",
            "",
            "| target | messages/s (median) |",
            "| --- | ---: |",
            "| bare SMTP client (aiosmtplib, one connection) | "
            f"{result['baseline_per_s_median']:.0f} |",
            "| notifier sender (claim, check, render, send, record) | "
            f"{result['notifier_per_s_median']:.0f} |",
            f"| **ratio notifier / baseline** | **{result['ratio_notifier_to_baseline']:.3f}** |",
            "",
            "Notifier sender CPU per touch (its process; PostgreSQL's not counted), median: "
            f"{result['notifier_cpu_ms_per_touch_median']} ms.",
            "",
            f"Scheduler lag (due -> recorded sent) with {lag['touches']} touches falling due at "
            f"{lag['rate_per_s']}/s: p50 {lag['lag_ms_p50']} ms, p99 **{lag['lag_ms_p99']} ms**, "
            f"max {lag['lag_ms_max']} ms.",
            "",
            "Runs: " + ", ".join(f"{r['target']} {r['per_s']:.0f}" for r in result["runs"]),
            "",
        ]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notifier_throughput")
    parser.add_argument("--touches", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds")
    parser.add_argument("--lag-share", type=float, default=0.5, help="lag run rate / throughput")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        _sink_main(args.sink)
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result.update(asyncio.run(measure(args.touches, args.rounds, args.lag_share)))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"notifier-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / f"notifier-{stamp}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
