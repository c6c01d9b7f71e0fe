"""Settings: one field per environment variable (README.md, "Configuration")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TITLE_MAX = 300
BODY_MAX = 50_000
SUMMARY_MAX = 300  # characters of an ai_summary, whichever provider writes it
REQUEST_MAX_BYTES = 1024 * 1024

DEFAULT_TAXONOMY: tuple[str, ...] = (
    "documentation",
    "performance",
    "security",
    "ui",
    "build",
    "tests",
    "dependencies",
    "crash",
    "regression",
)

_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")


def parse_rate(text: str) -> tuple[float, float]:
    """Celery's rate syntax as ``(tokens, per_seconds)``: the one parser of that grammar.

    ``"10/s"`` → ``(10.0, 1.0)``, ``"60/m"`` → ``(60.0, 60.0)``, ``"100/h"`` →
    ``(100.0, 3600.0)``, and a bare number is per second: ``"5"`` → ``(5.0, 1.0)``.
    """
    if not isinstance(text, str):
        raise ValueError(f"rate limit must be a string like '10/s', got {text!r}")
    match = _RATE.match(text)
    if match is None:
        raise ValueError(
            f"rate limit must look like '10/s', '60/m', '100/h' or '5' (per second), got {text!r}"
        )
    tokens = float(match.group(1))
    if tokens <= 0:
        raise ValueError(f"rate limit must be positive, got {text!r}")
    return tokens, _RATE_UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class StageSettings:
    """One stage's ``<STAGE>_*`` variables."""

    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    rate_limit: str | None
    time_limit: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./issueflow.db"
    celery_broker_url: str = "redis://localhost:6379/0"
    celery_result_backend: str = "redis://localhost:6379/1"
    celery_visibility_timeout: int = Field(default=3600, ge=5)
    # Publish a task-sent event with every message (Flower then shows queued stages).
    celery_send_sent_event: bool = False
    # The Redis of the cluster-wide rate limiter; the broker's when unset (and a Redis).
    redis_url: str | None = None
    # Redis key prefix for the cluster-wide rate limiter (tests isolate themselves with it).
    redis_key_prefix: str = "issueflow:"

    enrich_provider: Literal["local", "openai", "noop"] = "local"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=30.0, gt=0)
    tag_taxonomy: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "documentation",
            "performance",
            "security",
            "ui",
            "build",
            "tests",
            "dependencies",
            "crash",
            "regression",
        ]
    )

    summarise_max_retries: int = Field(default=3, ge=0)
    summarise_retry_backoff: float = Field(default=10, gt=0)
    summarise_retry_backoff_max: float = Field(default=600, gt=0)
    summarise_rate_limit: str | None = None
    summarise_time_limit: float = Field(default=120, gt=0)
    tag_max_retries: int = Field(default=3, ge=0)
    tag_retry_backoff: float = Field(default=10, gt=0)
    tag_retry_backoff_max: float = Field(default=600, gt=0)
    tag_rate_limit: str | None = None
    tag_time_limit: float = Field(default=120, gt=0)
    persist_max_retries: int = Field(default=5, ge=0)
    persist_retry_backoff: float = Field(default=2, gt=0)
    persist_retry_backoff_max: float = Field(default=600, gt=0)
    persist_rate_limit: str | None = None
    persist_time_limit: float = Field(default=120, gt=0)
    provider_rate_limit: str | None = None

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_read_requires_key: bool = False
    notify_webhook_url: str | None = None
    # Signs every webhook event (X-Issueflow-Signature-256: HMAC-SHA256 of the raw body).
    notify_webhook_secret: SecretStr | None = None
    notify_timeout: float = Field(default=5.0, gt=0)
    # issue.enriched and run.failed: the webhooks.deliver task's retries, like a stage's.
    notify_max_retries: int = Field(default=6, ge=0)
    notify_retry_backoff: float = Field(default=10, gt=0)
    notify_retry_backoff_max: float = Field(default=600, gt=0)
    notify_time_limit: float = Field(default=30, gt=0)
    # Seconds between sweeps of runs that could not be sent to the broker (the outbox).
    outbox_sweep_interval: float = Field(default=10.0, gt=0)
    # Seconds between the API's looks for stalled runs, whose message a Redis broker lost
    # (0: never).
    recover_interval: float = Field(default=300.0, ge=0)
    # Seconds a run must have made no progress, with no message in any queue or held by any
    # worker, to count as stalled and be resumed. None: derived from the time limits, the
    # backoff caps and the visibility timeout (``pipelines.recovery.stalled_run_after``).
    # RECOVER_GRACE is its deprecated name.
    stalled_run_after: float | None = Field(
        default=None,
        gt=0,
        validation_alias=AliasChoices("stalled_run_after", "recover_grace"),
    )
    # A run resumed this many times that stalls once more ends FAILURE instead of looping.
    max_resumes: int = Field(default=3, ge=0)
    # GET /tasks/<id>/events: seconds between heartbeat comments, and between re-reads of
    # the run when no notification came (a missed one costs at most this long).
    events_heartbeat_interval: float = Field(default=15.0, gt=0)
    events_poll_interval: float = Field(default=5.0, gt=0)

    # Operating (README "Operating issueflow").
    # What 1,000 tokens (prompt or completion) cost, in your currency: GET /tasks shows cost.
    provider_price_per_1k_tokens: float | None = Field(default=None, ge=0)
    # Prompt and completion tokens at prices of their own (each overrides the one above).
    provider_price_per_1k_prompt_tokens: float | None = Field(default=None, ge=0)
    provider_price_per_1k_completion_tokens: float | None = Field(default=None, ge=0)
    # ``text`` (one human line per record) or ``json`` (one JSON object per line).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # A worker serves its own task metrics on this port (prometheus_client); none if unset.
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_host: str = "0.0.0.0"
    # The API's GET /metrics answers from the database at most this often (seconds).
    metrics_cache_seconds: float = Field(default=5.0, ge=0)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _fold_case(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value.upper() if value.lower() in _LOG_LEVELS else value.lower()
        return value

    @field_validator(
        "provider_price_per_1k_tokens",
        "provider_price_per_1k_prompt_tokens",
        "provider_price_per_1k_completion_tokens",
        "worker_metrics_port",
        "notify_webhook_url",
        "notify_webhook_secret",
        "stalled_run_after",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("tag_taxonomy", mode="before")
    @classmethod
    def _split_taxonomy(cls, value: object) -> object:
        if isinstance(value, str):
            return [tag.strip().lower() for tag in value.split(",") if tag.strip()]
        return value

    @field_validator(
        "summarise_rate_limit",
        "tag_rate_limit",
        "persist_rate_limit",
        "provider_rate_limit",
        mode="before",
    )
    @classmethod
    def _check_rate(cls, value: object) -> object:
        if value in ("", None):
            return None
        if not isinstance(value, str):
            raise ValueError(f"rate limit must be a string like '10/s', got {value!r}")
        parse_rate(value)
        return value.strip()

    def stage(self, name: str) -> StageSettings:
        """The settings of stage ``name`` (``summarise``, ``tag`` or ``persist``)."""
        stages = {
            "summarise": StageSettings(
                self.summarise_max_retries,
                self.summarise_retry_backoff,
                self.summarise_retry_backoff_max,
                self.summarise_rate_limit,
                self.summarise_time_limit,
            ),
            "tag": StageSettings(
                self.tag_max_retries,
                self.tag_retry_backoff,
                self.tag_retry_backoff_max,
                self.tag_rate_limit,
                self.tag_time_limit,
            ),
            "persist": StageSettings(
                self.persist_max_retries,
                self.persist_retry_backoff,
                self.persist_retry_backoff_max,
                self.persist_rate_limit,
                self.persist_time_limit,
            ),
        }
        return stages[name]

    @property
    def token_prices(self) -> tuple[float, float] | None:
        """(prompt, completion) price per 1,000 tokens, or None when either is unknown."""
        prompt = self.provider_price_per_1k_prompt_tokens
        completion = self.provider_price_per_1k_completion_tokens
        if prompt is None:
            prompt = self.provider_price_per_1k_tokens
        if completion is None:
            completion = self.provider_price_per_1k_tokens
        if prompt is None or completion is None:
            return None
        return prompt, completion

    @property
    def notify_secret(self) -> str | None:
        """``NOTIFY_WEBHOOK_SECRET``'s value, for signing webhook events."""
        secret = self.notify_webhook_secret
        return secret.get_secret_value() if secret is not None else None

    @property
    def broker_is_redis(self) -> bool:
        """A Redis broker (not RabbitMQ): what the rate limiter's default and lost-message
        recovery depend on."""
        return self.celery_broker_url.startswith(("redis://", "rediss://", "unix://"))

    @property
    def coordination_redis_url(self) -> str | None:
        """The Redis that workers and API processes coordinate through: the rate limiter's
        bucket, progress events and cancel signals. ``REDIS_URL``, else the broker's URL
        when the broker is a Redis."""
        if self.redis_url:
            return self.redis_url
        return self.celery_broker_url if self.broker_is_redis else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
