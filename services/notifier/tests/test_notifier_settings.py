"""Production refuses the development secrets wherever they would be used, and only there."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from notifier.settings import NotifierSettings


@pytest.fixture(autouse=True)
def _no_funnel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FUNNEL_"):
            monkeypatch.delenv(name)


def test_the_migrations_run_without_signing_keys_in_production() -> None:
    settings = NotifierSettings(environment="production", run_api=False, run_workers=False)
    assert settings.intake_api_key is None


@pytest.mark.parametrize(("run_api", "run_workers"), [(True, False), (False, True)])
def test_the_api_and_the_workers_refuse_the_development_link_key(
    run_api: bool, run_workers: bool
) -> None:
    with pytest.raises(ValidationError, match="FUNNEL_LINK_SIGNING_KEY"):
        NotifierSettings(
            environment="production",
            run_api=run_api,
            run_workers=run_workers,
            admin_api_key="k3y-" + "0123456789abcdefghijklmnop",
        )


def test_the_workers_need_their_intake_key_and_no_admin_key() -> None:
    secrets = {"link_signing_key": "l" * 8 + "ink-key-x9", "webhook_signing_secret": "w-s3cret"}
    with pytest.raises(ValidationError, match="FUNNEL_INTAKE_API_KEY"):
        NotifierSettings(environment="production", run_api=False, **secrets)  # type: ignore[arg-type]
    worker = NotifierSettings(
        environment="production",
        run_api=False,
        intake_api_key="intake-key",
        **secrets,  # type: ignore[arg-type]
    )
    assert worker.admin_api_key is None
