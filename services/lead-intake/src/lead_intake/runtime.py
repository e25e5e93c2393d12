"""lead-intake's runtime: the kit's, typed by its settings and its own long-lived objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from funnel_servicekit.group_commit import GroupCommit
from funnel_servicekit.runtime import ServiceRuntime
from lead_intake.common.blind_index import BlindIndex
from lead_intake.common.cache import TtlCache
from lead_intake.common.rate_limits import PublicRateLimits
from lead_intake.settings import IntakeSettings


@dataclass(frozen=True)
class IntakeContext:
    """What lives as long as the process, beside the pool and the producer."""

    # Forms by id (lead_intake.forms.models.Form); typed loosely so the runtime imports no
    # concept package (they import the runtime).
    form_cache: TtlCache[Any]
    rate_limits: PublicRateLimits
    # Keys the people search index (every capture, import and correction writes to it).
    search_index: BlindIndex
    # Form posts committed in groups (None: each post in its own transaction).
    form_posts: GroupCommit | None

    @classmethod
    def of(cls, settings: IntakeSettings) -> IntakeContext:
        return cls(
            TtlCache(settings.form_cache_seconds),
            PublicRateLimits(
                settings.rate_limit_per_ip,
                settings.rate_limit_per_form,
                settings.webhook_rate_limit_per_ip,
                settings.webhook_rate_limit_per_form,
            ),
            BlindIndex(settings.search_key()),
            GroupCommit(
                "form-posts",
                max_wait_seconds=settings.group_commit_max_wait_seconds,
                max_size=settings.group_commit_max_size,
                groups_in_flight=settings.group_commit_groups_in_flight,
            )
            if settings.group_commit_max_size > 1
            else None,
        )


IntakeRuntime = ServiceRuntime[IntakeSettings, IntakeContext]
