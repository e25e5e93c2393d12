"""`make audit` fails CI on a known vulnerability, and says plainly when it could not scan."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dependency_audit.py"


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dependency_audit", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(*deps: dict[str, object]) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


def test_a_known_vulnerability_fails() -> None:
    out = _report(
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": []}]},
        {"name": "httpx", "version": "0.28.1", "vulns": []},
    )  # fmt: skip
    code, message = _audit().classify(1, out, "")
    assert code == 1
    assert "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in message


def test_a_clean_scan_passes_and_counts_what_it_checked() -> None:
    out = _report({"name": "httpx", "version": "0.28.1", "vulns": []},
                  {"name": "x", "skip_reason": "not found"})  # fmt: skip
    assert _audit().classify(0, out, "") == (
        0,
        "audit: no known vulnerabilities in 1 pinned packages; 1 could not be checked",
    )


def test_an_unreachable_service_is_reported_and_does_not_fail() -> None:
    err = "requests.exceptions.ConnectionError: HTTPSConnectionPool(...): Max retries exceeded"
    code, message = _audit().classify(1, "", err)
    assert code == 0
    assert message.startswith("audit: COULD NOT RUN: the vulnerability service is unreachable")


def test_a_service_that_knows_no_package_is_not_a_clean_scan() -> None:
    out = _report(*({"name": n, "skip_reason": f"Dependency not found: {n}"} for n in "abc"))
    code, message = _audit().classify(0, out, "")
    assert code == 0
    assert "COULD NOT RUN" in message
    assert "none of the 3 pinned packages" in message


def test_any_other_failure_of_the_tool_fails() -> None:
    code, _ = _audit().classify(2, "", "usage: pip-audit: error: unrecognized arguments")
    assert code == 2
