"""Fitting and honest evaluation of the issue-type classifier.

``python -m lab.training train --data FILE --out DIR`` fits the shipped
model; ``cv`` and ``loro`` print the stratified 5-fold (NLBSE'24 metric: macro-F1 per
repository, averaged over repositories) and leave-one-repository-out estimates.
Only this module needs scikit-learn; prediction lives in :mod:`pipelines.providers.classifier`.

The n-gram counts of every issue are computed once (with the analysers of
:mod:`pipelines.providers.classifier`, so training and prediction see identical
features); each fit then selects its vocabulary (document frequency on its own training
rows only), computes the idf and fits the logistic regression -- the same maths as
scikit-learn's ``TfidfVectorizer(sublinear_tf=True, min_df=...)`` per block.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from pipelines.providers.classifier import (
    BLOCKS,
    LABELS,
    MODEL_DIR,
    FeatureConfig,
    TypeModel,
    analyse,
    bug_evidence,
    dense_cues,
)

SEED = 20240415

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


@dataclass(frozen=True)
class Issue:
    title: str
    body: str
    label: str
    repo: str


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters, chosen by cross-validation on the training file."""

    config: FeatureConfig = field(default_factory=FeatureConfig)
    title_min_df: int = 2  # a title n-gram must occur in this many training issues
    body_min_df: int = 3
    c: float = 10.0

    def min_df(self, block: str) -> int:
        return self.title_min_df if block.startswith("t") else self.body_min_df


DEFAULT_PARAMS = TrainParams()


def load_issues(path: Path) -> list[Issue]:
    issues: list[Issue] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            issues.append(
                Issue(
                    title=row.get("title") or "",
                    body=row.get("body") or "",
                    label=row["label"],
                    repo=row.get("repo") or "unknown",
                )
            )
    return issues


@dataclass
class Featurised:
    """Raw n-gram counts per block over every term seen anywhere, plus dense cues."""

    counts: dict[str, sp.csr_matrix]
    terms: dict[str, list[str]]
    dense: FloatArray
    evidence: FloatArray  # 1.0 where classifier.bug_evidence holds
    labels: StrArray
    repos: StrArray


def featurise(issues: Sequence[Issue], config: FeatureConfig) -> Featurised:
    vocab: dict[str, dict[str, int]] = {block: {} for block in BLOCKS}
    cells: dict[str, tuple[list[int], list[int], list[int]]] = {
        block: ([], [], []) for block in BLOCKS
    }
    dense: list[list[float]] = []
    evidence: list[float] = []
    for row, issue in enumerate(issues):
        grams = analyse(issue.title, issue.body, config)
        for block in BLOCKS:
            index = vocab[block]
            rows, cols, vals = cells[block]
            for term, n in Counter(grams[block]).items():
                col = index.setdefault(term, len(index))
                rows.append(row)
                cols.append(col)
                vals.append(n)
        dense.append(dense_cues(issue.title, issue.body[: config.body_limit]))
        evidence.append(1.0 if bug_evidence(issue.title, issue.body) else 0.0)
    counts = {
        block: sp.csr_matrix(
            (np.asarray(cells[block][2], dtype=np.float64), (cells[block][0], cells[block][1])),
            shape=(len(issues), len(vocab[block])),
        )
        for block in BLOCKS
    }
    return Featurised(
        counts=counts,
        terms={block: list(vocab[block]) for block in BLOCKS},
        dense=np.asarray(dense, dtype=np.float64).reshape(len(issues), -1),
        evidence=np.asarray(evidence, dtype=np.float64),
        labels=np.array([i.label for i in issues]),
        repos=np.array([i.repo for i in issues]),
    )


def tfidf_block(counts: sp.csr_matrix, idf: FloatArray, weight: float) -> sp.csr_matrix:
    """Sublinear tf x idf, L2-normalised per row, times the block weight."""
    matrix = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    matrix.data = 1.0 + np.log(matrix.data)
    matrix = sp.csr_matrix(matrix.multiply(idf[np.newaxis, :]))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(weight / norms) @ matrix)


@dataclass
class Fitted:
    model: TypeModel
    columns: dict[str, IntArray]  # per block: the featurised columns the model kept

    def design(self, data: Featurised, rows: IntArray) -> sp.csr_matrix:
        cfg = self.model.config
        parts = []
        for block in BLOCKS:
            start, end = self.model.offsets[block]
            sub = data.counts[block][rows][:, self.columns[block]]
            parts.append(tfidf_block(sub, self.model.idf[start:end], cfg.block_weight(block)))
        parts.append(sp.csr_matrix(data.dense[rows] * cfg.dense_weight))
        return sp.csr_matrix(sp.hstack(parts))

    def decision(self, data: Featurised, rows: IntArray) -> FloatArray:
        """The model's scores for ``rows``: the linear part plus the bug-evidence prior."""
        scores = np.asarray(self.design(data, rows) @ self.model.coef.T + self.model.intercept)
        bug = self.model.labels.index("bug")
        scores[:, bug] += self.model.config.bug_evidence_weight * data.evidence[rows]
        return scores

    def predict(self, data: Featurised, rows: IntArray) -> StrArray:
        scores = self.decision(data, rows)
        best = np.asarray(np.argmax(scores, axis=1), dtype=np.int64)
        return np.asarray([self.model.labels[i] for i in best], dtype=np.str_)


