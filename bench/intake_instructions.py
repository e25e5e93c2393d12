"""Intake's work per form post in CPU instructions, this tree against an earlier revision.

Wall-clock and CPU-time figures move by 10-30 % from run to run on a shared 2-core machine;
an instruction count does not. Each side runs lead-intake in-process (its real app, on a real
PostgreSQL and Kafka), posts through httpx's ASGI transport, under `valgrind --tool=callgrind`
(which counts instructions, whatever else the machine is doing). Each side runs twice, with a
short and a long series of posts: the difference divided by the extra posts is the work per
post, with startup, migrations and imports cancelled out. The client's share (httpx, the ASGI
transport) is in both sides alike.

The earlier revision is checked out into a temporary git worktree and run with this
virtualenv, its source folders first on PYTHONPATH.

`.venv/bin/python -m bench.intake_instructions [--baseline REV] [--posts 200] [--at-once 32]`
(needs valgrind: `apt-get install -y valgrind`; about 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, baseline_sides, callgrind_instructions, log

WARM_UP_POSTS = 100
SHORT_SERIES = 20
ADMIN_KEY = "bench-admin-key-0123456789abcdef0123"

# Runs inside the measured interpreter: migrate a fresh database, start the app's lifespan,
# make a form, post `n` leads one after the other. Only this tree's public names are used,
# so an earlier revision runs it too.
POSTER = """
import asyncio, json, sys
import httpx
from funnel_servicekit.cli import migrate
from lead_intake.app import MIGRATIONS, create_app
from lead_intake.settings import IntakeSettings

dsn, kafka, warm_up, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
KEY = sys.argv[5]
AT_ONCE = int(sys.argv[6]) if len(sys.argv) > 6 else 1

async def main():
    extra = {}
    if "search_index_key" in IntakeSettings.model_fields:
        extra["search_index_key"] = "b" * 32
    settings = IntakeSettings(
        database_url=dsn, kafka_bootstrap_servers=kafka, admin_api_key=KEY,
        environment="test", run_workers=False, rate_limit_per_ip="unlimited",
        rate_limit_per_form="unlimited", **extra,
    )
    await migrate(settings, MIGRATIONS)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.bench") as c:
            form = {"funnel_id": "digital-sales", "name": "Bench"}
            auth = {"Authorization": f"Bearer {KEY}"}
            answer = await c.put("/v1/forms/bench", json=form, headers=auth)
            assert answer.status_code in (200, 201), answer.text
            async def post(i):
                body = {"email": f"p{i}@example.com", "first_name": "Ann", "utm_source": "ads"}
                answer = await c.post("/v1/forms/bench/submissions", json=body)
                assert answer.status_code == 202, answer.text

            total = warm_up + n
            for start in range(0, total, AT_ONCE):
                await asyncio.gather(*(post(i) for i in range(start, min(start + AT_ONCE, total))))

asyncio.run(main())
"""


def _counted(
    env: dict[str, str], dsn: str, kafka: str, posts: int, work: Path, at_once: int = 1
) -> int:
    """Instructions of one interpreter posting `posts` leads after the warm-up."""
    script = work / "poster.py"
    script.write_text(POSTER)
    out = work / "callgrind.out"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(script),
            dsn,
            kafka,
            str(WARM_UP_POSTS),
            str(posts),
            ADMIN_KEY,
            str(at_once),
        ],
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the poster failed:\n{done.stderr[-3000:]}")
    out.unlink(missing_ok=True)
    return callgrind_instructions(done.stderr)


async def _databases(count: int) -> tuple[Any, list[str]]:
    from funnel_devstack.stack import Stack, StackPorts

    stack = Stack(
        Path(tempfile.mkdtemp(prefix="funnel-bench-insn-")),
        StackPorts.free(),
        partitions=1,
        fast_postgres=True,
    )
    await stack.start_infrastructure()
    return stack, [await stack.postgres.create_database("insn") for _ in range(count)]


def measure(baseline: str, posts: int, at_once: int = 1) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    stack, dsns = asyncio.run(_databases(4))
    per_post: dict[str, float] = {}
    try:
        with baseline_sides(baseline) as sides, tempfile.TemporaryDirectory() as work:
            for i, (name, env) in enumerate(sides.items()):
                kafka = stack.kafka_bootstrap
                short = _counted(env, dsns[2 * i], kafka, SHORT_SERIES, Path(work), at_once)
                long = _counted(
                    env, dsns[2 * i + 1], kafka, SHORT_SERIES + posts, Path(work), at_once
                )
                per_post[name] = (long - short) / posts
                log(f"{name}: {per_post[name]:,.0f} instructions per post")
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)
    ratio = per_post["this tree"] / per_post["baseline"]
    return {
        "baseline": baseline,
        "posts": posts,
        "posts_at_once": at_once,
        "instructions_per_post": per_post,
        "ratio_this_tree_to_baseline": round(ratio, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--posts", type=int, default=200, help="extra posts of the long series")
    parser.add_argument(
        "--at-once",
        type=int,
        default=1,
        help="posts sent together (1: one after the other; 32: concurrent posts, which "
        "group commit puts in shared transactions)",
    )
    args = parser.parse_args()
    result = measure(args.baseline, args.posts, args.at_once)
    print(json.dumps(result, indent=2))
    out = BENCH_DIR / "results" / "intake-instructions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"intake instructions per post: {result['ratio_this_tree_to_baseline']:.3f}x baseline")


if __name__ == "__main__":
    main()
