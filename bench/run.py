"""Run every benchmark on one fresh stack and write bench/results/ (JSON and Markdown).

`.venv/bin/python -m bench` or `.venv/bin/python bench/run.py` from the repository root.
Capture latency runs first, on a quiet stack; intake throughput second, since its load
leaves a backlog in the pipeline. The logs of the run are kept in bench/results/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import capture_latency, intake_throughput
from bench.common import REPO_ROOT, RESULTS_DIR, log_offsets, running_stack, scan_logs


def _git_revision() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


async def run_all(args: argparse.Namespace, logs_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_revision(),
        "host": {
            "python": platform.python_version(),
            "cpus": _cpu_count(),
            "platform": platform.platform(),
        },
    }
    async with running_stack(keep_logs_in=logs_dir) as stack:
        result["stack_up_seconds"] = round(time.perf_counter() - started, 1)
        offsets = log_offsets(stack.logs)
        result["capture_latency"] = await capture_latency.measure(
            stack, leads=args.leads, rate=args.rate, poll_period=args.poll_ms / 1000
        )
        result["log_problems_capture_latency"] = scan_logs(stack.logs, offsets)
        offsets = log_offsets(stack.logs)
        result["intake_throughput"] = await intake_throughput.measure(
            stack,
            rounds=args.rounds,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            generator=args.generator,
            single_commits=args.single_commits,
        )
        result["log_problems_intake_throughput"] = scan_logs(stack.logs, offsets)
    result["log_problems_whole_run"] = scan_logs(logs_dir)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _f(value: float, digits: int = 1) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def _range(values: list[float]) -> str:
    return f"{values[0]:.0f}-{values[1]:.0f}"


def markdown(result: dict[str, Any]) -> str:
    tp = result["intake_throughput"]
    cl = result["capture_latency"]
    drain = tp["pipeline_drain"]
    lines = [
        f"# Funnel benchmark, {result['started_at']} (git {result['git']})",
        "",
        f"Host: {result['host']['cpus']} CPUs, Python {result['host']['python']}; "
        f"stack up in {result['stack_up_seconds']} s; whole run {result['total_seconds']} s.",
        "",
        "## Intake throughput (ratio to a bare FastAPI app, same run)",
        "",
        f"Load generator: **{tp['generator']}** ({tp['generator_version']}), "
        f"{tp['connections']} connections, {tp['rounds']} rounds x {tp['seconds']} s "
        f"after {tp['warmup_seconds']} s warm-up, mirrored order; load average "
        f"{_range(tp['load_average_1m_range'])}.",
        "",
        "| target | req/s (median) | req/s min-max | latency p50 ms | latency p99 ms | non-202 "
        "| server CPU ms/req | server CPU share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| baseline (bare FastAPI) | {_f(tp['baseline_rps_median'])} | "
        f"{_range(tp['baseline_rps_range'])} | "
        f"{_f(tp['baseline_latency_ms_median']['p50'])} | "
        f"{_f(tp['baseline_latency_ms_median']['p99'])} | {tp['baseline_not_202']} | "
        f"{_f(tp['baseline_server_cpu_ms_per_request_median'], 2)} | "
        f"{_f(tp['baseline_server_cpu_share_median'], 2)} |",
        f"| lead-intake | {_f(tp['intake_rps_median'])} | {_range(tp['intake_rps_range'])} | "
        f"{_f(tp['intake_latency_ms_median']['p50'])} | "
        f"{_f(tp['intake_latency_ms_median']['p99'])} | {tp['intake_not_202']} | "
        f"{_f(tp['intake_server_cpu_ms_per_request_median'], 2)} | "
        f"{_f(tp['intake_server_cpu_share_median'], 2)} |",
        f"| naive durable (one INSERT + COMMIT) | {_f(tp['naive_durable_rps_median'])} | "
        f"{_range(tp['naive_durable_rps_range'])} | "
        f"{_f(tp['naive_durable_latency_ms_median']['p50'])} | "
        f"{_f(tp['naive_durable_latency_ms_median']['p99'])} | | "
        f"{_f(tp['naive_durable_server_cpu_ms_per_request_median'], 2)} | |",
        f"| **ratio intake / baseline** | **{_f(tp['ratio_intake_to_baseline'], 3)}** | | | | | "
        f"{_f(tp['ratio_intake_to_baseline_cpu_per_request'])}x | |",
        f"| **ratio intake / naive durable** (target >= 1.0) | "
        f"**{_f(tp['ratio_intake_to_naive_durable'], 3)}** | | | | | | |",
        "",
        "Runs: "
        + ", ".join(f"{r['target']} {r['rps']:.0f}" for r in tp["runs"])
        + f". Socket errors on intake: {tp['intake_socket_errors']}.",
        "",
        f"Pipeline after the load: {drain['seen_total']}/{drain['expected_total']} accepted "
        f"leads in the snapshot after {drain['seconds']} s "
        f"({'drained' if drain['drained'] else 'NOT drained within the limit'}"
        f"{'; MORE in the snapshot than intake committed' if drain.get('overcounted') else ''}).",
        "",
        "## Capture latency (form post -> lead in the reporting snapshot)",
        "",
        f"{cl['leads']} leads at {cl['rate_per_second']}/s (achieved "
        f"{_f(cl['achieved_rate_per_second'])}/s), snapshot polled every "
        f"{_f(cl['poll_period_ms'], 0)} ms; {cl['visible']}/{cl['accepted_new_leads']} visible; "
        f"statuses {cl['statuses']}.",
        "",
        "| figure | p50 ms | p99 ms | p50 as x one post |",
        "| --- | ---: | ---: | ---: |",
        f"| post -> visible in snapshot | {_f(cl['pipeline_ms']['p50'])} | "
        f"{_f(cl['pipeline_ms']['p99'])} | **{_f(cl['ratio_pipeline_p50_to_post_p50'])}x** |",
        f"| baseline: one form post (202) | {_f(cl['post_202_ms']['p50'])} | "
        f"{_f(cl['post_202_ms']['p99'])} | 1.0x |",
        f"| snapshot read (poll round trip) | {_f(cl['snapshot_read_ms']['p50'])} | "
        f"{_f(cl['snapshot_read_ms']['p99'])} | |",
        "",
        f"Pipeline p99 = {_f(cl['ratio_pipeline_p99_to_post_p50'])}x one post's p50.",
        "",
        "## Warnings and errors in the logs",
        "",
    ]
    problems = result["log_problems_whole_run"]
    if not problems:
        lines.append("None.")
    for name, info in problems.items():
        levels = ", ".join(f"{k} {v}" for k, v in sorted(info["levels"].items()))
        lines.append(
            f"- `{name}`: {levels or 'no levelled lines'}; tracebacks {info['tracebacks']}"
        )
        for top in info["top"][:3]:
            lines.append(f"  - {top['count']} x `{top['message'][:160]}`")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Funnel benchmarks (figures, not pass/fail).")
    intake_throughput.add_arguments(parser)
    capture_latency.add_arguments(parser)
    args = parser.parse_args(argv)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs_dir = RESULTS_DIR / "logs" / stamp
    result = asyncio.run(run_all(args, logs_dir))
    result["logs_dir"] = str(logs_dir.relative_to(REPO_ROOT))
    text = markdown(result)
    (RESULTS_DIR / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / f"{stamp}.md").write_text(text)
    shutil.copyfile(RESULTS_DIR / f"{stamp}.json", RESULTS_DIR / "latest.json")
    shutil.copyfile(RESULTS_DIR / f"{stamp}.md", RESULTS_DIR / "latest.md")
    print(text)
    print(f"Written: bench/results/{stamp}.json, bench/results/{stamp}.md, logs in {logs_dir}")


if __name__ == "__main__":
    main()
