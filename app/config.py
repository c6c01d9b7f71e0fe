"""Settings: one field per environment variable of the contract (design.md)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TITLE_MAX = 300
BODY_MAX = 50_000
REQUEST_MAX_BYTES = 1024 * 1024
_RATE = re.compile(r"^\d+(\.\d+)?(/[smh])?$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./issueflow.db"
    celery_broker_url: str = "redis://localhost:6379/0"
    celery_result_backend: str = "redis://localhost:6379/1"
    celery_visibility_timeout: int = Field(default=3600, ge=5)
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
    notify_timeout: float = Field(default=5.0, gt=0)
    # Seconds between sweeps of runs that could not be sent to the broker (the outbox).
    outbox_sweep_interval: float = Field(default=10.0, gt=0)

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
        if not isinstance(value, str) or not _RATE.match(value.strip()):
            raise ValueError(f"rate limit must look like '10/s', '60/m' or '100/h', got {value!r}")
        return value.strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
