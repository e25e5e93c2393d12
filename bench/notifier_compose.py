"""The notifier's email per touch, building and sending, in CPU instructions and CPU time,
against a revision checked out beside this tree.

What the touch sender does for each claimed email touch once the claim has committed:
`touches.service.compose_email` (pick the locale's template, render it, build the message)
and `channels.smtp.SmtpChannel.send_batch` (hand it to the SMTP server, 50 a batch, on one
kept connection), to a local SMTP server in another process that accepts and discards (its
work is not counted). The touches alternate a transactional and a marketing template
(unsubscribe link, List-Unsubscribe headers) over the shipped locales (en, sv, zh-Hant,
ru...), names ASCII and not, each with its open pixel.

Each side (this tree, and the baseline revision checked out into a temporary git worktree,
run with this virtualenv and its source folders first on PYTHONPATH) runs:
- under `valgrind --tool=callgrind`, the touches composed and sent once, then four more
  times: the difference divided by the extra touches is the instructions per touch, imports
  and connecting cancelled out (a count a busy machine does not change);
- without valgrind, `--rounds` timed passes alternating with the other side: CPU µs per
  touch (process time of the sending process; medians).

`.venv/bin/python -m bench.notifier_compose [--baseline REV] [--touches 2000] [--rounds 5]`
(needs valgrind for the instruction counts; about two minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, baseline_sides, instructions_per_item
from bench.notifier_throughput import _start_sink
from funnel_devstack.ports import free_port

GRIND_TOUCHES = 200  # sent once, then GRIND_PASSES more times: the difference is the touches'
GRIND_PASSES = 4

# Runs in the measured interpreter. argv: port, touches, passes (timed: each prints µs per
# touch), passes untimed (the instruction counts: the same touches sent that many more times).
SENDER = """
import asyncio, sys, time, types
from datetime import UTC, datetime
from uuid import uuid4
from notifier.channels import Sent
from notifier.channels.smtp import SmtpChannel
from notifier.links import LinkSigner
from notifier.people.models import Contact
from notifier.playbooks.models.templates import shipped
from notifier.settings import NotifierSettings
from notifier.touches import service
from notifier.touches.models.due import DueTouch

port, n, passes, untimed = (int(a) for a in sys.argv[1:5])
settings = NotifierSettings(smtp_port=port)
links = LinkSigner.of(settings)
kinds = [("welcome", "transactional"), ("nurture-1", "marketing")]
names = ["Ada", "Åsa", "張偉", "Анна"]
now = datetime.now(UTC)
items = []
for i in range(n):
    template, kind = kinds[i % 2]
    locales = sorted(shipped(template))
    touch = DueTouch(
        id=uuid4(), lead_id=uuid4(), playbook=template, channel="email", kind=kind,
        category="marketing" if kind == "marketing" else None, template=template,
        funnel_id="digital-sales", stage="awareness", requires_stage=None, cancel_on=(),
        triggered_at=now, due_at=now, first_due_at=now, attempts=0, trace_context={},
    )
    contact = Contact(email=f"lead-{i}@example.com", first_name=names[i % len(names)],
                      locale=locales[(i // 2) % len(locales)], time_zone=None)
    items.append(service.Claimed(touch, types.SimpleNamespace(templates={}), contact))

async def once(channel):
    for start in range(0, n, 50):
        batch = [(item.touch.id, service.compose_email(item, links, settings))
                 for item in items[start:start + 50]]
        outcomes = await channel.send_batch(batch)
        assert all(isinstance(o, Sent) for o in outcomes.values()), outcomes

async def main():
    channel = SmtpChannel("127.0.0.1", port, 10.0)
    await once(channel)  # connected, templates compiled
    for _ in range(untimed):
        await once(channel)
    for _ in range(passes):
        start = time.process_time()
        await once(channel)
        print((time.process_time() - start) / n * 1e6, flush=True)
    await channel.close()

asyncio.run(main())
"""


def _run(
    env: dict[str, str],
    script: Path,
    port: int,
    n: int,
    passes: int,
    grind: Path | None,
    untimed: int = 0,
) -> str:
    argv = [sys.executable, str(script), str(port), str(n), str(passes), str(untimed)]
    if grind is not None:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={grind}", *argv]
    done = subprocess.run(
        argv, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the sender failed:\n{done.stderr[-3000:]}")
    return done.stdout if grind is None else done.stderr


def measure(baseline: str, touches: int, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {"baseline": baseline, "touches": touches}
    port = free_port()
    sink = _start_sink(port)
    load = [os.getloadavg()[0]]
    try:
        with baseline_sides(baseline) as sides, tempfile.TemporaryDirectory() as work:
            script = Path(work) / "sender.py"
            script.write_text(SENDER)
            cpu: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(rounds):
                for name, env in sides.items():
                    out = _run(env, script, port, touches, 3, None)
                    cpu[name].append(min(float(x) for x in out.split()))
                load.append(os.getloadavg()[0])
            result["cpu_us_per_touch"] = {n: round(statistics.median(v), 1) for n, v in cpu.items()}
            result["cpu_us_runs"] = {n: [round(x, 1) for x in v] for n, v in cpu.items()}
            if shutil.which("valgrind") is not None:
                grind = Path(work) / "callgrind.out"
                per_touch = instructions_per_item(
                    sides,
                    lambda env, passes: _run(env, script, port, GRIND_TOUCHES, 0, grind, passes),
                    GRIND_TOUCHES,
                    GRIND_PASSES,
                    "touch",
                )
                result["instructions_per_touch"] = per_touch
                result["instructions_ratio"] = round(
                    per_touch["this tree"] / per_touch["baseline"], 3
                )
    finally:
        sink.terminate()
        sink.wait(10)
    cpu_us = result["cpu_us_per_touch"]
    result["cpu_ratio"] = round(cpu_us["this tree"] / cpu_us["baseline"], 3)
    result["load_average_1m"] = [round(min(load), 2), round(max(load), 2)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--touches", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs a side, alternating")
    args = parser.parse_args()
    result = measure(args.baseline, args.touches, args.rounds)
    print(json.dumps(result, indent=2))
    out = BENCH_DIR / "results" / "notifier-compose.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"notifier email per touch (compose + send): {result['cpu_ratio']:.3f}x baseline in "
        "CPU time"
        + (
            f", {result['instructions_ratio']:.3f}x in instructions"
            if "instructions_ratio" in result
            else ""
        )
    )


if __name__ == "__main__":
    main()
