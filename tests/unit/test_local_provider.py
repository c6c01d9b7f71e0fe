"""Tests of the offline provider: type tag, topic tags, taxonomy, model caching."""

from __future__ import annotations

import threading

import pytest

from pipelines.providers.base import Provider
from pipelines.providers.classifier import (
    TypeModel,
    char_ngrams,
    get_model,
    word_ngrams,
)
from pipelines.providers.local import DEFAULT_TAXONOMY, LocalProvider
from pipelines.providers.topics import TopicTagger

TYPES = {"bug", "feature", "question"}

BUG = (
    "App crashes with segmentation fault when opening large files",
    "### Steps to reproduce\n1. Open a 2 GB file\n2. Scroll down\n\n"
    "### Expected behavior\nThe file opens.\n\n### Actual behavior\nThe app crashes:\n"
    "```\nSegmentation fault (core dumped)\n```\nThis is a regression, it used to work in 1.2.",
)
FEATURE = (
    "Feature request: add support for exporting reports as PDF",
    "It would be nice to have an option to export the monthly report as a PDF file. "
    "Currently only CSV is supported. I propose adding an export button next to the CSV one.",
)
QUESTION = (
    "How do I configure the proxy settings?",
    "Hi, how can I set a proxy for the downloader? I looked around but could not find "
    "where this is configured. Is there a way to do it with an environment variable? Thanks!",
)


@pytest.fixture(scope="module")
def provider() -> LocalProvider:
    return LocalProvider()


def test_satisfies_protocol(provider: LocalProvider) -> None:
    checked: Provider = provider
    assert checked.name == "local"


@pytest.mark.parametrize(
    ("issue", "expected"), [(BUG, "bug"), (FEATURE, "feature"), (QUESTION, "question")]
)
def test_obvious_examples_classified(
    provider: LocalProvider, issue: tuple[str, str], expected: str
) -> None:
    title, body = issue
    tags = provider.tag(title, body, provider.summarise(title, body))
    assert tags[0] == expected


@pytest.mark.parametrize("issue", [BUG, FEATURE, QUESTION, ("", ""), ("x", "?")])
def test_exactly_one_type_tag_first(provider: LocalProvider, issue: tuple[str, str]) -> None:
    title, body = issue
    tags = provider.tag(title, body, "")
    assert tags[0] in TYPES
    assert sum(t in TYPES for t in tags) == 1
    assert set(tags[1:]) <= set(DEFAULT_TAXONOMY)
    assert len(tags) == len(set(tags))


def test_topic_tags_for_bug(provider: LocalProvider) -> None:
    title, body = BUG
    tags = provider.tag(title, body, "")
    assert "crash" in tags
    assert "regression" in tags
    assert "security" not in tags


def test_topic_rules_precision() -> None:
    tagger = TopicTagger()
    assert tagger.tags("Docs: typo in README", "The README says instal.") == ["documentation"]
    assert tagger.tags("Build fails with undefined reference", "cmake then make") == ["build"]
    assert tagger.tags("Page is slow", "Rendering takes too long with 10k rows.") == ["performance"]
    assert tagger.tags("Button label", "Nothing else here.") == ["ui"]
    assert tagger.tags("Add dark theme option", "Would be nice to have.") == ["ui"]
    assert tagger.tags("Add an export option", "Would be nice to have.") == []


def test_custom_taxonomy_respected() -> None:
    provider = LocalProvider(taxonomy=("android", "crash"))
    title = "App crashes on Android 14"
    body = "On my Android phone the app crashes at startup. The docs do not mention it."
    tags = provider.tag(title, body, "")
    assert tags[1:] == ["android", "crash"]
    assert "documentation" not in tags


def test_empty_taxonomy_gives_only_type() -> None:
    title, body = BUG
    tags = LocalProvider(taxonomy=()).tag(title, body, "")
    assert len(tags) == 1
    assert tags[0] in TYPES


def test_taxonomy_string_rejected() -> None:
    with pytest.raises(TypeError):
        LocalProvider(taxonomy="crash")


def test_summary_via_provider(provider: LocalProvider) -> None:
    title, body = BUG
    summary = provider.summarise(title, body)
    assert 0 < len(summary) <= 300
    assert "Steps to reproduce" not in summary


def test_model_loaded_once_and_shared() -> None:
    first = get_model()
    seen: list[TypeModel] = []
    threads = [threading.Thread(target=lambda: seen.append(get_model())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(model is first for model in seen)
    assert LocalProvider().model is LocalProvider().model is first
    assert get_model.cache_info().currsize == 1


def test_probabilities_are_a_distribution() -> None:
    probs = get_model().predict_proba(*QUESTION)
    assert set(probs) == TYPES
    assert abs(sum(probs.values()) - 1.0) < 1e-9
    assert max(probs, key=lambda k: probs[k]) == "question"


SAMPLES = [
    "App crashes with segmentation fault when opening large files",
    "How do I configure the proxy?  Tabs\tand\nnew lines, a b c, x=1; Ünïcödé Größe 日本語",
    "ok",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_analysers_match_scikit_learn(text: str) -> None:
    """Training relies on these analysers reproducing TfidfVectorizer's defaults."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    assert word_ngrams(text) == words(text)
    assert sorted(char_ngrams(text, 2, 5)) == sorted(chars(text))


def test_long_words_get_no_character_ngrams() -> None:
    url = "https://example.com/" + "a" * 40
    assert char_ngrams(f"see {url}", 2, 5, max_word=30) == char_ngrams("see", 2, 5)


def test_repeated_prediction_is_stable() -> None:
    """The per-word n-gram cache must not change results."""
    model = get_model()
    first = model.decision(*BUG)
    for _ in range(3):
        assert (model.decision(*BUG) == first).all()
