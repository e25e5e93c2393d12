"""lead-intake's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass

from funnel_servicekit.runtime import ServiceRuntime
from lead_intake.form_cache import FormCache
from lead_intake.rate_limits import RateLimits
from lead_intake.settings import IntakeSettings


@dataclass(frozen=True)
class IntakeContext:
    """What lives as long as the process, beside the pool and the producer."""

    form_cache: FormCache
    rate_limits: RateLimits

    @classmethod
    def of(cls, settings: IntakeSettings) -> IntakeContext:
        return cls(
            FormCache(settings.form_cache_seconds),
            RateLimits(settings.rate_limit_per_ip, settings.rate_limit_per_form),
        )


IntakeRuntime = ServiceRuntime[IntakeSettings, IntakeContext]
