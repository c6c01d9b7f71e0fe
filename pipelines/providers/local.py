"""The offline provider: extractive summary, linear type classifier, rule-based topics.

Nothing is downloaded and no network is used. The fitted classifier is read from
``pipelines/providers/models/`` once per process (see :func:`classifier.get_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.providers.base import PermanentError
from pipelines.providers.classifier import LABELS, TypeModel, get_model
from pipelines.providers.summary import summarise as extractive_summary
from pipelines.providers.topics import DEFAULT_TAXONOMY, TopicTagger

__all__ = ["DEFAULT_TAXONOMY", "LocalProvider"]


class LocalProvider:
    """Summarises and tags issues without leaving the machine. Safe to share across threads."""

    name = "local"

    def __init__(self, taxonomy: Sequence[str] = DEFAULT_TAXONOMY) -> None:
        if isinstance(taxonomy, str):
            raise TypeError("taxonomy must be a sequence of tag names, not a string")
        self._topics = TopicTagger(taxonomy)
        self.taxonomy: tuple[str, ...] = self._topics.taxonomy

    @property
    def model(self) -> TypeModel:
        try:
            return get_model()
        except (OSError, ValueError, KeyError) as exc:
            raise PermanentError(f"local type model unavailable: {exc}") from exc

    def summarise(self, title: str, body: str) -> str:
        return extractive_summary(title or "", body or "")

    def classify(self, title: str, body: str) -> str:
        """The issue type: one of ``bug``, ``feature``, ``question``."""
        label = self.model.predict(title or "", body or "")
        if label not in LABELS:  # pragma: no cover - guarded by the model loader
            raise PermanentError(f"model produced unknown label {label!r}")
        return label

    def tag(self, title: str, body: str, summary: str) -> list[str]:
        type_tag = self.classify(title, body)
        topics = [
            t for t in self._topics.tags(title or "", body or "", summary or "") if t not in LABELS
        ]
        return [type_tag, *topics]
