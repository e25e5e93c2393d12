"""Soak: the whole stack under realistic traffic for minutes, then an exact reconciliation.

    .venv/bin/python -m bench.soak --minutes 10 --rate 10
    .venv/bin/python -m bench.soak --minutes 1 --rate 5          # a quick look
    .venv/bin/python -m bench.soak --stack-dir .funnel --minutes 2 # against `funnel up`

Starts a fresh stack on free loopback ports (or drives the one `funnel up` runs in
--stack-dir), replaces the welcome email by one with a tracked link, drives form posts,
activities (purchases, duplicates) and clicks at a steady open-loop rate
(bench/soak_traffic.py), then waits for the pipeline to settle and reconciles every service,
the topics, the report and the mailbox against what was accepted (bench/soak_reconcile.py).

Prints and writes (bench/results/soak-<stamp>.json and .md): the rate held, p50/p99 from form
post to the lead counted in the report's snapshot, the memory (RSS) of each service at start,
after the first minute and at the end (growth over 5% is flagged), and every check.
Bounded: `--minutes` of traffic, at most `--max-in-flight` operations at once, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.capture_latency import SnapshotPoller
from bench.common import RESULTS_DIR, log, percentile, running_stack, scan_logs
from bench.soak_reconcile import reconcile
from bench.soak_traffic import FUNNEL_ID, Traffic
from funnel_devstack.processes import read_state
from funnel_devstack.stack import SERVICES, Stack

GROWTH_LIMIT = 0.05


def service_rss(stack: Stack) -> dict[str, int]:
    """Resident memory of each service process (with its children), in bytes."""
    pids = {name: proc.pid for name, proc in stack.services.items()}
    if not pids:  # a stack started by `funnel up`: its pids are in the state file
        state = read_state(stack.state_file)
        pids = {name: int(state[name]["pid"]) for name in SERVICES if name in state}
    rss: dict[str, int] = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            rss[name] = proc.memory_info().rss + sum(
                c.memory_info().rss for c in proc.children(recursive=True)
            )
        except psutil.Error:
            rss[name] = 0
    return rss


def capture_latencies(traffic: Traffic, poller: SnapshotPoller, base: int) -> list[float]:
    """Seconds from each new lead's post to the first snapshot counting it (in send order)."""
    new = sorted(p.sent for p in traffic.ledger.posts if p.new_lead)
    latencies = []
    for k, sent in enumerate(new, start=1):
        seen = poller.first_time_reaching(base + k)
        if seen is not None:
            latencies.append(max(seen - sent, 0.0))
    return latencies


