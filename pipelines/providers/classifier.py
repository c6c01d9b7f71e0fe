"""Offline issue-type classifier (bug / feature / question).

The model is a linear softmax over sparse TF-IDF features (word and character n-grams of
the title and the body, after a normalisation that removes project-specific tokens) plus
a handful of dense structural cues. Everything needed at prediction time is plain data:
``type_model.npz`` (numpy arrays, loaded with ``allow_pickle=False``) and
``type_model.json`` (vocabularies and settings), so loading a model file never executes
code. Fitting lives in :mod:`pipelines.providers.training`; this module only predicts
and does not import scikit-learn.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

LABELS: tuple[str, ...] = ("bug", "feature", "question")
MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_STEM = "type_model"
FORMAT_VERSION = 1

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------------------
# Text normalisation: keep wording, drop what only makes sense inside one project.
# --------------------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_FENCE = re.compile(r"(```|~~~)[^\n]*\n?(.*?)(?:\1|$)", re.S)
_TRACE_HINT = re.compile(
    r"Traceback \(most recent call last\)|^\s+at [\w.$<>]+\s*\(|^\s*File \"[^\"]+\", line \d+"
    r"|\b(?:Segmentation fault|core dumped|SIGSEGV|SIGABRT|panicked at|Fatal error)\b"
    r"|^\s*#\d+\s+0x[0-9a-f]+|\bException\b.*:\s|\w+Error: ",
    re.M | re.I,
)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|<img\b[^>]*>", re.I)
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?|ftp|file|chrome-extension)://\S+|\bwww\.\S+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_INLINE_CODE = re.compile(r"`([^`\n]{1,200})`")
_PATH = re.compile(
    r"(?:[A-Za-z]:)?(?:[\\/][\w.@+-]+){2,}[\\/]?|\b[\w-]+(?:[\\/][\w.-]+)+\.\w{1,5}\b"
)
_FILE = re.compile(
    r"\b[\w-]+\.(?:py|js|jsx|ts|tsx|cpp|cc|c|h|hpp|java|go|rs|json|ya?ml|txt|md|sh|so|"
    r"dll|exe|log|cmake)\b",
    re.I,
)
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I)
_VERSION = re.compile(r"\bv?\d+(?:\.\d+){1,3}(?:[-.+]?[a-z0-9]+)*\b", re.I)
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_CAMEL = re.compile(r"\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z]+[A-Z]\w*\b")
_SNAKE = re.compile(r"\b\w+_\w+\b")
_WS = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+|[?!]", re.UNICODE)


def _fence_token(match: re.Match[str]) -> str:
    content = match.group(2) or ""
    if _TRACE_HINT.search(content):
        return " zzstacktrace zzcodeblock "
    return " zzcodeblock "


def normalise(text: str) -> str:
    """Lower-cased text with code, URLs, paths, ids and numbers replaced by placeholders."""
    if not text:
        return ""
    text = _HTML_COMMENT.sub(" ", text)
    text = text.replace("_No response_", " ")
    text = _FENCE.sub(_fence_token, text)
    text = _IMAGE.sub(" zzimage ", text)
    text = _MD_LINK.sub(r" \1 ", text)
    text = _URL.sub(" zzurl ", text)
    text = _EMAIL.sub(" zzemail ", text)
    text = _HTML_TAG.sub(" ", text)
    text = _INLINE_CODE.sub(" zzcode ", text)
    text = _PATH.sub(" zzpath ", text)
    text = _FILE.sub(" zzfile ", text)
    text = _HEX.sub(" zzhex ", text)
    text = _VERSION.sub(" zzversion ", text)
    text = _NUMBER.sub(" zznum ", text)
    text = _CAMEL.sub(" zzident ", text)
    text = _SNAKE.sub(" zzident ", text)
    return _WS.sub(" ", text).strip().lower()


# --------------------------------------------------------------------------------------
# Analyzers (shared by training and prediction so both see identical features).
# --------------------------------------------------------------------------------------


def word_ngrams(text: str, prefix: str, max_n: int = 2) -> list[str]:
    """Unigrams and (optionally) bigrams of a normalised text, tagged with ``prefix``."""
    tokens = _WORD.findall(text)
    grams = [prefix + t for t in tokens]
    if max_n >= 2:
        grams.extend(f"{prefix}{a} {b}" for a, b in pairwise(tokens))
    return grams


def char_ngrams(text: str, prefix: str, min_n: int = 2, max_n: int = 5) -> list[str]:
    """Character n-grams inside word boundaries (like scikit-learn's ``char_wb``)."""
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if n > length:
                break
            grams.extend(prefix + padded[i : i + n] for i in range(length - n + 1))
    return grams


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
    """Structural cues that transfer across projects (all roughly in [0, 1])."""
    text = f"{title}\n{body}"
    no_code = _FENCE.sub(" ", _HTML_COMMENT.sub(" ", body))
    title_stripped = title.strip()
    cues = [
        1.0 if _TRACE_HINT.search(body) else 0.0,
        min(body.count("```") / 4.0, 1.0),
        1.0 if title_stripped.endswith("?") else 0.0,
        1.0 if "?" in title_stripped else 0.0,
        min(no_code.count("?") / 3.0, 1.0),
        1.0
        if re.match(
            r"(?i)(?:how|what|why|where|when|which|is|are|can|could|should|does|do)\b",
            title_stripped,
        )
        else 0.0,
        min(math.log1p(len(body)) / 10.0, 1.0),
        1.0 if re.search(r"^\s*[-*] \[[ xX]\]", body, re.M) else 0.0,
    ]
    for _, pattern in _CUE_PATTERNS:
        cues.append(min(len(pattern.findall(text)) / 2.0, 1.0))
    for _, pattern in _CUE_PATTERNS:
        cues.append(1.0 if pattern.search(title) else 0.0)
    return cues


N_DENSE = 8 + 2 * len(_CUE_PATTERNS)


@dataclass(frozen=True)
class FeatureConfig:
    """Which sparse feature blocks are built and how the body is truncated."""

    title_words: bool = True
    title_chars: bool = True
    body_words: bool = True
    body_chars: bool = False
    body_limit: int = 4000
    char_min: int = 2
    char_max: int = 5

    def to_json(self) -> dict[str, int | bool]:
        return dict(self.__dict__)


def analyse(title: str, body: str, config: FeatureConfig) -> list[str]:
    """All sparse feature names of one issue."""
    ntitle = normalise(title)
    nbody = normalise(body[: config.body_limit * 2])[: config.body_limit]
    grams: list[str] = []
    if config.title_words:
        grams.extend(word_ngrams(ntitle, "tw:"))
    if config.title_chars:
        grams.extend(char_ngrams(ntitle, "tc:", config.char_min, config.char_max))
    if config.body_words:
        grams.extend(word_ngrams(nbody, "bw:"))
    if config.body_chars:
        grams.extend(char_ngrams(nbody, "bc:", config.char_min, config.char_max))
    return grams


# --------------------------------------------------------------------------------------
# The fitted model.
# --------------------------------------------------------------------------------------


class TypeModel:
    """A fitted linear classifier over :func:`analyse` features plus :func:`dense_cues`."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        idf: FloatArray,
        coef: FloatArray,
        intercept: FloatArray,
        labels: Sequence[str] = LABELS,
        config: FeatureConfig | None = None,
        dense_weight: float = 1.0,
    ) -> None:
        self.vocabulary = list(vocabulary)
        self.index = {term: i for i, term in enumerate(self.vocabulary)}
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)  # (n_labels, n_sparse + N_DENSE)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.labels = tuple(labels)
        self.config = config or FeatureConfig()
        self.dense_weight = dense_weight
        n_sparse = len(self.vocabulary)
        if self.idf.shape != (n_sparse,) or self.coef.shape != (
            len(self.labels),
            n_sparse + N_DENSE,
        ):
            raise ValueError("model arrays do not match the vocabulary")
        self._sparse_coef_t = np.ascontiguousarray(self.coef[:, :n_sparse].T)
        self._dense_coef_t = np.ascontiguousarray(self.coef[:, n_sparse:].T)

    def sparse_vector(self, title: str, body: str) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """Indices and L2-normalised sublinear TF-IDF values of the known features."""
        counts: dict[int, int] = {}
        index = self.index
        for gram in analyse(title, body, self.config):
            i = index.get(gram)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[idx]
        norm = float(np.sqrt(values @ values))
        return idx, values / norm if norm > 0 else values

    def decision(self, title: str, body: str) -> FloatArray:
        idx, values = self.sparse_vector(title, body)
        scores = self.intercept.copy()
        if idx.size:
            scores += values @ self._sparse_coef_t[idx]
        dense = np.asarray(dense_cues(title, body), dtype=np.float64) * self.dense_weight
        scores += dense @ self._dense_coef_t
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
                    "dense_weight": self.dense_weight,
                    "vocabulary": self.vocabulary,
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
            vocabulary=meta["vocabulary"],
            idf=idf,
            coef=coef,
            intercept=intercept,
            labels=meta["labels"],
            config=FeatureConfig(**meta["config"]),
            dense_weight=float(meta["dense_weight"]),
        )


_MODEL: TypeModel | None = None
_MODEL_LOCK = threading.Lock()


def get_model() -> TypeModel:
    """The shipped model, loaded once per process (thread-safe lazy cache)."""
    global _MODEL
    model = _MODEL
    if model is None:
        with _MODEL_LOCK:
            model = _MODEL
            if model is None:
                model = TypeModel.load(MODEL_DIR)
                _MODEL = model
    return model
