"""Pipeline capacity: how many leads a second the whole stack carries in real time.

Open-loop steps of leads a second (default 10, 20, 40, 80, 160, 320), each `--seconds` long
(default 20), on the stack `funnel up` runs, on this host. Each lead is a form post; one
second after its answer, the same person's page view is reported (`POST /v1/activities`),
which moves them from `awareness` to `interest` in the digital-sales funnel. The bench follows
the reporting snapshot as the dashboard does, on its live stream (`--poll`: a GET every
20 ms instead); lead k of a step is visible when the snapshot's total
reached the step's start plus k (ranked by send time), and its page view when `interest` did
the same. So each step gives p50/p99 of form -> snapshot and activity -> snapshot, the
backlog left when the step's last request went out (not yet visible), how long it took to
drain, and each process's CPU milliseconds per lead (the four services, PostgreSQL, Kafka).

`sustained capacity: N leads/s` is the highest step whose p99s are both <= 250 ms and whose
backlog drained within 2 s; steps stop after the first one that misses badly.

The baseline, in the same run: the same hops done by bare aiokafka and asyncpg, the minimal
durable pipeline. Three processes chained by two topics (acks=all, manual offset commits);
the first INSERTs and COMMITs each lead, then produces it; the second and third consume it,
INSERT and COMMIT it each, the second producing it on. Visible = the third's commit. The
same steps and the same rule give its capacity; the ratios of capacities and p99s are printed.

The requests go out on raw asyncio streams (a few microseconds each); httpx would cost about a
millisecond of CPU a request, taken from the processes being measured on a two-core host.

`.venv/bin/python -m bench.pipeline_capacity [--steps 10,20,40] [--extra-steps 60,120]
[--seconds 20]`: `--extra-steps` adds rates between the default steps (each measured in its
place, lowest first), e.g. the capacity between 40 and 80, or the baseline's between 80 and 160.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import secrets
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psutil
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    FORM_PATH,
    RESULTS_DIR,
    SNAPSHOT_PATH,
    cpu_seconds,
    log,
    percentile,
    running_stack,
    tree_cpu_seconds,
    tree_cpu_used,
)
from funnel_devstack.stack import SERVICE_ROLES, Stack

STEPS = (10, 20, 40, 80, 160, 320)
P99_LIMIT_MS = 250.0
DRAIN_LIMIT_S = 2.0
GIVE_UP_DRAIN_S = 30.0  # a step that needs longer ends the series
SETTLE_S = 60.0  # how long a step's CPU reading waits for every consumer and outbox to drain
ACTIVITY_AFTER_S = 1.0
POLL_PERIOD_S = 0.02
CALIBRATION_LOOPS = 2_000_000


def calibration_ms() -> float:
    """The CPU ms this thread takes for a fixed piece of pure-Python work (the median of
    three), taken with the stack idle before a step: how fast the machine's cores run at that
    moment. The host's other tenants change it from one hour to the next, and every
    process's CPU per lead with it, so runs of the same code are compared through it."""
    times = []
    for _ in range(3):
        started = time.thread_time()
        total = 0
        for i in range(CALIBRATION_LOOPS):
            total += i * i
        times.append(time.thread_time() - started)
    return round(sorted(times)[1] * 1000, 1)


# -- a tiny HTTP/1.1 client on asyncio streams -------------------------------------------------


class RawClient:
    """Keep-alive connections to one host; `request` sends prebuilt bytes, returns (status,
    body). A request waits for an idle connection or opens one (up to `max_connections`)."""

    def __init__(self, base_url: str, max_connections: int = 64) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.answered = 0  # requests answered, whatever their status

    def build(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length = 0
                keep = True
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        keep = False
                body = await reader.readexactly(length) if length else b""
            except BaseException:
                writer.close()
                raise
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            self.answered += 1
            return status, body

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


# -- what is visible, when -----------------------------------------------------------------------


@dataclass
class Visible:
    """Each change of a monotone count with the time its answer arrived."""

    times: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, at: float, count: int) -> None:
        if not self.counts or count > self.counts[-1]:
            self.times.append(at)
            self.counts.append(count)

    def latest(self) -> int:
        return self.counts[-1] if self.counts else 0

    def first_reaching(self, count: int) -> float | None:
        i = bisect.bisect_left(self.counts, count)
        return self.times[i] if i < len(self.times) else None