async def soak(stack: Stack, minutes: float, rate: float, max_in_flight: int, fresh: bool) -> Any:
    urls = {name: stack.url(name) for name in SERVICES}
    auth = {"Authorization": f"Bearer {stack.admin_api_key}"}
    result: dict[str, Any] = {"minutes": minutes, "rate_offered": rate, "fresh_stack": fresh}
    memory: dict[str, dict[str, int]] = {"start": service_rss(stack)}
    async with (
        Traffic(urls, stack.admin_api_key, stack.mail_dir, rate=rate,
                max_in_flight=max_in_flight) as traffic,
        httpx.AsyncClient(base_url=urls["reporting"], headers=auth, timeout=10) as reads,
    ):  # fmt: skip
        await traffic.install_welcome_with_link()
        poller = SnapshotPoller(reads, 0.1)
        poll_task = asyncio.create_task(poller.run())
        await poller.changed.wait()  # the first answer: the total before the traffic
        base = poller.latest()
        run = asyncio.create_task(traffic.run(minutes * 60))
        started = time.monotonic()
        while not run.done():
            await asyncio.wait([run], timeout=30)
            elapsed = time.monotonic() - started
            if "warm" not in memory and elapsed >= 60:
                memory["warm"] = service_rss(stack)
            ops = sum(traffic.ledger.operations.values())
            problems = sum(traffic.ledger.problems.values())
            log(
                f"{elapsed:5.0f}s: {ops} operations ({ops / max(elapsed, 1):.1f}/s),"
                f" {traffic.in_flight} in flight, {len(traffic.ledger.leads)} leads,"
                f" counted {poller.latest() - base}, problems {problems}"
            )
        await run
        memory["end"] = service_rss(stack)
        log("traffic done; waiting for the pipeline to settle and reconciling")
        reconciliation = await reconcile(stack, traffic.ledger, fresh=fresh)
        await asyncio.sleep(0.5)  # one more snapshot poll after the settle
        poller.stop()
        await poll_task

    ledger = traffic.ledger
    duration = traffic.stopped - traffic.started
    latencies = capture_latencies(traffic, poller, base)
    post_rtt = [p.answered - p.sent for p in ledger.posts]
    result |= {
        "duration_s": round(duration, 1),
        "operations": dict(ledger.operations),
        # Operations started on schedule (a resent batch rides on its activity's tick).
        "rate_achieved": round((traffic.ticks - traffic.skipped_ticks) / duration, 2),
        "ticks_skipped": traffic.skipped_ticks,
        "leads": len(ledger.leads),
        "submissions": len(ledger.submissions),
        "activities": len(ledger.activity_ids),
        "orders": len(ledger.orders),
        "clicks": len(ledger.clicked_links),
        "problems": dict(ledger.problems),
        "retries": dict(ledger.retries),
        "post_to_report_s": {
            "count": len(latencies),
            "p50": round(percentile(latencies, 50), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(max(latencies, default=float("nan")), 3),
        },
        "post_answer_ms": {
            "p50": round(percentile(post_rtt, 50) * 1000, 1),
            "p99": round(percentile(post_rtt, 99) * 1000, 1),
        },
        "memory_mb": {
            stage: {k: round(v / 2**20, 1) for k, v in values.items()}
            for stage, values in memory.items()
        },
        "memory_growth": _growth(memory),
        "settled_after_s": round(reconciliation.quiet_after_s, 1),
        "reconciliation_ok": reconciliation.ok,
        "checks": [
            {
                "name": c.name,
                "expected": str(c.expected),
                "actual": str(c.actual),
                "ok": c.ok,
                "detail": c.detail,
            }
            for c in reconciliation.checks
        ],
        "notes": reconciliation.notes,
        "snapshot_funnel": FUNNEL_ID,
    }
    print("\n".join(reconciliation.lines()), flush=True)
    return result


def _growth(memory: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Growth from start and from the warm point (after a minute of load) to the end."""
    out: dict[str, dict[str, Any]] = {}
    for name, end in memory["end"].items():
        row: dict[str, Any] = {}
        for since in ("start", "warm"):
            before = memory.get(since, {}).get(name)
            if before:
                share = end / before - 1
                row[f"since_{since}"] = round(share, 3)
                row[f"over_limit_since_{since}"] = share > GROWTH_LIMIT
        out[name] = row
    return out


def to_markdown(r: dict[str, Any]) -> str:
    lat, mem = r["post_to_report_s"], r["memory_mb"]
    lines = [
        f"# Soak {r['started_at']} ({r['git']})",
        "",
        f"- host: {r['host']}; load from the same machine (the generator shares the cores)",
        f"- offered {r['rate_offered']}/s for {r['minutes']} min; achieved"
        f" {r['rate_achieved']}/s over {r['duration_s']} s; skipped ticks {r['ticks_skipped']}",
        f"- operations {r['operations']}; leads {r['leads']}, submissions {r['submissions']},"
        f" activities {r['activities']}, orders {r['orders']}, clicks {r['clicks']}",
        f"- form post -> counted in the report: p50 {lat['p50']} s, p99 {lat['p99']} s,"
        f" max {lat['max']} s ({lat['count']} leads); post answered p50"
        f" {r['post_answer_ms']['p50']} ms, p99 {r['post_answer_ms']['p99']} ms",
        f"- problems {r['problems'] or 'none'}; retries {r['retries'] or 'none'}",
        f"- settled {r['settled_after_s']} s after the traffic stopped;"
        f" reconciliation {'EXACT' if r['reconciliation_ok'] else 'FAILED'}",
        "",
        "| service | RSS start MB | after 1 min MB | end MB | growth since start |"
        " growth since 1 min |",
        "|---|---|---|---|---|---|",
    ]
    for name in mem["end"]:
        growth = r["memory_growth"][name]
        cells = []
        for since in ("start", "warm"):
            share = growth.get(f"since_{since}")
            flag = " (over 5%)" if growth.get(f"over_limit_since_{since}") else ""
            cells.append("-" if share is None else f"{share:+.1%}{flag}")
        lines.append(
            f"| {name} | {mem['start'].get(name)} | {mem.get('warm', {}).get(name)} |"
            f" {mem['end'][name]} | {cells[0]} | {cells[1]} |"
        )
    lines += ["", "| check | expected | found | |", "|---|---|---|---|"]
    for c in r["checks"]:
        lines.append(
            f"| {c['name']} | {c['expected']} | {c['actual']} |"
            f" {'ok' if c['ok'] else 'FAIL'} {c['detail']} |"
        )
    lines += ["", *r["notes"], ""]
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    from bench.run import _cpu_count, _git_revision

    stamp = time.strftime("%Y%m%dT%H%M%S")
    header = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_revision(),
        "host": f"{_cpu_count()} CPUs, load average at start {psutil.getloadavg()}",
    }
    logs_dir = RESULTS_DIR / "logs" / f"soak-{stamp}"
    if args.stack_dir:
        stack = Stack(Path(args.stack_dir))
        result = await soak(stack, args.minutes, args.rate, args.max_in_flight, fresh=False)
    else:
        async with running_stack(keep_logs_in=logs_dir) as stack:
            result = await soak(stack, args.minutes, args.rate, args.max_in_flight, fresh=True)
        result["log_problems"] = scan_logs(logs_dir)
    result = header | result | {"load_average_at_end": psutil.getloadavg()}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"soak-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    markdown = to_markdown(result)
    (RESULTS_DIR / f"soak-{stamp}.md").write_text(markdown)
    print(markdown)
    return 0 if result["reconciliation_ok"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="operations per second")
    parser.add_argument("--max-in-flight", type=int, default=3000)
    parser.add_argument("--stack-dir", help="drive the stack `funnel up` runs there instead")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
