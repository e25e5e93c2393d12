"""The open-loop load from vegeta (Go, its own process) when it is on PATH.

vegeta sends at a constant rate whatever the server does and measures each request from its
scheduled time, like bench/open_loop.py; but it is compiled, so on two shared cores it does not
stall itself. The asyncio generator did: its own garbage collections and event-loop turns
delayed 0.5% of its sends by 20-90 ms, which landed in the very p99 being measured.

Install: `go install github.com/tsenart/vegeta/v12@v12.12.0` (the binary lands in
`$(go env GOPATH)/bin`; put that on PATH). Without it the bench uses bench/open_loop.py and
the report says which generator ran.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

VEGETA_VERSION = "v12.12.0"
VEGETA_INSTALL = f"go install github.com/tsenart/vegeta/v12@{VEGETA_VERSION}"


def vegeta_path() -> str | None:
    found = shutil.which("vegeta")
    if found:
        return found
    gobin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "vegeta"
    return str(gobin) if gobin.exists() else None


def _targets(url: str, count: int, body_for: Callable[[int], bytes]) -> str:
    lines = []
    for i in range(count):
        lines.append(
            json.dumps(
                {
                    "method": "POST",
                    "url": url,
                    "body": base64.b64encode(body_for(i)).decode(),
                    "header": {"Content-Type": ["application/json"]},
                }
            )
        )
    return "\n".join(lines) + "\n"


async def vegeta_open_loop(
    binary: str, url: str, rate: float, seconds: float, body_for: Callable[[int], bytes]
) -> dict[str, Any]:
    """`rate` posts per second for `seconds`, each with its own body; the open_loop summary."""
    total = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="bench-vegeta-") as folder:
        targets = Path(folder) / "targets.jsonl"
        targets.write_text(_targets(url, total + 16, body_for))
        attack = await asyncio.create_subprocess_exec(
            binary,
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={round(rate * 10)}/10s",
            f"-duration={round(seconds * 1000)}ms",
            "-max-workers=256",
            "-timeout=60s",
            "-output=" + str(Path(folder) / "results.bin"),
        )
        if await attack.wait() != 0:
            raise RuntimeError(f"vegeta attack failed ({attack.returncode})")
        report = await asyncio.create_subprocess_exec(
            binary,
            "report",
            "-type=json",
            str(Path(folder) / "results.bin"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await report.communicate()
    return summary_of(json.loads(out), rate)


def summary_of(report: dict[str, Any], rate: float) -> dict[str, Any]:
    """vegeta's JSON report in the shape of open_loop's summary (latencies of every answer)."""
    statuses = {str(k): int(v) for k, v in (report.get("status_codes") or {}).items()}
    accepted = statuses.get("202", 0)
    latencies = report["latencies"]
    seconds = report["duration"] / 1e9 or float("nan")
    return {
        "rate_target": round(rate, 1),
        "rate_achieved": round(accepted / seconds, 1),
        "sent": int(report["requests"]),
        "accepted_202": accepted,
        "shed_503": statuses.get("503", 0),
        "other_statuses": {k: v for k, v in statuses.items() if k not in ("202", "503")},
        "errors": {e: 1 for e in report.get("errors") or []},
        "p50_ms": round(latencies["50th"] / 1e6, 2),
        "p90_ms": round(latencies["90th"] / 1e6, 2),
        "p99_ms": round(latencies["99th"] / 1e6, 2),
        "max_ms": round(latencies["max"] / 1e6, 2),
    }
