"""lead-intake's server side: it sheds load past its cap and skips the pool's reset query."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from funnel_servicekit.load_shedding import LoadSheddingMiddleware
from lead_intake.app import create_app
from lead_intake.settings import IntakeSettings


def _shedding(app: FastAPI) -> list[Middleware]:
    return [
        m
        for m in app.user_middleware
        if isinstance(m.cls, type) and issubclass(m.cls, LoadSheddingMiddleware)
    ]


def test_intake_sheds_load_past_its_cap_by_default() -> None:
    settings = IntakeSettings()
    assert settings.http_max_in_flight == 32
    app = create_app(settings)
    shedding = _shedding(app)
    assert len(shedding) == 1
    assert shedding[0].kwargs == {"max_in_flight": 32}


def test_the_cap_can_be_turned_off() -> None:
    app = create_app(IntakeSettings(http_max_in_flight=0))
    assert not _shedding(app)


def test_intake_pool_connections_are_not_reset_on_release() -> None:
    # Intake keeps no session state on pooled connections; see settings.py.
    assert IntakeSettings().db_pool_reset_on_release is False
