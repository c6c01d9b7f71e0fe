"""Moved to ``tests.support.services``; this re-export goes once every branch imports that."""

from tests.support.services import (
    POSTGRES_URL,
    RABBITMQ_URL,
    REDIS_URL,
    in_ci,
    require,
    require_postgres,
    require_rabbitmq,
    require_redis,
    unique_prefix,
)

__all__ = [
    "POSTGRES_URL",
    "RABBITMQ_URL",
    "REDIS_URL",
    "in_ci",
    "require",
    "require_postgres",
    "require_rabbitmq",
    "require_redis",
    "unique_prefix",
]