async def poll_snapshot(
    client: RawClient, raw: bytes, total: Visible, interest: Visible, stop: asyncio.Event
) -> None:
    next_tick = time.perf_counter()
    while not stop.is_set():
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            status, body = await client.request(raw)
            if status == 200:
                snap = json.loads(body)
                at = time.perf_counter()
                total.add(at, int(snap["total"]))
                stages = {s["stage"]: int(s["leads"]) for s in snap["stages"]}
                interest.add(at, stages.get("interest", 0))
        next_tick = max(next_tick + POLL_PERIOD_S, time.perf_counter())
        await asyncio.sleep(next_tick - time.perf_counter())


async def stream_snapshot(
    client: RawClient, raw: bytes, total: Visible, interest: Visible, stop: asyncio.Event
) -> None:
    """The snapshot's live stream (`GET .../snapshot/stream`, server-sent events over chunked
    HTTP/1.1): each `snapshot` event recorded as it arrives, until `stop`."""
    reader, writer = await asyncio.open_connection(client.host, client.port)

    async def read() -> None:
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head.split(b" ", 2)[1]) != 200:
            raise RuntimeError(f"the snapshot stream answered {head[:200]!r}")
        chunked = b"transfer-encoding: chunked" in head.lower()
        buffer = b""
        while True:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                buffer += (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
                buffer += data
            at = time.perf_counter()
            *blocks, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            for block in blocks:
                data_lines = [
                    ln[5:].strip() for ln in block.split(b"\n") if ln.startswith(b"data:")
                ]
                if not data_lines:
                    continue  # a keep-alive comment
                snap = json.loads(b"\n".join(data_lines))
                total.add(at, int(snap["total"]))
                stages = {s["stage"]: int(s["leads"]) for s in snap["stages"]}
                interest.add(at, stages.get("interest", 0))

    reading = asyncio.create_task(read())
    try:
        await stop.wait()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        writer.close()


def watch_snapshot(
    client: RawClient,
    auth: dict[str, str],
    total: Visible,
    interest: Visible,
    stop: asyncio.Event,
    *,
    poll: bool,
) -> asyncio.Task[None]:
    """The snapshot followed as a dashboard does: its live stream, or (`poll`) a GET every
    `POLL_PERIOD_S`."""
    if poll:
        raw = client.build("GET", SNAPSHOT_PATH, b"", auth)
        return asyncio.create_task(poll_snapshot(client, raw, total, interest, stop))
    raw = client.build("GET", SNAPSHOT_PATH + "/stream", b"", auth)
    return asyncio.create_task(stream_snapshot(client, raw, total, interest, stop))


def latencies_ms(sent: list[float], base: int, seen: Visible) -> list[float]:
    """Rank the sends; send k is visible when the count first reached base + k."""
    out: list[float] = []
    for rank, at in enumerate(sorted(sent), start=1):
        reached = seen.first_reaching(base + rank)
        if reached is not None:
            out.append((reached - at) * 1000)
    return out


async def wait_reaching(seen: Visible, target: int, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        reached = seen.first_reaching(target)
        if reached is not None:
            return reached
        await asyncio.sleep(POLL_PERIOD_S)
    return None


def summarize(
    rate: int,
    lead_ms: list[float],
    activity_ms: list[float],
    accepted: int,
    activities: int,
    backlog: int,
    drain_s: float | None,
    cpu_ms_per_lead: dict[str, float],
) -> dict[str, Any]:
    def q(values: list[float], p: float) -> float | None:
        return round(percentile(values, p), 1) if values else None

    p99s = [q(lead_ms, 99), q(activity_ms, 99) if activities else 0.0]
    return {
        "rate": rate,
        "leads_accepted": accepted,
        "activities_accepted": activities,
        "form_to_snapshot_p50_ms": q(lead_ms, 50),
        "form_to_snapshot_p99_ms": p99s[0],
        "activity_to_snapshot_p50_ms": q(activity_ms, 50),
        "activity_to_snapshot_p99_ms": p99s[1],
        "backlog_at_step_end": backlog,
        "drain_s": round(drain_s, 2) if drain_s is not None else None,
        "cpu_ms_per_lead": {k: round(v, 2) for k, v in cpu_ms_per_lead.items()},
        "sustained": (
            all(p is not None and p <= P99_LIMIT_MS for p in p99s)
            and drain_s is not None
            and drain_s <= DRAIN_LIMIT_S
            and len(lead_ms) == accepted
        ),
    }


def capacity(steps: list[dict[str, Any]]) -> int:
    """The highest rate of the series of sustained steps from the first one."""
    best = 0
    for step in steps:
        if not step["sustained"]:
            break
        best = step["rate"]
    return best


# -- the hops, from each service's /metrics ------------------------------------------------------

Buckets = dict[tuple[str, str, str], dict[float, float]]  # (service, hop, topic) -> le -> count


async def hop_buckets(stack: Stack) -> Buckets:
    """`funnel_event_hop_seconds` of every service, cumulative bucket counts."""
    out: Buckets = {}
    for service in stack.services:
        client = RawClient(stack.url(service), max_connections=1)
        try:
            status, body = await client.request(client.build("GET", "/metrics", b"", {}))
        except OSError:
            continue
        finally:
            await client.close()
        if status != 200:
            continue
        for family in text_string_to_metric_families(body.decode()):
            if family.name != "funnel_event_hop_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (service, sample.labels["hop"], sample.labels["topic"])
                    out.setdefault(key, {})[float(sample.labels["le"])] = sample.value
    return out


def hop_quantiles(before: Buckets, after: Buckets) -> dict[str, dict[str, float]]:
    """p50/p99 (bucket upper bounds) of each hop's observations between the two readings."""
    out: dict[str, dict[str, float]] = {}
    for key, buckets in after.items():
        earlier = before.get(key, {})
        delta = sorted((le, n - earlier.get(le, 0.0)) for le, n in buckets.items())
        total = delta[-1][1] if delta else 0.0
        if total <= 0:
            continue

        def bound(
            q: float, delta: list[tuple[float, float]] = delta, total: float = total
        ) -> float:
            return next(le for le, n in delta if n >= q * total)

        out["/".join(key)] = {
            "events": total,
            "p50_le_ms": bound(0.5) * 1000,
            "p99_le_ms": bound(0.99) * 1000,
        }
    return out


# -- where the broker's CPU goes: its threads, by name -----------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, summed by thread name with digits dropped (the JVM
    names its threads: network processors, request handlers, raft, GC, JIT compilers...)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        group = "".join(c for c in name if not c.isdigit()).strip("-_ ") or name
        out[group] = out.get(group, 0.0) + used
    return out


def thread_cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


async def backlog_of(stack: Stack) -> float | None:
    """Records the services' consumers are behind plus outbox rows not yet published, summed
    over every service's /metrics; None when a service did not answer."""
    total = 0.0
    for service in stack.services:
        client = RawClient(stack.url(service), max_connections=1)
        try:
            status, body = await client.request(client.build("GET", "/metrics", b"", {}))
        except OSError:
            return None
        finally:
            await client.close()
        if status != 200:
            return None
        for family in text_string_to_metric_families(body.decode()):
            if family.name in ("funnel_consumer_lag", "funnel_outbox_backlog"):
                total += sum(sample.value for sample in family.samples)
    return total


async def settle(stack: Stack, timeout: float = SETTLE_S) -> float:
    """Wait until no consumer lags and no outbox holds rows (twice in a row, half a second
    apart), so that a step's CPU includes the work its leads caused off the snapshot's path
    (the notifier's); returns the seconds it took (the timeout if it never settled)."""
    started = time.perf_counter()
    quiet = 0
    while time.perf_counter() - started < timeout:
        quiet = quiet + 1 if await backlog_of(stack) == 0 else 0
        if quiet >= 2:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


# -- statements per lead, by service: pg_stat_statements (preloaded on the bench's server) ----

POSTGRES_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "on",  # BEGIN, COMMIT, SAVEPOINT count too
    "pg_stat_statements.track_planning": "on",  # the time spent planning, beside executing
}
TOP_STATEMENTS = 20


