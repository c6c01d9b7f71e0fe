"""Offline issue-type classifier (bug / feature / question).

The model is a linear softmax over four sparse, sublinear TF-IDF blocks -- word 1-2-grams
and character 2-5-grams (within word boundaries) of the title and, separately, of the
body, each L2-normalised and weighted -- plus a handful of dense structural cues. The
analysers reproduce scikit-learn's ``TfidfVectorizer`` defaults (lower-casing, token
pattern ``\\b\\w\\w+\\b``, ``char_wb``) on the raw text: measured by cross-validation, the
text normalisation of earlier versions (placeholders for URLs, paths, versions, ids)
cost accuracy on seen and unseen repositories alike.

Everything needed at prediction time is plain data: ``type_model.npz`` (numpy arrays,
loaded with ``allow_pickle=False``) and ``type_model.json`` (vocabularies and settings),
so loading a model file never executes code. Fitting lives in
:mod:`lab.training`; this module only predicts and does not import
scikit-learn.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import islice, pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.config import TITLE_MAX
from pipelines.providers.topics import MAX_BODY_CHARS, issue_prose, mentions

LABELS: tuple[str, ...] = ("bug", "feature", "question")
MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_STEM = "type_model"
FORMAT_VERSION = 2

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Sparse feature blocks: title words, title chars, body words, body chars.
BLOCKS: tuple[str, ...] = ("tw", "tc", "bw", "bc")

# --------------------------------------------------------------------------------------
# Analysers: the same as scikit-learn's TfidfVectorizer(analyzer="word"/"char_wb") with
# default settings, so that training (which calls these functions) and prediction agree.
# --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def word_ngrams(text: str, max_n: int = 2) -> list[str]:
    """Lower-cased word unigrams and (optionally) bigrams, as scikit-learn builds them."""
    tokens: list[str] = _TOKEN.findall(text.lower())
    if max_n >= 2:
        return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]
    return tokens


def word_char_ngrams(word: str, min_n: int = 2, max_n: int = 5) -> list[str]:
    """Character n-grams of one (lower-cased) word padded with spaces (``char_wb``)."""
    padded = f" {word} "
    length = len(padded)
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        if n >= length:
            grams.append(padded)  # a short word is counted once, whole
            break
        grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


def char_ngrams(text: str, min_n: int = 2, max_n: int = 5, max_word: int = 0) -> list[str]:
    """Character n-grams inside word boundaries of the lower-cased text.

    Words longer than ``max_word`` characters (URLs, paths, hashes) are skipped when
    ``max_word`` is positive.
    """
    grams: list[str] = []
    for word in text.lower().split():
        if max_word <= 0 or len(word) <= max_word:
            grams.extend(word_char_ngrams(word, min_n, max_n))
    return grams


@dataclass(frozen=True)
class FeatureConfig:
    """How the sparse blocks are built and weighted (chosen by cross-validation)."""

    body_limit: int = 10000  # only the start of very long bodies is analysed
    char_min: int = 2
    char_max: int = 5
    max_word: int = 0  # if > 0, longer "words" (URLs, paths, hashes) get no char n-grams
    title_weight: float = 0.8
    body_weight: float = 1.5
    dense_weight: float = 0.5
    bug_evidence_weight: float = 1.5  # added to the bug score when :func:`bug_evidence` holds

    def to_json(self) -> dict[str, int | float]:
        return asdict(self)

    def block_weight(self, block: str) -> float:
        return self.title_weight if block.startswith("t") else self.body_weight


def analyse(title: str, body: str, config: FeatureConfig) -> dict[str, list[str]]:
    """The sparse feature names of one issue, per block (used for training)."""
    title, body = title[:TITLE_MAX], body[: config.body_limit]
    return {
        "tw": word_ngrams(title),
        "tc": char_ngrams(title, config.char_min, config.char_max, config.max_word),
        "bw": word_ngrams(body),
        "bc": char_ngrams(body, config.char_min, config.char_max, config.max_word),
    }


# --------------------------------------------------------------------------------------
# Dense structural cues.
# --------------------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_FENCE = re.compile(r"(```|~~~)[^\n]*\n?(.*?)(?:\1|$)", re.S)
_TRACE_HINT = re.compile(
    # Linear: indentation is [ \t] (\s would run over blank lines from every line start),
    # and the text between "Exception" and its colon is bounded.
    r"Traceback \(most recent call last\)|^[ \t]+at [\w.$<>]+[ \t]*\("
    r"|^[ \t]*File \"[^\"\n]{1,500}\", line \d+"
    r"|\b(?:Segmentation fault|core dumped|SIGSEGV|SIGABRT|panicked at|Fatal error)\b"
    r"|^[ \t]*#\d+[ \t]+0x[0-9a-f]+|\bException\b[^\n:]{0,200}:\s|\wError: ",
    re.M | re.I,
)
_QUESTION_START = re.compile(
    r"(?i)(?:how|what|why|where|when|which|is|are|can|could|should|does|do)\b"
)

_CUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "steps",
        re.compile(r"steps? to repro|repro(?:duction)? steps|to reproduce|minimal repro", re.I),
    ),
    (
        "expected",
        re.compile(
            r"expected (?:behaviou?r|result|output)|actual (?:behaviou?r|result)|"
            r"current behaviou?r",
            re.I,
        ),
    ),
    (
        "error_words",
        re.compile(
            r"\b(?:error|errors|exception|crash\w*|fail\w*|broken|bug|wrong|incorrect|"
            r"segfault|regression)\b",
            re.I,
        ),
    ),
    (
        "not_work",
        re.compile(
            r"\b(?:does ?n[o']?t|doesn't|don't|not|cannot|can't|won't|unable to) (?:work|load|"
            r"compile|build|start|run|open|show)",
            re.I,
        ),
    ),
    (
        "question_words",
        re.compile(
            r"\b(?:how (?:do|can|to|should|does|would)|is (?:it|there) (?:possible|a way)|"
            r"what is|why (?:does|is|do)|any (?:idea|way|suggestion)|can (?:i|we|someone|"
            r"anyone)|could (?:someone|anyone|you)|i wonder|wondering|question)\b",
            re.I,
        ),
    ),
    (
        "feature_words",
        re.compile(
            r"\b(?:feature request|would be (?:nice|great|useful|helpful)|it would be|"
            r"add (?:support|an? option|the ability)|support for|please add|enhancement|"
            r"proposal|propose|suggest\w*|allow (?:users?|to|the)|ability to|option to|"
            r"new feature|should support|describe the (?:feature|solution))\b",
            re.I,
        ),
    ),
)


def dense_cues(title: str, body: str) -> list[float]:
    """Structural cues that transfer across projects (all in [0, 1])."""
    title = title[:TITLE_MAX]
    text = f"{title}\n{body}"
    no_code = _FENCE.sub(" ", _HTML_COMMENT.sub(" ", body))
    title_stripped = title.strip()
    cues = [
        1.0 if _TRACE_HINT.search(body) else 0.0,
        min(body.count("```") / 4.0, 1.0),
        1.0 if title_stripped.endswith("?") else 0.0,
        1.0 if "?" in title_stripped else 0.0,
        min(no_code.count("?") / 3.0, 1.0),
        1.0 if _QUESTION_START.match(title_stripped) else 0.0,
        min(math.log1p(len(body)) / 10.0, 1.0),
    ]
    for _, pattern in _CUE_PATTERNS:
        cues.append(sum(1 for _ in islice(pattern.finditer(text), 2)) / 2.0)
    for _, pattern in _CUE_PATTERNS:
        cues.append(1.0 if pattern.search(title) else 0.0)
    return cues


N_DENSE = 7 + 2 * len(_CUE_PATTERNS)


# --------------------------------------------------------------------------------------
# Bug evidence: a prior added to the bug score (not learned by the regression).
# --------------------------------------------------------------------------------------

_NOT_WORKING = re.compile(
    r"\b(?:does ?n[o']?t|doesn't|don't|do not|not|cannot|can't|won't|isn't|is not|no longer) "
    r"(?:work|working|load|start|open|show|run|save|respond|compile)\b|\bbroken\b|\bfails?\b",
    re.I,
)
# Error and crash words in the languages reporters write in most after English, plus an
# exception or error class name (``NullPointerException``, ``TypeError``).
_FOREIGN_FAILURE = re.compile(
    r"\b\w{0,60}(?:Exception|Error)\b|崩溃|闪退|报错|错误|异常|失败|クラッシュ|落ちる|エラー|"
    r"例外|오류|충돌|\b(?:absturz|abgestürzt|stürzt|fehler|se cierra|se bloquea|cuelga|"
    r"erreur|plante|planté|erro|falha|trava|travou|crash\w*|ошибк\w*|пада\w*|вылет\w*|"
    r"сбой|hata|çök\w*)",
    re.I,
)
_ENGLISH_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "be",
        "to",
        "of",
        "and",
        "in",
        "on",
        "at",
        "it",
        "this",
        "that",
        "when",
        "with",
        "for",
        "not",
        "no",
        "i",
        "you",
        "we",
        "my",
        "but",
        "have",
        "has",
        "can",
        "does",
        "do",
        "if",
    ]
)
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_LETTER = re.compile(r"[^\W\d_]")


def is_non_english(text: str) -> bool:
    """Prose mostly in another script, or in Latin script without English function words."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return False
    words = [w.lower() for w in _LATIN_WORD.findall(text)]
    ascii_letters = sum(len(w) for w in words)
    if ascii_letters < 0.7 * letters:
        return True
    english = sum(w in _ENGLISH_WORDS for w in words)
    return len(words) >= 4 and english < 0.05 * len(words)


