"""Enrichment providers: ``local`` (offline, the default), ``openai``, and ``noop``.

``noop`` does no work at all; it exists for measuring the pipeline's own cost
(``scripts/bench``), never as a default.
"""

from __future__ import annotations

from app.config import SUMMARY_MAX, Settings
from pipelines.providers.base import PermanentError, Provider, ProviderError, TransientError

__all__ = ["PermanentError", "Provider", "ProviderError", "TransientError", "make_provider"]


class NoopProvider:
    """Returns the title as the summary and the tag ``question``: for benchmarks only."""

    name = "noop"

    def summarise(self, title: str, body: str) -> str:
        return title[:SUMMARY_MAX]

    def tag(self, title: str, body: str, summary: str) -> list[str]:
        return ["question"]


def make_provider(settings: Settings) -> Provider:
    if settings.enrich_provider == "openai":
        from pipelines.providers.openai import OpenAIProvider

        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            model=settings.openai_model,
            timeout=settings.openai_timeout,
            taxonomy=settings.tag_taxonomy,
        )
    if settings.enrich_provider == "noop":
        return NoopProvider()
    from pipelines.providers.local import LocalProvider

    return LocalProvider(taxonomy=settings.tag_taxonomy)
