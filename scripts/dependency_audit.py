"""`make audit`: pip-audit over every pinned version in constraints.txt, honestly reported.

Exit 1 when the scan ran and found a known vulnerability. When the vulnerability service
cannot be reached, or answers for none of the packages (a mirror that serves packages but
not the vulnerability API answers "not found" for each), the scan did not run: say so
plainly and exit 0, so CI does not fail for the network. Any other failure of pip-audit
itself is exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

UNREACHABLE = ("ConnectionError", "NameResolutionError", "Max retries exceeded",
               "Network is unreachable", "Temporary failure in name resolution",
               "ConnectTimeout", "ReadTimeout", "SSLError")  # fmt: skip


def classify(returncode: int, stdout: str, stderr: str) -> tuple[int, str]:
    """(exit code, what to print) for one pip-audit run with `--format json`."""
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        if any(marker in stderr for marker in UNREACHABLE):
            last = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
            return 0, f"audit: COULD NOT RUN: the vulnerability service is unreachable ({last})"
        return 2, f"audit: pip-audit failed (exit {returncode}):\n{stderr[-3000:]}"
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    audited = [d for d in deps if "skip_reason" not in d]
    skipped = [d for d in deps if "skip_reason" in d]
    if vulnerable:
        lines = [
            f"  {d['name']} {d.get('version', '?')}: {v['id']} (fixed in "
            f"{', '.join(v.get('fix_versions') or ['no release yet'])})"
            for d in vulnerable
            for v in d["vulns"]
        ]
        return 1, "audit: KNOWN VULNERABILITIES in pinned packages:\n" + "\n".join(lines)
    if deps and not audited:
        reason = skipped[0]["skip_reason"]
        return 0, (
            f"audit: COULD NOT RUN: the vulnerability service answered for none of the "
            f"{len(deps)} pinned packages (e.g. {reason!r}); nothing was checked"
        )
    note = f"; {len(skipped)} could not be checked" if skipped else ""
    return 0, f"audit: no known vulnerabilities in {len(audited)} pinned packages{note}"


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    pip_audit = Path(sys.executable).parent / "pip-audit"
    run = subprocess.run(
        [str(pip_audit), "--requirement", str(root / "constraints.txt"), "--no-deps",
         "--disable-pip", "--progress-spinner", "off", "--format", "json", "--timeout", "10"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    code, message = classify(run.returncode, run.stdout, run.stderr)
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
