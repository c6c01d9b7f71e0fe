"""Per-stage retry and rate-limit policy, read from Settings (``<STAGE>_*`` variables)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.config import Settings
from pipelines.queues import Stage

# Seconds kept free between a retry's countdown plus one attempt and the visibility timeout.
VISIBILITY_MARGIN = 5.0


class PolicyError(ValueError):
    """The configured policy would make Redis deliver a message twice."""


@dataclass(frozen=True)
class StagePolicy:
    max_retries: int
    backoff: float
    backoff_max: float
    rate_limit: str | None
    time_limit: float
    visibility_timeout: float

    @property
    def soft_time_limit(self) -> float:
        """Raised inside the task first, so a slow attempt is retried and recorded."""
        return max(self.time_limit - 1.0, self.time_limit * 0.9)

    @property
    def countdown_cap(self) -> float:
        """The longest wait before a retry that still keeps the message delivered once."""
        return min(self.backoff_max, self.visibility_timeout - self.time_limit - VISIBILITY_MARGIN)

    def countdown(
        self, retries: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retries + 1``.

        Exponential backoff with "equal jitter": step ``backoff * 2**retries``, capped, and
        the wait drawn between half the step and all of it, so it is never 0. A server's
        ``Retry-After`` is honoured when longer, within the same cap.
        """
        step = min(self.backoff * 2.0 ** min(retries, 32), self.countdown_cap)
        wait = step / 2 + (rng or random).uniform(0, step / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.countdown_cap))
        return wait


def policy_for(stage: Stage, settings: Settings) -> StagePolicy:
    prefix = stage.value
    policy = StagePolicy(
        max_retries=getattr(settings, f"{prefix}_max_retries"),
        backoff=getattr(settings, f"{prefix}_retry_backoff"),
        backoff_max=getattr(settings, f"{prefix}_retry_backoff_max"),
        rate_limit=getattr(settings, f"{prefix}_rate_limit"),
        time_limit=getattr(settings, f"{prefix}_time_limit"),
        visibility_timeout=settings.celery_visibility_timeout,
    )
    if policy.countdown_cap < 1:
        raise PolicyError(
            f"{prefix.upper()}_TIME_LIMIT={policy.time_limit:g} leaves no room for retries "
            f"below CELERY_VISIBILITY_TIMEOUT={policy.visibility_timeout:g}: a message would "
            "be delivered twice. Raise the visibility timeout or lower the time limit."
        )
    return policy
