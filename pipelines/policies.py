"""Per-stage retry, rate-limit and time-limit policy, read from Settings (``<STAGE>_*``), and
the webhook task's, read the same way from ``NOTIFY_*``."""

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
    def longest_wait(self) -> float:
        """The longest countdown that keeps the message delivered once.

        A message waiting for its countdown is held, unacknowledged, by a worker: Redis
        hands it to another worker once the visibility timeout has passed.
        """
        return self.visibility_timeout - self.time_limit - VISIBILITY_MARGIN

    def countdown(
        self, retries: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retries + 1``.

        Exponential backoff with "equal jitter": step ``backoff * 2**retries``, capped by
        ``backoff_max``, and the wait drawn between half the step and all of it, so it is
        never 0. A server's ``Retry-After`` is honoured in full when longer: the backoff
        maximum bounds our own backoff, not the server's instruction. The caller re-queues
        a wait longer than :attr:`longest_wait` in several hops (see ``StageTask``).
        """
        step = min(self.backoff * 2.0 ** min(retries, 32), self.backoff_max, self.longest_wait)
        wait = step / 2 + (rng or random).uniform(0, step / 2)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


def policy_for(stage: Stage, settings: Settings) -> StagePolicy:
    configured = settings.stage(stage.value)
    policy = StagePolicy(
        max_retries=configured.max_retries,
        backoff=configured.retry_backoff,
        backoff_max=configured.retry_backoff_max,
        rate_limit=configured.rate_limit,
        time_limit=configured.time_limit,
        visibility_timeout=settings.celery_visibility_timeout,
    )
    return _checked(policy, f"{stage.value.upper()}_TIME_LIMIT")


def policies_for(settings: Settings) -> dict[Stage, StagePolicy]:
    return {stage: policy_for(stage, settings) for stage in Stage}


def webhook_policy(settings: Settings) -> StagePolicy:
    """The ``webhooks.deliver`` task's policy, from ``NOTIFY_*`` as a stage's from its own."""
    policy = StagePolicy(
        max_retries=settings.notify_max_retries,
        backoff=settings.notify_retry_backoff,
        backoff_max=settings.notify_retry_backoff_max,
        rate_limit=None,
        time_limit=settings.notify_time_limit,
        visibility_timeout=settings.celery_visibility_timeout,
    )
    return _checked(policy, "NOTIFY_TIME_LIMIT")


def _checked(policy: StagePolicy, time_limit_setting: str) -> StagePolicy:
    """The policy, if a retry fits below the visibility timeout; else PolicyError."""
    if policy.longest_wait < 1:
        raise PolicyError(
            f"{time_limit_setting}={policy.time_limit:g} leaves no room for retries below "
            f"CELERY_VISIBILITY_TIMEOUT={policy.visibility_timeout:g}: a message would be "
            "delivered twice. Raise the visibility timeout or lower the time limit."
        )
    return policy
