"""What every handler needs: the runtime, typed settings, the shared problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Path, Request
from pydantic import ValidationError

from funnel_servicekit.deps import runtime_of
from funnel_servicekit.problems import Problem
from lead_intake.capture import Outbox
from lead_intake.form_cache import FormCache
from lead_intake.forms import ID_PATTERN, Form
from lead_intake.rate_limits import RateLimits
from lead_intake.runtime import IntakeRuntime
from lead_intake.settings import IntakeSettings
from lead_intake.store import forms as forms_store

FormId = Annotated[str, Path(pattern=ID_PATTERN, description="The form's id.")]


@dataclass(frozen=True)
class Intake:
    pool: asyncpg.Pool
    settings: IntakeSettings
    rate_limits: RateLimits
    forms: FormCache

    async def form(self, form_id: str) -> Form | None:
        """The form, from the short cache or the database."""

        async def load(key: str) -> Form | None:
            async with self.pool.acquire() as conn:
                return await forms_store.get_form(conn, key)

        return await self.forms.get(form_id, load)

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.settings.db_schema, self.settings.service_name)


def intake(request: Request) -> Intake:
    runtime: IntakeRuntime = runtime_of(request)
    return Intake(
        runtime.pool,
        runtime.settings,
        runtime.context.rate_limits,
        runtime.context.form_cache,
    )


def client_ip(request: Request) -> str | None:
    """The caller's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else None


def unknown_form(form_id: str) -> Problem:
    return Problem(
        404,
        "Unknown form",
        f"no form with id {form_id!r}",
        type_="urn:funnel:problem:unknown-form",
        errors=[{"field": "form_id", "message": "unknown form"}],
    )


def invalid(errors: list[dict[str, str]], title: str = "Invalid submission") -> Problem:
    return Problem(
        422,
        title,
        "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        type_="urn:funnel:problem:validation",
        errors=errors,
    )


def validation_problem(exc: ValidationError, title: str = "Invalid request") -> Problem:
    """A pydantic error as a 422 naming each field (never echoing the input)."""
    return invalid(
        [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "message": e["msg"],
                "code": e["type"],
            }
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ],
        title,
    )
