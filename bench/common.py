"""What the benchmarks share: a whole local stack, simple statistics, the log scan."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from funnel_devstack.ports import free_port
from funnel_devstack.postgres import PostgresServer
from funnel_devstack.stack import Stack, StackPorts
from funnel_servicekit import migrations

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
FORM_PATH = "/v1/forms/demo/submissions"
SNAPSHOT_PATH = "/v1/funnels/digital-sales/snapshot"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def source_path(root: Path) -> str:
    """PYTHONPATH of a checkout's own packages (every lib's and service's `src`)."""
    folders = sorted((root / "libs").glob("*/src")) + sorted((root / "services").glob("*/src"))
    return os.pathsep.join(str(f) for f in folders)


def callgrind_instructions(log_text: str) -> int:
    """The instruction count `valgrind --tool=callgrind` reports on its standard error."""
    found = re.search(r"Collected : (\d+)", log_text)
    if found is None:
        raise RuntimeError(f"callgrind gave no count:\n{log_text[-2000:]}")
    return int(found.group(1))


def instructions_per_item(
    sides: dict[str, dict[str, str]],
    run: Callable[[dict[str, str], int], str],
    items: int,
    passes: int,
    unit: str,
) -> dict[str, float]:
    """Each side's instructions per item under callgrind: `run(env, extra_passes)` runs the
    script over `items` once, then `passes` more times, and returns callgrind's standard
    error; the difference divided by the extra items cancels start-up and imports."""
    per_item: dict[str, float] = {}
    for name, env in sides.items():
        once = callgrind_instructions(run(env, 0))
        more = callgrind_instructions(run(env, passes))
        per_item[name] = round((more - once) / (items * passes))
        log(f"{name}: {per_item[name]:,.0f} instructions per {unit}")
    return per_item


@contextlib.contextmanager
def baseline_sides(baseline: str) -> Iterator[dict[str, dict[str, str]]]:
    """The environments of the two sides of a comparison with an earlier revision:
    "baseline" (that revision checked out into a temporary git worktree, removed afterwards)
    and "this tree", each running this virtualenv with its own sources first."""
    checkout = Path(tempfile.mkdtemp(prefix="funnel-baseline-"))
    git = ["git", "-C", str(REPO_ROOT)]
    try:
        subprocess.run(
            [*git, "worktree", "add", "--detach", str(checkout), baseline],
            check=True,
            capture_output=True,
        )
        yield {
            "baseline": {**os.environ, "PYTHONPATH": source_path(checkout)},
            "this tree": {**os.environ, "PYTHONPATH": source_path(REPO_ROOT)},
        }
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(checkout)], check=False)
        shutil.rmtree(checkout, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_stack(
    keep_logs_in: Path | None = None, *, postgres_settings: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """A fresh whole stack (real PostgreSQL and Kafka, four services) on free ports.

    The data folder lives outside pytest-style tmp dirs (PostgreSQL runs as its own user and
    must reach it) and is removed afterwards; the logs are copied to `keep_logs_in` first.
    """
    root = _fresh_root()
    stack = Stack(root, StackPorts.free(), fast_postgres=False, postgres_settings=postgres_settings)
    started = time.perf_counter()
    log(f"starting the stack in {root}")
    try:
        await stack.up()
        log(f"stack up in {time.perf_counter() - started:.1f}s")
        yield stack
    finally:
        stack.down()
        _keep_logs(stack, keep_logs_in)
        shutil.rmtree(root, ignore_errors=True)


def _fresh_root(prefix: str = "funnel-bench-") -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach its folder
    return root


@contextlib.asynccontextmanager
async def migrated_postgres(
    schema: str, migrations_dir: Path, *, name: str, setup_sql: Sequence[str] = ()
) -> AsyncIterator[PostgresServer]:
    """A fresh PostgreSQL of its own (no Kafka, no services) with one service's migrations
    applied to `schema`, after `setup_sql` (server settings); removed afterwards."""
    root = _fresh_root(f"funnel-bench-{name}-")
    server = PostgresServer(root / "postgres", free_port(), fast=False)
    server.start()
    try:
        await server.wait_ready()
        conn = await asyncpg.connect(server.dsn)
        try:
            for statement in setup_sql:
                await conn.execute(statement)
            await migrations.apply(conn, schema, migrations_dir)
        finally:
            await conn.close()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def timed_ms(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    """Milliseconds each of `runs` awaits of `call` took, one after the other."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def latency_stats(ms: Sequence[float], digits: int = 2) -> dict[str, float]:
    """p50 and p95 (nearest rank) of timings in ms, and how many there were."""
    return {
        "p50": round(percentile(ms, 50), digits),
        "p95": round(percentile(ms, 95), digits),
        "runs": len(ms),
    }


def _keep_logs(stack: Stack, target: Path | None) -> None:
    if target is None:
        return
    target.mkdir(parents=True, exist_ok=True)
    for item in stack.logs.glob("*.log"):
        (target / item.name).write_bytes(item.read_bytes()[-5_000_000:])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


_TEXT_LEVEL = re.compile(r"\b(FATAL|PANIC|CRITICAL|ERROR|WARN(?:ING)?)\b")


def scan_logs(logs_dir: Path, since_bytes: dict[str, int] | None = None) -> dict[str, Any]:
    """Count warning-or-worse lines per log file, with the most frequent messages.

    JSON lines (the services) are read by their `level`; other lines (PostgreSQL, Kafka) by a
    level word. `since_bytes` (from `log_offsets`) limits the scan to what was written since.
    """
    report: dict[str, Any] = {}
    for path in sorted(logs_dir.glob("*.log")):
        start = (since_bytes or {}).get(path.name, 0)
        with path.open("rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
        levels: Counter[str] = Counter()
        messages: Counter[str] = Counter()
        tracebacks = 0
        for line in text.splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            level, message = _level_of(line)
            if level is None:
                continue
            levels[level] += 1
            messages[f"{level}: {message[:200]}"] += 1
        if levels or tracebacks:
            report[path.name] = {
                "levels": dict(levels),
                "tracebacks": tracebacks,
                "top": [{"count": n, "message": m} for m, n in messages.most_common(5)],
            }
    return report


def _level_of(line: str) -> tuple[str | None, str]:
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            level = str(record.get("level", "")).upper()
            if level in {"WARNING", "ERROR", "CRITICAL"}:
                message = str(record.get("message", ""))
                if record.get("exc_info"):
                    last = str(record["exc_info"]).strip().splitlines()[-1:]
                    message += f" [{last[0] if last else ''}]"
                return level, f"{record.get('logger', '')}: {message}"
            return None, ""
    match = _TEXT_LEVEL.search(line)
    if match is None:
        return None, ""
    level = match.group(1)
    level = {"WARN": "WARNING", "FATAL": "CRITICAL", "PANIC": "CRITICAL"}.get(level, level)
    # Drop leading timestamps so that repeats group together.
    return level, line[match.start() :].strip()


def log_offsets(logs_dir: Path) -> dict[str, int]:
    """The current size of every log file, to scan only what comes after."""
    return {p.name: p.stat().st_size for p in logs_dir.glob("*.log")}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its children (PostgreSQL: one per backend)."""
    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[proc.pid] = float(times.user + times.system)
    return out


def tree_cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    # A process born during the run counts from zero; one gone before the end is missed.
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())
