"""A score that cools with the wall clock, and the key that serves it from an index (pure).

What the machine computes stays as it was: fit + engagement evaluated at the newest event time
the lead has seen (`as_of`), so a rebuild computes the same numbers. What a person sees is the
score now: engagement keeps halving every half-life `h` after `as_of`:

    current(t) = fit + engagement * 2^(-(t - as_of) / h)

Stored per lead: `fit`, `h`, `sign` = sign(engagement) and

    key = sign * (log2(|engagement|) + epoch(as_of) / h)      (-inf when engagement is 0)

so that current(t) = fit + sign * 2^(sign * key - epoch(t) / h). Within one group
(fit, h, sign) the current score is monotone (non-decreasing) in `key` for every t: ordering
the group's index by key is ordering it by the score now, at any instant
(docs/decisions/0023). The SQL of the work queue computes the same expression (`SCORE_SQL`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

# 2^x for x at or below this is 0 (PostgreSQL raises on an underflow instead of answering 0);
# above 1023 it would overflow: clamped (both keep the score monotone in the key).
UNDERFLOW = -1074.0
OVERFLOW = 1023.0
# Key bounds are widened by this much (in log2 units): float error in the key is ~1e-11.
KEY_SLACK = 1e-6
# Below this, engagement is too small to bound by a key: the group is scanned exactly there.
TINY = 2.0**-1000


def half_life_seconds(half_life_days: float) -> float:
    return half_life_days * 86400.0


def epoch(at: datetime) -> float:
    return at.timestamp()


@dataclass(frozen=True)
class DecayKey:
    sign: int  # -1, 0, 1: the sign of the engagement at as_of
    key: float  # -inf when the engagement is 0


def decay_key(engagement: float, as_of: datetime, half_life: float) -> DecayKey:
    """The stored key of an engagement `engagement` evaluated at `as_of` (h in seconds)."""
    if engagement == 0:
        return DecayKey(0, -math.inf)
    sign = 1 if engagement > 0 else -1
    return DecayKey(sign, sign * (math.log2(abs(engagement)) + epoch(as_of) / half_life))


def decayed(sign: int, key: float, half_life: float, now: float) -> float:
    """The engagement part of the score at epoch `now`: sign * 2^(sign * key - now / h)."""
    if sign == 0:
        return 0.0
    x = sign * key - now / half_life
    return 0.0 if x <= UNDERFLOW else sign * 2.0 ** min(x, OVERFLOW)


def current_score(fit: float, sign: int, key: float, half_life: float, now: float) -> float:
    """fit + engagement * 2^(-(now - as_of) / h), from the stored key (epoch seconds)."""
    return fit + decayed(sign, key, half_life, now)


# The same, in SQL, over a row of lead_stages aliased `l`, at epoch `{now}` (a parameter).
SCORE_SQL = (
    "(CASE WHEN l.decay_sign = 0 THEN l.fit_score ELSE l.fit_score + l.decay_sign * "
    "(CASE WHEN l.decay_sign * l.decay_key - {now} / l.half_life_seconds <= -1074 THEN 0 "
    "ELSE power(2::float8, least(l.decay_sign * l.decay_key - {now} / l.half_life_seconds, "
    "1023)) END) END)"
)


@dataclass(frozen=True)
class KeyRange:
    """Keys of one group (fit, h, sign) whose score now may lie in a score range: a superset
    (the exact score is checked on each row), or `empty` when no row of the group can."""

    low: float = -math.inf
    high: float = math.inf
    empty: bool = False

    def __and__(self, other: KeyRange) -> KeyRange:
        low, high = max(self.low, other.low), min(self.high, other.high)
        return KeyRange(low, high, self.empty or other.empty or low > high)


EVERY_KEY = KeyRange()
NO_KEY = KeyRange(empty=True)


def _margin(value: float) -> float:
    # Float error of fit + 2^x and of value - fit: a couple of units in the last place.
    return 2 * math.ulp(value) + 2 * math.ulp(abs(value) + 1e-300)


def keys_at_most(score: float, fit: float, sign: int, half_life: float, now: float) -> KeyRange:
    """Keys of the group (fit, h, sign) whose score at `now` can be <= `score`."""
    t = now / half_life
    margin = _margin(score) + _margin(fit)
    if sign == 0:
        return EVERY_KEY if fit <= score else NO_KEY
    if sign > 0:  # fit + 2^(key - t) <= score
        room = score - fit + margin
        if room <= 0:
            return NO_KEY
        return KeyRange(high=math.log2(max(room, TINY)) + t + KEY_SLACK)
    # fit - 2^(-key - t) <= score  <=>  2^(-key - t) >= fit - score
    need = fit - score - margin
    if need <= TINY:
        return EVERY_KEY
    return KeyRange(high=-(math.log2(need) + t) + KEY_SLACK)


def keys_at_least(score: float, fit: float, sign: int, half_life: float, now: float) -> KeyRange:
    """Keys of the group (fit, h, sign) whose score at `now` can be >= `score`."""
    t = now / half_life
    margin = _margin(score) + _margin(fit)
    if sign == 0:
        return EVERY_KEY if fit >= score else NO_KEY
    if sign > 0:  # fit + 2^(key - t) >= score
        need = score - fit - margin
        if need <= TINY:
            return EVERY_KEY
        return KeyRange(low=math.log2(need) + t - KEY_SLACK)
    # fit - 2^(-key - t) >= score  <=>  2^(-key - t) <= fit - score
    room = fit - score + margin
    if room <= 0:
        return NO_KEY
    return KeyRange(low=-(math.log2(max(room, TINY)) + t) - KEY_SLACK)
