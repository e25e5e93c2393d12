"""Intake throughput: lead-intake's form posts per second as ratios to two baselines.

The baselines: a bare FastAPI app (`baseline_app.py`, no database), and a naive durable
endpoint (`naive_durable_app.py`: the same app plus one INSERT and its COMMIT per request, on
the same PostgreSQL). Every target is one uvicorn process on this host, loaded by the same
generator (wrk, else the asyncio/httpx fallback in its own process) with the same connections,
each post carrying a unique email. Runs alternate in mirrored order (bare, naive, intake, then
intake, naive, bare, ...), each after its own warm-up, and the report gives medians,
intake/naive durable and intake/bare.

Run alone: `.venv/bin/python -m bench.intake_throughput [--intake-alone]` (starts its own stack;
`--intake-alone` stops the services after intake first, so the figure is intake with its own
dependencies, not intake with the whole pipeline sharing the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_DIR,
    FORM_PATH,
    SNAPSHOT_PATH,
    cpu_seconds,
    log,
    median,
    running_stack,
    tree_cpu_seconds,
    tree_cpu_used,
)
from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack


def pick_generator(requested: str = "auto") -> str:
    if requested in ("auto", "wrk") and shutil.which("wrk"):
        return "wrk"
    if requested == "wrk":
        log("wrk not found (apt-get install -y wrk); falling back to httpx")
    return "httpx"


def generator_version(generator: str) -> str:
    if generator == "wrk":
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()
        return first[0] if first else "wrk"
    return f"httpx {httpx.__version__} (asyncio, separate process)"


async def _load(
    generator: str,
    url: str,
    seconds: int,
    connections: int,
    threads: int,
    nonce: str,
    server_pid: int,
    dependency_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    if generator == "wrk":
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH_DIR / "post.lua"),
            url,
            "--",
            nonce,
        ]
    else:
        cmd = [
            sys.executable,
            str(BENCH_DIR / "httpx_load.py"),
            url,
            "--duration",
            str(seconds),
            "--connections",
            str(connections),
            "--nonce",
            nonce,
        ]
    cpu_before = cpu_seconds(server_pid)
    dependency_pids = dependency_pids or {}
    deps_before = {name: tree_cpu_seconds(pid) for name, pid in dependency_pids.items()}
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    cpu_used = cpu_seconds(server_pid) - cpu_before
    deps_used = {
        name: tree_cpu_used(before, tree_cpu_seconds(dependency_pids[name]))
        for name, before in deps_before.items()
    }
    text = out.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            seconds_run = result["duration_us"] / 1e6
            ok = int(result["statuses"].get("202", 0))
            socket_errors = sum(result["errors"][k] for k in ("connect", "read", "write"))
            socket_errors += result["errors"]["timeout"]
            # Only 202s count: a 503 from load shedding (or any error) is not a lead taken in.
            result["rps"] = ok / seconds_run if seconds_run else 0.0
            result["answers_per_s"] = result["requests"] / seconds_run if seconds_run else 0.0
            result["accepted_202"] = ok
            result["not_202"] = result["requests"] - ok
            result["socket_errors"] = socket_errors
            # how busy the one server process was: 1.0 = a whole core for the whole run
            result["server_cpu_share"] = cpu_used / seconds_run if seconds_run else 0.0
            result["server_cpu_ms_per_request"] = (
                cpu_used * 1000 / result["requests"] if result["requests"] else 0.0
            )
            # Per lead taken in: a shed 503 costs next to nothing and would dilute the figure.
            result["server_cpu_ms_per_202"] = cpu_used * 1000 / ok if ok else 0.0
            # What each request cost the server's own dependencies (PostgreSQL, Kafka).
            result["dependency_cpu_ms_per_request"] = {
                name: used * 1000 / result["requests"] if result["requests"] else 0.0
                for name, used in deps_used.items()
            }
            return result
    raise RuntimeError(f"load generator gave no result ({proc.returncode}):\n{text[-2000:]}")


def start_baseline(
    port: int, log_file: Path, app: str = "baseline_app.py", *args: str
) -> subprocess.Popen[bytes]:
    """A baseline app as its own uvicorn process, like a service's `serve`."""
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(BENCH_DIR / app), "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