def bug_evidence(title: str, body: str) -> bool:
    """Signs that an issue reports a defect, whatever else it reads like.

    A crash, a security hole or a regression is a bug even when it is written as a
    proposal or a question; so is a short report whose title says something does not
    work, and a report in another language that names an error or a crash. On the
    training file these cues barely move the scores (see docs/model-card.md); on projects
    the model has never seen they fix the misfires issue 9 names.
    """
    title = " ".join(title[:TITLE_MAX].split())
    raw = body[:MAX_BODY_CHARS]
    prose = issue_prose(title, raw)
    if any(mentions(topic, title, prose, raw) for topic in ("crash", "security", "regression")):
        return True
    if len(prose) < 400 and _NOT_WORKING.search(title) and not title.endswith("?"):
        return True
    text = f"{title}\n{prose[:2000]}"
    return is_non_english(text) and _FOREIGN_FAILURE.search(text) is not None


# --------------------------------------------------------------------------------------
# The fitted model.
# --------------------------------------------------------------------------------------

_EMPTY_IDX: IntArray = np.zeros(0, dtype=np.int64)
_CHAR_CACHE_LIMIT = 200_000  # distinct words whose n-gram indices are remembered


class TypeModel:
    """A fitted linear classifier over the TF-IDF blocks plus :func:`dense_cues`."""

    def __init__(
        self,
        vocabularies: Mapping[str, Sequence[str]],
        idf: FloatArray,
        coef: FloatArray,
        intercept: FloatArray,
        labels: Sequence[str] = LABELS,
        config: FeatureConfig | None = None,
    ) -> None:
        self.config = config or FeatureConfig()
        self.labels = tuple(labels)
        self.vocabularies = {block: list(vocabularies.get(block, ())) for block in BLOCKS}
        self.offsets: dict[str, tuple[int, int]] = {}
        self.index: dict[str, dict[str, int]] = {}
        start = 0
        for block in BLOCKS:
            terms = self.vocabularies[block]
            self.offsets[block] = (start, start + len(terms))
            self.index[block] = {term: start + i for i, term in enumerate(terms)}
            start += len(terms)
        self.n_sparse = start
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)  # (n_labels, n_sparse + N_DENSE)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        if self.idf.shape != (self.n_sparse,) or self.coef.shape != (
            len(self.labels),
            self.n_sparse + N_DENSE,
        ):
            raise ValueError("model arrays do not match the vocabulary")
        self._sparse_coef_t = np.ascontiguousarray(self.coef[:, : self.n_sparse].T)
        self._dense_coef_t = np.ascontiguousarray(self.coef[:, self.n_sparse :].T)
        self._char_cache: dict[str, dict[str, IntArray]] = {"tc": {}, "bc": {}}

    @property
    def vocabulary(self) -> list[str]:
        """All sparse feature names, ``block:term``, in column order."""
        return [f"{block}:{term}" for block in BLOCKS for term in self.vocabularies[block]]

    # ---- feature extraction -----------------------------------------------------------

    def _word_counts(self, block: str, text: str) -> tuple[IntArray, FloatArray]:
        index = self.index[block]
        counts: dict[int, int] = {}
        for gram in word_ngrams(text):
            i = index.get(gram)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            return _EMPTY_IDX, np.zeros(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return idx, tf

    def _char_counts(self, block: str, text: str) -> tuple[IntArray, FloatArray]:
        index = self.index[block]
        cache = self._char_cache[block]
        cfg = self.config
        max_word = cfg.max_word if cfg.max_word > 0 else len(text)
        parts: list[IntArray] = []
        repeats: list[int] = []
        for word, n in Counter(text.lower().split()).items():
            if len(word) > max_word:
                continue
            known = cache.get(word)
            if known is None:
                grams = word_char_ngrams(word, cfg.char_min, cfg.char_max)
                known = np.fromiter(
                    (i for i in map(index.get, grams) if i is not None), dtype=np.int64
                )
                if len(cache) >= _CHAR_CACHE_LIMIT:
                    cache.clear()
                cache[word] = known
            if known.size:
                parts.append(known)
                repeats.append(n)
        if not parts:
            return _EMPTY_IDX, np.zeros(0)
        lengths = np.fromiter((p.size for p in parts), dtype=np.int64, count=len(parts))
        all_idx = np.concatenate(parts)
        weights = np.repeat(np.asarray(repeats, dtype=np.float64), lengths)
        idx, inverse = np.unique(all_idx, return_inverse=True)
        tf = np.bincount(inverse, weights=weights, minlength=idx.size).astype(np.float64)
        return idx, tf

    def sparse_vector(self, title: str, body: str) -> tuple[IntArray, FloatArray]:
        """Column indices and values (per-block L2-normalised sublinear TF-IDF, weighted)."""
        title, body = title[:TITLE_MAX], body[: self.config.body_limit]
        all_idx: list[IntArray] = []
        all_values: list[FloatArray] = []
        for block, text in (("tw", title), ("tc", title), ("bw", body), ("bc", body)):
            if block in ("tw", "bw"):
                idx, tf = self._word_counts(block, text)
            else:
                idx, tf = self._char_counts(block, text)
            if not idx.size:
                continue
            values = (1.0 + np.log(tf)) * self.idf[idx]
            norm = float(np.sqrt(values @ values))
            if norm > 0:
                values *= self.config.block_weight(block) / norm
            all_idx.append(idx)
            all_values.append(values)
        if not all_idx:
            return _EMPTY_IDX, np.zeros(0)
        return np.concatenate(all_idx), np.concatenate(all_values)

    def dense_vector(self, title: str, body: str) -> FloatArray:
        cues = dense_cues(title, body[: self.config.body_limit])
        return np.asarray(cues, dtype=np.float64) * self.config.dense_weight

    # ---- prediction -------------------------------------------------------------------

    def decision(self, title: str, body: str) -> FloatArray:
        idx, values = self.sparse_vector(title, body)
        scores = self.intercept.copy()
        if idx.size:
            scores += values @ self._sparse_coef_t[idx]
        scores += self.dense_vector(title, body) @ self._dense_coef_t
        if self.config.bug_evidence_weight and bug_evidence(title, body):
            scores[self.labels.index("bug")] += self.config.bug_evidence_weight
        return scores

    def predict_proba(self, title: str, body: str) -> dict[str, float]:
        scores = self.decision(title, body)
        exp = np.exp(scores - scores.max())
        probs = exp / exp.sum()
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}

    def predict(self, title: str, body: str) -> str:
        return self.labels[int(np.argmax(self.decision(title, body)))]

    def predict_many(self, issues: Iterable[tuple[str, str]]) -> list[str]:
        return [self.predict(title, body) for title, body in issues]

    # ---- persistence (pickle-free) ----------------------------------------------------

    def save(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = directory / f"{MODEL_STEM}.npz"
        meta = directory / f"{MODEL_STEM}.json"
        np.savez_compressed(
            arrays,
            idf=self.idf.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=self.intercept,
        )
        meta.write_text(
            json.dumps(
                {
                    "format_version": FORMAT_VERSION,
                    "labels": list(self.labels),
                    "config": self.config.to_json(),
                    "vocabularies": self.vocabularies,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            ),
            encoding="utf-8",
        )
        return arrays, meta

    @classmethod
    def load(cls, directory: Path = MODEL_DIR) -> TypeModel:
        meta = json.loads((directory / f"{MODEL_STEM}.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported model format {meta.get('format_version')!r}")
        with np.load(directory / f"{MODEL_STEM}.npz", allow_pickle=False) as arrays:
            idf = arrays["idf"].astype(np.float64)
            coef = arrays["coef"].astype(np.float64)
            intercept = arrays["intercept"].astype(np.float64)
        return cls(
            vocabularies=meta["vocabularies"],
            idf=idf,
            coef=coef,
            intercept=intercept,
            labels=meta["labels"],
            config=FeatureConfig(**meta["config"]),
        )


@functools.lru_cache(maxsize=1)
def get_model() -> TypeModel:
    """The shipped model, loaded once per process (``get_model.cache_clear()`` forgets it)."""
    return TypeModel.load(MODEL_DIR)