def fit(data: Featurised, rows: IntArray, params: TrainParams = DEFAULT_PARAMS) -> Fitted:
    """Fit on the issues ``rows`` of ``data`` (vocabulary and idf from those rows only)."""
    n_docs = len(rows)
    vocabularies: dict[str, list[str]] = {}
    columns: dict[str, IntArray] = {}
    idfs: list[FloatArray] = []
    for block in BLOCKS:
        sub = data.counts[block][rows]
        df = np.asarray((sub > 0).sum(axis=0)).ravel()
        kept = np.flatnonzero(df >= params.min_df(block))
        order = sorted(kept.tolist(), key=lambda c: data.terms[block][c])  # deterministic
        columns[block] = np.asarray(order, dtype=np.int64)
        vocabularies[block] = [data.terms[block][c] for c in order]
        idfs.append(np.log((1.0 + n_docs) / (1.0 + df[columns[block]])) + 1.0)
    idf = np.concatenate(idfs)
    n_sparse = len(idf)
    placeholder = TypeModel(
        vocabularies=vocabularies,
        idf=idf,
        coef=np.zeros((len(LABELS), n_sparse + data.dense.shape[1])),
        intercept=np.zeros(len(LABELS)),
        labels=LABELS,
        config=params.config,
    )
    fitted = Fitted(placeholder, columns)
    x = fitted.design(data, rows)
    clf = LogisticRegression(C=params.c, max_iter=5000, random_state=SEED)
    clf.fit(x, data.labels[rows])
    order_labels = [list(clf.classes_).index(label) for label in LABELS]
    model = TypeModel(
        vocabularies=vocabularies,
        idf=idf,
        coef=clf.coef_[order_labels],
        intercept=clf.intercept_[order_labels],
        labels=LABELS,
        config=params.config,
    )
    return Fitted(model, columns)


def macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float:
    return float(f1_score(truth, pred, labels=list(LABELS), average="macro", zero_division=0))


def nlbse_score(truth: StrArray, pred: StrArray, repos: StrArray) -> dict[str, float]:
    """Macro-F1 per repository and their mean (the NLBSE'24 competition metric)."""
    scores = {
        repo: macro_f1(list(truth[repos == repo]), list(pred[repos == repo]))
        for repo in sorted(set(repos.tolist()))
    }
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def cross_validate(
    path: Path, params: TrainParams = DEFAULT_PARAMS, folds: int = 5
) -> dict[str, float]:
    """Stratified (by repository x label) k-fold; pooled predictions scored per repo."""
    data = featurise(load_issues(path), params.config)
    n = len(data.labels)
    strata = np.array([f"{r}|{y}" for r, y in zip(data.repos, data.labels, strict=True)])
    pred = np.empty(n, dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    for train_idx, test_idx in splitter.split(np.zeros(n), strata):
        pred[test_idx] = fit(data, train_idx, params).predict(data, test_idx)
    scores = nlbse_score(data.labels, pred.astype(str), data.repos)
    scores["pooled_macro_f1"] = macro_f1(list(data.labels), list(pred.astype(str)))
    return scores


def leave_one_repo_out(path: Path, params: TrainParams = DEFAULT_PARAMS) -> dict[str, float]:
    """Macro-F1 on each repository when the model is trained on the other ones."""
    data = featurise(load_issues(path), params.config)
    scores: dict[str, float] = {}
    for repo in sorted(set(data.repos.tolist())):
        train_idx = np.flatnonzero(data.repos != repo)
        test_idx = np.flatnonzero(data.repos == repo)
        pred = fit(data, train_idx, params).predict(data, test_idx)
        scores[repo] = macro_f1(list(data.labels[test_idx]), list(pred))
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def train(path: Path, params: TrainParams = DEFAULT_PARAMS) -> TypeModel:
    """Fit the model on every issue of ``path`` and check prediction-path parity."""
    issues = load_issues(path)
    data = featurise(issues, params.config)
    rows = np.arange(len(issues), dtype=np.int64)
    fitted = fit(data, rows, params)
    # The numpy-only predictor must reproduce the training design matrix exactly.
    sample = rows[:: max(1, len(rows) // 50)]
    expected = fitted.decision(data, sample)
    got = np.array([fitted.model.decision(issues[i].title, issues[i].body) for i in sample])
    if not np.allclose(expected, got, atol=1e-8):
        raise AssertionError("prediction features differ from training features")
    return fitted.model


def _print_scores(title: str, scores: dict[str, float]) -> None:
    print(title)
    for key, value in scores.items():
        print(f"  {key:<28} {value:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.training")
    parser.add_argument("command", choices=("train", "cv", "loro"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args(argv)
    if args.command == "train":
        model = train(args.data)
        arrays, meta = model.save(args.out)
        size = arrays.stat().st_size + meta.stat().st_size
        print(f"saved {arrays} and {meta} ({size / 1e6:.2f} MB, {model.n_sparse} features)")
    elif args.command == "cv":
        _print_scores("stratified 5-fold CV (NLBSE'24 metric)", cross_validate(args.data))
    else:
        _print_scores("leave-one-repo-out macro-F1", leave_one_repo_out(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
