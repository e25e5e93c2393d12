"""schemathesis against lead-intake's own OpenAPI document: no request makes it answer 5xx.

lead-intake runs as its own process on the real PostgreSQL and Kafka (with stage-tracker,
which it asks about funnels when a form is saved); every operation is
tried with generated valid and invalid input, with the admin key so the internal ones run
their real code too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from funnel_devstack.stack import Stack
from tests.e2e.intake_process import intake_with_tracker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def intake(module_infra: Stack) -> AsyncIterator[str]:
    await module_infra.prepare()
    module_infra.extra_env["FUNNEL_META_APP_SECRET"] = "schemathesis-meta-secret"
    module_infra.extra_env["FUNNEL_WEBHOOK_HMAC_SECRET"] = "schemathesis-hmac-secret"
    async with intake_with_tracker(module_infra) as url:
        yield url


def test_no_generated_request_gets_a_server_error(module_infra: Stack, intake: str) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{intake}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "20261126",
            "--generation-deterministic",
            "--phases",
            "examples,coverage,fuzzing",
            "-H",
            f"Authorization: Bearer {module_infra.admin_api_key}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output[-3000:]
    assert int(generated[1]) >= 500  # the run really exercised the API
    log = (module_infra.logs / "lead-intake.log").read_text()
    assert "unhandled error" not in log, log[-4000:]