async def statements_reset(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def statements_read(stack: Stack, per: float) -> dict[str, Any]:
    """Statements (calls) and their execution ms per lead (or per second) by service role since
    the last reset: the total, the commits, and the statements (shortened) that took the most
    execution time, each as [calls, ms, text]."""
    roles = {role: service for service, role in SERVICE_ROLES.items()}
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        rows = await conn.fetch(
            "SELECT r.rolname AS role, s.query, s.calls, s.total_exec_time AS ms,"
            " s.total_plan_time AS plan_ms, s.plans"
            " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
            " ORDER BY s.total_exec_time DESC"
        )
    finally:
        await conn.close()
    out: dict[str, Any] = {}
    for row in rows:
        service = roles.get(row["role"])
        if service is None:
            continue  # the bench's own reads, the server owner's
        entry = out.setdefault(
            service,
            {
                "statements": 0.0,
                "commits": 0.0,
                "exec_ms": 0.0,
                "plan_ms": 0.0,
                "plans": 0.0,
                "top": [],
            },
        )
        calls, ms, plan_ms = row["calls"] / per, row["ms"] / per, row["plan_ms"] / per
        entry["statements"] += calls
        entry["exec_ms"] += ms
        entry["plan_ms"] += plan_ms
        entry["plans"] += row["plans"] / per
        query = " ".join(row["query"].split())
        if query.upper() in ("COMMIT", "END"):
            entry["commits"] += calls
        if len(entry["top"]) < TOP_STATEMENTS:
            entry["top"].append(
                [
                    round(calls, 3),
                    round(ms, 4),
                    round(row["plans"] / per, 3),
                    round(plan_ms, 4),
                    query[:160],
                ]
            )
    for entry in out.values():
        for key in ("exec_ms", "plan_ms", "plans"):
            entry[key] = round(entry[key], 3)
        entry["statements"] = round(entry["statements"], 2)
        entry["commits"] = round(entry["commits"], 2)
    return out


# -- the stack ---------------------------------------------------------------------------------


def infra_pids(stack: Stack) -> dict[str, int]:
    found = {"postgres": stack.postgres.pid, "kafka": stack.kafka.pid if stack.kafka else None}
    return {name: pid for name, pid in found.items() if pid}


def postgres_cpu_by_process(pid: int) -> dict[str, float]:
    """PostgreSQL's CPU seconds by process kind: its backends by database role (the services'
    roles; the bench's own reads as the server's owner role), its background processes
    (WAL writer, checkpointer, autovacuum...) by name, the postmaster as `postmaster`."""
    out: dict[str, float] = {}
    for child, used in tree_cpu_seconds(pid).items():
        if child == pid:
            out["postmaster"] = used
            continue
        try:
            words = " ".join(psutil.Process(child).cmdline()).removeprefix("postgres: ").split()
        except psutil.NoSuchProcess:
            continue
        # A backend's title is "<role> <database> <host(port)> <state>".
        kind = words[0] if len(words) >= 3 and "(" in words[2] else " ".join(words[:2])
        out[kind] = out.get(kind, 0.0) + used
    return out


class BesideCpu:
    """CPU on the same cores outside the pipeline: the mailbox (the local stand-in for the
    email provider, which a deployment has elsewhere), this process (the load generator
    and the snapshot poller, its own threads only) and the whole machine (every process,
    the kernel's interrupts included)."""

    def __init__(self, stack: Stack) -> None:
        self.mailbox = stack.mailbox.pid if stack.mailbox is not None else None
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        out = {
            "load_generator": cpu_seconds(os.getpid()),
            "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        }
        if self.mailbox:
            out["mailbox"] = sum(tree_cpu_seconds(self.mailbox).values())
        return out

    def ms_per_lead(self, leads: int) -> dict[str, float]:
        after = self._read()
        return {
            name: round((after[name] - self.before.get(name, 0.0)) * 1000 / max(leads, 1), 2)
            for name in after
        }


async def loop_lag(samples: list[float], stop: asyncio.Event, period: float = 0.005) -> None:
    """How late this process's event loop runs a timer, in ms, every `period` until `stop`:
    the load generator's own delay (a post sent late, a snapshot update read late), which
    every latency of the step includes."""
    while not stop.is_set():
        due = time.perf_counter() + period
        await asyncio.sleep(period)
        samples.append((time.perf_counter() - due) * 1000)


async def stack_step(
    stack: Stack, intake: RawClient, rate: int, seconds: float, run_id: str, *, poll: bool
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {stack.admin_api_key}", "Content-Type": "application/json"}
    reporting = RawClient(stack.url("reporting"), max_connections=2)
    total, interest, stop = Visible(), Visible(), asyncio.Event()
    poller = watch_snapshot(reporting, auth, total, interest, stop, poll=poll)
    pids = {name: proc.pid for name, proc in stack.services.items()}
    pids |= infra_pids(stack)
    try:
        if await wait_reaching(total, 0, 30) is None:
            raise RuntimeError("the snapshot never answered")
        calibration = calibration_ms()
        base_total, base_interest = total.latest(), interest.latest()
        cpu_before = {name: tree_cpu_seconds(pid) for name, pid in pids.items() if pid}
        beside = BesideCpu(stack)
        postgres_before = postgres_cpu_by_process(stack.postgres.pid) if stack.postgres.pid else {}
        kafka_pid = pids.get("kafka")
        kafka_threads_before = thread_cpu_seconds(kafka_pid) if kafka_pid else {}
        hops_before = await hop_buckets(stack)
        await statements_reset(stack)
        statuses: Counter[str] = Counter()
        lead_sent: list[float] = []
        activity_sent: list[float] = []
        tasks: list[asyncio.Task[None]] = []

        async def lead(i: int, due: float) -> None:
            body = json.dumps({"email": f"cap-{run_id}-{rate}-{i}@example.com"}).encode()
            raw = intake.build("POST", FORM_PATH, body, {"Content-Type": "application/json"})
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                status, answer = await intake.request(raw)
                statuses[str(status)] += 1
                if status != 202:
                    return
                data = json.loads(answer)
                if not data.get("new_lead", True):
                    return
                lead_sent.append(due)
                await asyncio.sleep(max(due + ACTIVITY_AFTER_S - time.perf_counter(), 0))
                sent_at = time.perf_counter()
                now = datetime.now(UTC).isoformat()
                activity = {"type": "page_view", "lead_id": data["lead_id"], "occurred_at": now}
                payload = json.dumps({"activities": [activity]}).encode()
                status, _ = await intake.request(
                    intake.build("POST", "/v1/activities", payload, auth)
                )
                if status in (200, 202):
                    activity_sent.append(sent_at)

        count = int(rate * seconds)
        lags: list[float] = []
        lagging = asyncio.Event()
        lag_monitor = asyncio.create_task(loop_lag(lags, lagging))
        start = time.perf_counter()
        for i in range(count):
            due = start + i / rate
            await asyncio.sleep(max(due - time.perf_counter(), 0))
            tasks.append(asyncio.create_task(lead(i, due)))
        await asyncio.gather(*tasks)
        step_end = time.perf_counter()
        lagging.set()
        await lag_monitor
        backlog = (base_total + len(lead_sent) - total.latest()) + (
            base_interest + len(activity_sent) - interest.latest()
        )
        reached_total = await wait_reaching(total, base_total + len(lead_sent), GIVE_UP_DRAIN_S)
        reached_interest = await wait_reaching(
            interest, base_interest + len(activity_sent), GIVE_UP_DRAIN_S
        )
        drain = (
            max(reached_total, reached_interest) - step_end
            if reached_total is not None and reached_interest is not None
            else None
        )
        hops = hop_quantiles(hops_before, await hop_buckets(stack))
        settled_s = await settle(stack)
        leads = max(len(lead_sent), 1)
        cpu = {
            name: tree_cpu_used(before, tree_cpu_seconds(pids[name])) * 1000 / leads
            for name, before in cpu_before.items()
        }
        beside_cpu = beside.ms_per_lead(leads)
        postgres_after = postgres_cpu_by_process(stack.postgres.pid) if stack.postgres.pid else {}
        postgres_kinds = {
            kind: round((used - postgres_before.get(kind, 0.0)) * 1000 / leads, 2)
            for kind, used in sorted(postgres_after.items(), key=lambda kv: -kv[1])
            if used - postgres_before.get(kind, 0.0) > 0
        }
        kafka_threads = (
            thread_cpu_used(kafka_threads_before, thread_cpu_seconds(kafka_pid))
            if kafka_pid
            else {}
        )
        statements = await statements_read(stack, leads)
    finally:
        stop.set()
        await poller
        await reporting.close()
    result = summarize(
        rate,
        latencies_ms(lead_sent, base_total, total),
        latencies_ms(activity_sent, base_interest, interest),
        len(lead_sent),
        len(activity_sent),
        max(backlog, 0),
        max(drain, 0.0) if drain is not None else None,
        cpu,
    )
    result["form_statuses"] = dict(statuses)
    result["snapshot_followed_by"] = "poll" if poll else "stream"
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    result["calibration_ms"] = calibration
    result["load_generator_lag_ms"] = {
        name: round(percentile(lags, q), 1) if lags else None
        for name, q in (("p50", 50), ("p99", 99), ("max", 100))
    }
    result["settled_after_s"] = round(settled_s, 2)
    result["beside_cpu_ms_per_lead"] = beside_cpu
    result["postgres_cpu_ms_per_lead"] = postgres_kinds
    result["kafka_threads_ms_per_lead"] = {
        k: round(v * 1000 / max(len(lead_sent), 1), 2)
        for k, v in sorted(kafka_threads.items(), key=lambda kv: -kv[1])
    }
    result["statements_per_lead"] = {k: v["statements"] for k, v in statements.items()}
    result["commits_per_lead"] = {k: v["commits"] for k, v in statements.items()}
    result["exec_ms_per_lead"] = {k: v["exec_ms"] for k, v in statements.items()}
    result["plans_per_lead"] = {k: v["plans"] for k, v in statements.items()}
    result["plan_ms_per_lead"] = {k: v["plan_ms"] for k, v in statements.items()}
    result["top_statements_per_lead"] = {k: v["top"] for k, v in statements.items()}
    result["hops"] = hops
    return result


async def idle_cpu(
    stack: Stack, seconds: float, *, polled: bool = False, poll: bool = False
) -> dict[str, Any]:
    """Each process's CPU milliseconds per second while nothing is sent (after the warm-up):
    what polls, heartbeats and timers cost with no lead in flight. `polled`: with the
    steps' snapshot watcher running all the while (what its reads cost, alone: a GET every
    20 ms with `poll`, else the stream, which reads nothing while nothing changes)."""
    pids = {name: proc.pid for name, proc in stack.services.items()} | infra_pids(stack)
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items() if pid}
    kafka_pid = pids.get("kafka")
    threads_before = thread_cpu_seconds(kafka_pid) if kafka_pid else {}
    reporting = RawClient(stack.url("reporting"), max_connections=2)
    auth = {"Authorization": f"Bearer {stack.admin_api_key}"}
    stop = asyncio.Event()
    await statements_reset(stack)
    started = time.perf_counter()
    if polled:
        poller = watch_snapshot(reporting, auth, Visible(), Visible(), stop, poll=poll)
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    stop.set()
    if polled:
        await poller
    await reporting.close()
    statements = await statements_read(stack, elapsed)
    out: dict[str, Any] = {
        name: round(tree_cpu_used(b, tree_cpu_seconds(pids[name])) * 1000 / elapsed, 2)
        for name, b in before.items()
    }
    if kafka_pid:
        used = thread_cpu_used(threads_before, thread_cpu_seconds(kafka_pid))
        out["kafka_threads"] = {
            k: round(v * 1000 / elapsed, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        }
    out["statements_per_s"] = {k: v["statements"] for k, v in statements.items()}
    out["top_statements_per_s"] = {k: v["top"] for k, v in statements.items()}
    if polled:
        out["snapshot_reads_per_s"] = round(reporting.answered / elapsed, 1)
    return out


async def measure_stack(
    stack: Stack, steps: list[int], seconds: float, idle_s: float = 0.0, *, poll: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    results: list[dict[str, Any]] = []
    intake = RawClient(stack.url("lead-intake"), max_connections=128)
    run_id = secrets.token_hex(3)
    idle: dict[str, Any] | None = None
    try:
        await stack_step(stack, intake, 5, 5, run_id + "w", poll=poll)  # warm-up, not reported
        if idle_s > 0:
            await asyncio.sleep(2)  # the warm-up's last events settle
            idle = await idle_cpu(stack, idle_s)
            log(f"idle CPU ms per second over {idle_s:.0f}s: {json.dumps(idle)}")
            idle["with_snapshot_polls"] = await idle_cpu(stack, idle_s, polled=True, poll=poll)
            log(f"the same with the snapshot poller: {json.dumps(idle['with_snapshot_polls'])}")
        for n, rate in enumerate(steps):
            # A step's own emails: a rate listed twice still sends new leads.
            step = await stack_step(stack, intake, rate, seconds, f"{run_id}s{n}", poll=poll)
            log(f"stack {rate}/s: {json.dumps(step)}")
            results.append(step)
            if step["drain_s"] is None:
                break  # not drained within GIVE_UP_DRAIN_S: higher rates only pile up
            await asyncio.sleep(2)
    finally:
        await intake.close()
    return results, idle


async def measure(
    steps: list[int], seconds: float, baseline: bool, idle_s: float = 0.0, *, poll: bool = False
) -> dict[str, Any]:
    """The stack's steps, then (its services stopped) the baseline's on the same PostgreSQL
    and Kafka."""
    async with running_stack(postgres_settings=POSTGRES_SETTINGS) as stack:
        measured, idle = await measure_stack(stack, steps, seconds, idle_s, poll=poll)
        base = await baseline_steps(stack, steps, seconds) if baseline else []
    return {"steps": measured, "baseline_steps": base, "idle_cpu_ms_per_s": idle}


# -- the baseline: bare aiokafka and asyncpg -------------------------------------------------

# One stage of the minimal durable pipeline, run as its own process. argv: role (first,
# middle, last), dsn, bootstrap, topic in, topic out. `first` reads "<lead id> <send time>"
# lines on stdin; the last writes each lead's commit time into its table.
STAGE = r"""
import asyncio, sys, time, uuid
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

role, dsn, bootstrap, topic_in, topic_out, table = sys.argv[1:7]

async def main():
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (lead_id uuid PRIMARY KEY, sent double precision,"
        " committed double precision)")
    producer = None
    if role != "last":
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
    async def keep(lead, sent):
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2, $3)"
                               " ON CONFLICT DO NOTHING", uuid.UUID(lead), sent, time.time())
    if role == "first":
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)
        while line := await reader.readline():
            lead, sent = line.decode().split()
            await keep(lead, float(sent))
            await producer.send_and_wait(topic_out, f"{lead} {sent}".encode(), key=lead.encode())
        await producer.stop()
        return
    consumer = AIOKafkaConsumer(topic_in, bootstrap_servers=bootstrap, group_id=table,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    print("ready", flush=True)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    lead, sent = record.value.decode().split()
                    await keep(lead, float(sent))
                    if producer is not None:
                        await producer.send_and_wait(topic_out, record.value, key=record.key)
                    await consumer.commit({tp: record.offset + 1})
    finally:
        await consumer.stop()

asyncio.run(main())
"""


async def baseline_steps(stack: Stack, steps: list[int], seconds: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    # The services are stopped: the baseline has the cores to itself.
    for name in list(stack.services):
        stack.stop_service(name)
    dsn = stack.postgres.dsn
    bootstrap = stack.kafka_bootstrap
    tag = secrets.token_hex(3)
    topics = (f"bench.base.a.{tag}", f"bench.base.b.{tag}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]
        )
    finally:
        await admin.close()
    roles = [
        ("last", topics[1], "-", f"base_c_{tag}"),
        ("middle", topics[0], topics[1], f"base_b_{tag}"),
        ("first", "-", topics[0], f"base_a_{tag}"),
    ]
    procs: dict[str, asyncio.subprocess.Process] = {}
    for role, topic_in, topic_out, table in roles:
        procs[role] = await asyncio.create_subprocess_exec(
            *[sys.executable, "-c", STAGE, role, dsn, bootstrap, topic_in, topic_out, table],
            stdin=asyncio.subprocess.PIPE if role == "first" else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout = procs[role].stdout
        assert stdout is not None
        ready = await asyncio.wait_for(stdout.readline(), 60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"baseline stage {role} did not start")
    conn = await asyncpg.connect(dsn)
    last_table = roles[0][3]
    pids = {f"stage-{role}": p.pid for role, p in procs.items()}
    pids |= infra_pids(stack)
    first = procs["first"]
    assert first.stdin is not None
    try:
        for rate in steps:
            cpu_before = {n: tree_cpu_seconds(pid) for n, pid in pids.items() if pid}
            count = int(rate * seconds)
            start = time.time()
            for i in range(count):
                due = start + i / rate
                await asyncio.sleep(max(due - time.time(), 0))
                first.stdin.write(f"{uuid.uuid4()} {due}\n".encode())
                await first.stdin.drain()
            step_end = time.time()
            drain_deadline = step_end + GIVE_UP_DRAIN_S
            visible = 0
            backlog = None
            while time.time() < drain_deadline:
                visible = await conn.fetchval(
                    f"SELECT count(*) FROM {last_table} WHERE sent >= $1",  # noqa: S608
                    start - 0.001,
                )
                if backlog is None:
                    backlog = count - visible
                if visible >= count:
                    break
                await asyncio.sleep(POLL_PERIOD_S)
            rows = await conn.fetch(
                f"SELECT sent, committed FROM {last_table} WHERE sent >= $1",  # noqa: S608
                start - 0.001,
            )
            drained_at = max((r["committed"] for r in rows), default=step_end)
            drain = drained_at - step_end if visible >= count else None
            cpu = {
                n: tree_cpu_used(before, tree_cpu_seconds(pids[n])) * 1000 / max(count, 1)
                for n, before in cpu_before.items()
            }
            lat = [(r["committed"] - r["sent"]) * 1000 for r in rows]
            step = summarize(rate, lat, [], count, 0, backlog or 0, max(drain or 0, 0), cpu)
            if drain is None:
                step["drain_s"] = None
                step["sustained"] = False
            log(f"baseline {rate}/s: {json.dumps(step)}")
            results.append(step)
            if drain is None:
                break
            await asyncio.sleep(2)
    finally:
        first.stdin.close()
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        await conn.close()
    return results


def all_steps(steps: str, extra: str = "") -> list[int]:
    """The rates of `--steps` as given (a rate listed twice is measured twice), with each rate
    of `--extra-steps` not already there put before the first step above it: an extra rate is
    measured in its place in the series (the stack's and the baseline's), so the capacity rule
    (the highest of the sustained steps from the first) reads it as any other."""
    rates = [int(r) for r in steps.split(",") if r.strip()]
    for rate in sorted({int(r) for r in extra.split(",") if r.strip()}):
        if rate in rates:
            continue
        above = [i for i, r in enumerate(rates) if r > rate]
        rates.insert(above[0] if above else len(rates), rate)
    if not rates or min(rates) <= 0:
        raise ValueError("steps are positive rates, e.g. 10,20,40")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--extra-steps",
        default="",
        metavar="RATES",
        help="more rates to try among the steps, e.g. 60,120 (the capacity between two steps)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first measure each process's CPU per second with no load, for SECONDS, then"
        " the same with only the steps' snapshot poller running (what its reads cost)",
    )
    parser.add_argument(
        "--poll",
        action="store_true",
        help="follow the snapshot by a GET every 20 ms instead of its live stream",
    )
    args = parser.parse_args()
    steps = all_steps(args.steps, args.extra_steps)
    measured = asyncio.run(
        measure(steps, args.seconds, not args.skip_baseline, args.idle, poll=args.poll)
    )
    stack, base = measured["steps"], measured["baseline_steps"]
    result: dict[str, Any] = {
        "idle_cpu_ms_per_s": measured["idle_cpu_ms_per_s"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "steps": stack,
        "baseline_steps": base,
        "sustained_capacity": capacity(stack),
        "baseline_sustained_capacity": capacity(base) if base else None,
    }
    if base:
        result["capacity_ratio"] = (
            round(result["sustained_capacity"] / result["baseline_sustained_capacity"], 3)
            if result["baseline_sustained_capacity"]
            else None
        )
        by_rate = {s["rate"]: s for s in base}
        result["p99_ratio_by_rate"] = {
            s["rate"]: round(
                s["form_to_snapshot_p99_ms"] / by_rate[s["rate"]]["form_to_snapshot_p99_ms"], 2
            )
            for s in stack
            if s["rate"] in by_rate
            and s["form_to_snapshot_p99_ms"]
            and by_rate[s["rate"]]["form_to_snapshot_p99_ms"]
        }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"pipeline-capacity-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"sustained capacity: {result['sustained_capacity']} leads/s")
    if base:
        print(
            f"baseline (bare aiokafka + asyncpg) sustained capacity: "
            f"{result['baseline_sustained_capacity']} leads/s; "
            f"ratio {result.get('capacity_ratio')}"
        )


if __name__ == "__main__":
    main()