async def snapshot_total(stack: Stack) -> int:
    headers = {"Authorization": f"Bearer {stack.admin_api_key}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        response = await client.get(stack.url("reporting") + SNAPSHOT_PATH)
        response.raise_for_status()
        return int(response.json()["total"])


async def measure(
    stack: Stack,
    *,
    rounds: int = 3,
    seconds: int = 10,
    warmup: int = 2,
    connections: int = 32,
    threads: int = 1,
    generator: str = "auto",
    drain_timeout: float = 30,
    drain: bool = True,
    single_commits: bool = False,
) -> dict[str, Any]:
    """Alternate the baselines' and intake's runs; return every run, the medians, the ratios."""
    generator = pick_generator(generator)
    log(
        f"intake throughput: {generator}, {rounds} rounds x {seconds}s (+{warmup}s warm-up), "
        f"{connections} connections"
    )
    port, naive_port = free_port(), free_port()
    baseline = start_baseline(port, stack.logs / "bench-baseline.log")
    naive = start_baseline(
        naive_port,
        stack.logs / "bench-naive-durable.log",
        "naive_durable_app.py",
        "--dsn",
        stack.postgres.dsn,
    )
    urls = {
        "baseline": f"http://127.0.0.1:{port}{FORM_PATH}",
        "naive": f"http://127.0.0.1:{naive_port}{FORM_PATH}",
        "intake": stack.url("lead-intake") + FORM_PATH,
    }
    pids = {
        "baseline": baseline.pid,
        "naive": naive.pid,
        "intake": stack.services["lead-intake"].pid,
    }
    dependencies = {
        name: pid
        for name, pid in (("postgres", stack.postgres.pid), ("kafka", _kafka_pid(stack)))
        if pid is not None
    }
    run_id = secrets.token_hex(4)
    runs: list[dict[str, Any]] = []
    intake_accepted = 0
    targets = ["baseline", "naive", "intake"]
    if single_commits:
        # The same intake with group commit off (one transaction per post), restarted with
        # that setting before its runs and back without it before intake's.
        targets.append("intake_single")
        urls["intake_single"] = urls["intake"]
    running_single = False
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/readyz")
        await _wait_ready(f"http://127.0.0.1:{naive_port}/readyz")
        for r in range(rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for target in order:
                if single_commits and target.startswith("intake"):
                    if (target == "intake_single") != running_single:
                        running_single = target == "intake_single"
                        await _restart_intake(stack, single=running_single)
                    pids[target] = stack.services["lead-intake"].pid
                nonce = f"{run_id}-{target[0]}{target[-1]}{r}"
                warm = await _load(
                    generator, urls[target], warmup, connections, threads, nonce + "w", pids[target]
                )
                # The warm-up's last posts are still being committed when its generator has
                # closed their connections; started at once, the measured run's connections
                # came on top of them, past intake's 32 requests in flight, and its first
                # posts were shed (503, up to 300 in a round).
                await asyncio.sleep(WARM_UP_DRAIN_S)
                result = await _load(
                    generator,
                    urls[target],
                    seconds,
                    connections,
                    threads,
                    nonce + "m",
                    pids[target],
                    dependencies,
                )
                if target == "intake":
                    intake_accepted += warm["accepted_202"] + result["accepted_202"]
                result.update(target=target, round=r, warmup_not_202=warm["not_202"])
                result["load_average_1m"] = os.getloadavg()[0]
                runs.append(result)
                p50 = result["latency_us"]["p50"] / 1000
                others = {k: v for k, v in result.get("statuses", {}).items() if k != "202"}
                log(
                    f"  round {r} {target:8s} {result['rps']:8.1f} req/s  p50 {p50:.1f} ms  "
                    f"non-202 {result['not_202']}{f' {others}' if others else ''}  "
                    f"socket errors {result['socket_errors']}  "
                    f"CPU ms/202 {result['server_cpu_ms_per_202']:.2f}  "
                    f"load {result['load_average_1m']:.1f}"
                )
    finally:
        _stop(baseline)
        _stop(naive)
        if running_single:
            await _restart_intake(stack, single=False)

    def of(target: str, key: str) -> list[float]:
        return [float(run[key]) for run in runs if run["target"] == target]

    def lat(target: str, q: str) -> float:
        return median([run["latency_us"][q] / 1000 for run in runs if run["target"] == target])

    base_rps, intake_rps = median(of("baseline", "rps")), median(of("intake", "rps"))
    naive_rps = median(of("naive", "rps"))
    drained = await _drain(stack, drain_timeout) if drain else None
    log(
        f"  intake / naive durable: {intake_rps / naive_rps if naive_rps else float('nan'):.2f}x "
        f"(target >= 1.0x); intake / bare app: "
        f"{intake_rps / base_rps if base_rps else float('nan'):.3f}x "
        f"({intake_rps:.0f} / {naive_rps:.0f} / {base_rps:.0f} req/s)"
    )
    if single_commits:
        single_rps = median(of("intake_single", "rps"))
        log(
            f"  intake with group commit / with one commit per post: "
            f"{intake_rps / single_rps if single_rps else float('nan'):.2f}x "
            f"({intake_rps:.0f} / {single_rps:.0f} req/s)"
        )
    return {
        "generator": generator,
        "generator_version": generator_version(generator),
        "rounds": rounds,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "connections": connections,
        "threads": threads if generator == "wrk" else None,
        "baseline_rps_median": base_rps,
        "intake_rps_median": intake_rps,
        "baseline_rps_range": [min(of("baseline", "rps")), max(of("baseline", "rps"))],
        "intake_rps_range": [min(of("intake", "rps")), max(of("intake", "rps"))],
        "ratio_intake_to_baseline": intake_rps / base_rps if base_rps else float("nan"),
        "naive_durable_rps_median": naive_rps,
        "naive_durable_rps_range": [min(of("naive", "rps")), max(of("naive", "rps"))],
        "ratio_intake_to_naive_durable": intake_rps / naive_rps if naive_rps else float("nan"),
        "naive_durable_latency_ms_median": {"p50": lat("naive", "p50"), "p99": lat("naive", "p99")},
        "naive_durable_server_cpu_ms_per_request_median": median(
            of("naive", "server_cpu_ms_per_request")
        ),
        "naive_durable_dependency_cpu_ms_per_request_median": {
            name: median(
                [
                    float(run["dependency_cpu_ms_per_request"][name])
                    for run in runs
                    if run["target"] == "naive"
                ]
            )
            for name in dependencies
        },
        "intake_single_commits_rps_median": (
            median(of("intake_single", "rps")) if single_commits else None
        ),
        "intake_single_commits_server_cpu_ms_per_request_median": (
            median(of("intake_single", "server_cpu_ms_per_request")) if single_commits else None
        ),
        "intake_single_commits_latency_ms_median": (
            {"p50": lat("intake_single", "p50"), "p99": lat("intake_single", "p99")}
            if single_commits
            else None
        ),
        "server_cpu_ms_per_202_median": {
            target: median(of(target, "server_cpu_ms_per_202")) for target in targets
        },
        "load_average_1m_range": [
            min(float(run["load_average_1m"]) for run in runs),
            max(float(run["load_average_1m"]) for run in runs),
        ],
        "baseline_latency_ms_median": {
            "p50": lat("baseline", "p50"),
            "p99": lat("baseline", "p99"),
        },
        "intake_latency_ms_median": {"p50": lat("intake", "p50"), "p99": lat("intake", "p99")},
        "baseline_server_cpu_ms_per_request_median": median(
            of("baseline", "server_cpu_ms_per_request")
        ),
        "intake_server_cpu_ms_per_request_median": median(
            of("intake", "server_cpu_ms_per_request")
        ),
        "ratio_intake_to_baseline_cpu_per_request": (
            median(of("intake", "server_cpu_ms_per_request"))
            / median(of("baseline", "server_cpu_ms_per_request"))
        ),
        "intake_dependency_cpu_ms_per_request_median": {
            name: median(
                [
                    float(run["dependency_cpu_ms_per_request"][name])
                    for run in runs
                    if run["target"] == "intake"
                ]
            )
            for name in dependencies
        },
        # The CPU a post may cost, everything on this host included, for intake to reach
        # 0.35x the bare app: all cores for 0.35 x the bare app's rate.
        "cpu_ms_per_post_budget_at_0_35x": (
            (psutil.cpu_count() or 1) * 1000 / (0.35 * base_rps) if base_rps else float("nan")
        ),
        "baseline_server_cpu_share_median": median(of("baseline", "server_cpu_share")),
        "intake_server_cpu_share_median": median(of("intake", "server_cpu_share")),
        "intake_not_202": int(sum(of("intake", "not_202")) + sum(of("intake", "warmup_not_202"))),
        "intake_socket_errors": int(sum(of("intake", "socket_errors"))),
        "baseline_not_202": int(sum(of("baseline", "not_202"))),
        "intake_accepted_leads": intake_accepted,
        "pipeline_drain": drained,
        "runs": runs,
    }


SINGLE_COMMITS = {"FUNNEL_GROUP_COMMIT_MAX_SIZE": "1"}
WARM_UP_DRAIN_S = 0.5  # a warm-up's posts in flight finish (p50 about 40 ms) before a run
REQUIRED_WORK_POSTS = 5000


def required_work_cpu_ms_per_post(posts: int = REQUIRED_WORK_POSTS) -> float:
    """The CPU of the domain work a new person's post takes, in this process, with no HTTP,
    no database and no Kafka: the body parsed, checked and normalized (`parse_submission`),
    and the person made ready to write (`prepare_person`: ids, data key, search entries, the
    sealed `funnel.lead.captured.v2` and its outbox record), for bodies like the load's. The
    naive endpoint's whole request (HTTP, one INSERT and COMMIT) is the other side."""
    from lead_intake.common.blind_index import BlindIndex
    from lead_intake.forms.models import Form
    from lead_intake.leads.models import SubmissionOrigin
    from lead_intake.leads.service import prepare_person
    from lead_intake.submissions.models import parse_submission

    form = Form(id="bench", funnel_id="digital-sales", name="Bench", public_key="pk")
    index = BlindIndex(b"bench-search-index-key-0123456789")
    origin = SubmissionOrigin(form.id, "wrk", "127.0.0.0")
    bodies = [f'{{"email":"bench-required-{n}@example.com"}}'.encode() for n in range(posts + 500)]

    def one(body: bytes) -> None:
        now = datetime.now(UTC)
        sub = parse_submission(json.loads(body), form.settings, now=now)
        prepare_person(
            form, sub, origin, source="form", captured_at=now, index=index,
            outbox_source="lead-intake",
        )  # fmt: skip

    for body in bodies[:500]:  # warm: imports, caches, the first calls
        one(body)
    started = time.process_time()
    for body in bodies[500:]:
        one(body)
    return (time.process_time() - started) * 1000 / posts


async def _restart_intake(stack: Stack, *, single: bool) -> None:
    """lead-intake again, with group commit off (`single`) or as configured."""
    stack.stop_service("lead-intake")
    for name in SINGLE_COMMITS:
        stack.extra_env.pop(name, None)
    if single:
        stack.extra_env.update(SINGLE_COMMITS)
    stack.start_service("lead-intake")
    await stack.wait_service_ready("lead-intake")


def _kafka_pid(stack: Stack) -> int | None:
    return stack.kafka.pid if stack.kafka is not None else None


async def _committed_leads(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM intake.leads"))
    finally:
        await conn.close()


async def _drain(stack: Stack, timeout: float) -> dict[str, Any]:
    """After the load: how long until every committed lead shows in the snapshot (bounded).

    The target is intake's own count of leads, not the generator's count of 202s: requests
    still in flight when the generator stops are not counted by it but are committed. The
    count is read again on every check, since those requests may still be committing.
    """
    start = time.perf_counter()
    deadline = start + timeout
    while True:
        expected = await _committed_leads(stack)
        total = await snapshot_total(stack)
        if total >= expected or time.perf_counter() >= deadline:
            break
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)  # then look again: a total above the count means double counting
    expected, total = await _committed_leads(stack), await snapshot_total(stack)
    result = {
        "expected_total": expected,
        "seen_total": total,
        "drained": total >= expected,
        "overcounted": total > expected,
        "seconds": round(elapsed, 2),
        "timeout_seconds": timeout,
    }
    log(f"  pipeline drain after the load: {total}/{expected} visible after {elapsed:.1f}s")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument(
        "--single-commits",
        action="store_true",
        help="also run intake with group commit off (FUNNEL_GROUP_COMMIT_MAX_SIZE=1), "
        "restarted between its runs",
    )


DOWNSTREAM = ("stage-tracker", "notifier", "reporting")


async def _main(args: argparse.Namespace) -> None:
    async with running_stack() as stack:
        if args.intake_alone:
            # lead-intake with what it needs (PostgreSQL, Kafka, its relay), nothing after it.
            for service in DOWNSTREAM:
                stack.stop_service(service)
        result = await measure(
            stack,
            rounds=args.rounds,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            generator=args.generator,
            drain=not args.intake_alone,
            single_commits=args.single_commits,
        )
    result["intake_alone"] = args.intake_alone
    # What a post must do whatever the transport, beside what the naive endpoint does in all.
    result["required_work_cpu_ms_per_post"] = required_work_cpu_ms_per_post()
    naive_cpu = result.get("naive_durable_server_cpu_ms_per_request_median")
    log(
        f"  a post's domain work alone (no HTTP, database or Kafka): "
        f"{result['required_work_cpu_ms_per_post']:.3f} ms of CPU; the naive endpoint's whole "
        f"request: {naive_cpu if naive_cpu is not None else float('nan'):.3f} ms"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument(
        "--intake-alone",
        action="store_true",
        help="stop stage-tracker, notifier and reporting first (intake, its relay, Kafka, PG)",
    )
    asyncio.run(_main(parser.parse_args()))
