"""The kit consumer's decode per record, in CPU instructions and CPU time, against a revision.

What the inbox consumer does to each fetched record before any database work: its envelope
(the CloudEvents headers) and its event (the contract's pydantic model), through the
consumer's own `_decoded` (the batch path every service's consumer takes). The records are
made as the services' outboxes send them (`encode`, a traceparent each): captures, page views
and stage changes in turn, every type handled.

Each side (this tree, and the baseline revision checked out into a temporary git worktree, run
with this virtualenv and its source folders first on PYTHONPATH) runs:
- under `valgrind --tool=callgrind`, the same records decoded once, then four more times: the
  difference divided by the extra decodes is the instructions per record, imports and the
  records' making cancelled out (a count a busy machine does not change);
- without valgrind, `--rounds` timed passes alternating with the other side: CPU µs per record
  (process time; medians).

`.venv/bin/python -m bench.kit_decode [--baseline REV] [--records 3000] [--rounds 5]`
(needs valgrind for the instruction counts: `apt-get install -y valgrind`; about a minute).
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

GRIND_RECORDS = 600  # decoded once, then GRIND_PASSES more times: the difference is decode's
GRIND_PASSES = 4

# Runs in the measured interpreter. argv: records, passes (timed: each prints µs per record),
# passes untimed (the instruction counts: the same records decoded that many more times).
DECODER = """
import sys, time, types
from aiokafka import ConsumerRecord
from funnel_contracts import Envelope, encode
from funnel_contracts.events import EVENT_MODELS
from funnel_contracts.examples import activity_recorded, lead_captured, stage_changed
from funnel_servicekit.inbox import InboxConsumer

n, passes, untimed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
makers = [
    lambda: lead_captured(),
    lambda: activity_recorded(activity_type="page_viewed"),
    lambda: stage_changed(to_stage="interest", from_stage="awareness"),
]
records = []
for i in range(n):
    event = makers[i % 3]()
    trace = {"traceparent": f"00-{i:032x}-{i:016x}-01"}
    record = encode(Envelope.of(event, source="bench", trace=trace))
    records.append(ConsumerRecord(event.topic, 0, i, 0, 0, record.key, record.value, None,
                                  len(record.key), len(record.value), tuple(record.headers)))
consumer = types.SimpleNamespace(handled_types=set(EVENT_MODELS))
decoded = InboxConsumer._decoded(consumer, records)
assert decoded is not None and all(event is not None for _, _, event in decoded)
for _ in range(untimed):
    InboxConsumer._decoded(consumer, records)
for _ in range(passes):
    start = time.process_time()
    InboxConsumer._decoded(consumer, records)
    print((time.process_time() - start) / n * 1e6, flush=True)
"""


def _run(
    env: dict[str, str], script: Path, n: int, passes: int, grind: Path | None, untimed: int = 0
) -> str:
    argv = [sys.executable, str(script), str(n), str(passes), str(untimed)]
    if grind is not None:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={grind}", *argv]
    done = subprocess.run(
        argv, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the decoder failed:\n{done.stderr[-3000:]}")
    return done.stdout if grind is None else done.stderr


def measure(baseline: str, records: int, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {"baseline": baseline, "records": records}
    with baseline_sides(baseline) as sides, tempfile.TemporaryDirectory() as work:
        script = Path(work) / "decoder.py"
        script.write_text(DECODER)
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, env in sides.items():
                out = _run(env, script, records, 3, None)
                cpu[name].append(min(float(x) for x in out.split()))
        result["cpu_us_per_record"] = {n: round(statistics.median(v), 2) for n, v in cpu.items()}
        result["cpu_us_runs"] = {n: [round(x, 2) for x in v] for n, v in cpu.items()}
        if shutil.which("valgrind") is not None:
            grind = Path(work) / "callgrind.out"
            per_record = instructions_per_item(
                sides,
                lambda env, passes: _run(env, script, GRIND_RECORDS, 0, grind, passes),
                GRIND_RECORDS,
                GRIND_PASSES,
                "record",
            )
            result["instructions_per_record"] = per_record
            result["instructions_ratio"] = round(
                per_record["this tree"] / per_record["baseline"], 3
            )
    cpu_us = result["cpu_us_per_record"]
    result["cpu_ratio"] = round(cpu_us["this tree"] / cpu_us["baseline"], 3)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs a side, alternating")
    args = parser.parse_args()
    result = measure(args.baseline, args.records, args.rounds)
    print(json.dumps(result, indent=2))
    out = BENCH_DIR / "results" / "kit-decode.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"kit decode per record: {result['cpu_ratio']:.3f}x baseline in CPU time"
        + (
            f", {result['instructions_ratio']:.3f}x in instructions"
            if "instructions_ratio" in result
            else ""
        )
    )


if __name__ == "__main__":
    main()
