"""Fitting and honest evaluation of the issue-type classifier.

``python -m pipelines.providers.training train --data FILE --out DIR`` fits the shipped
model; ``cv`` and ``loro`` print the stratified 5-fold (NLBSE'24 metric: macro-F1 per
repository, averaged over repositories) and leave-one-repository-out estimates.
Only this module needs scikit-learn; prediction lives in :mod:`classifier`.
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
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from pipelines.providers.classifier import (
    LABELS,
    MODEL_DIR,
    FeatureConfig,
    TypeModel,
    analyse,
    dense_cues,
)

SEED = 20240415


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
    min_df: int = 2
    min_repos: int = 3  # a feature must occur in issues of at least this many repositories
    max_features: int = 60000
    c: float = 10.0
    dense_weight: float = 1.0


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
    grams: list[list[str]]
    dense: np.ndarray
    labels: np.ndarray
    repos: np.ndarray


def featurise(issues: Sequence[Issue], config: FeatureConfig) -> Featurised:
    return Featurised(
        grams=[analyse(i.title, i.body, config) for i in issues],
        dense=np.array([dense_cues(i.title, i.body) for i in issues], dtype=np.float64),
        labels=np.array([i.label for i in issues]),
        repos=np.array([i.repo for i in issues]),
    )


def _select_vocabulary(
    grams: Sequence[Sequence[str]], repos: Sequence[str], params: TrainParams
) -> tuple[list[str], np.ndarray]:
    df: Counter[str] = Counter()
    repo_sets: dict[str, set[str]] = {}
    for doc, repo in zip(grams, repos, strict=True):
        for term in set(doc):
            df[term] += 1
            repo_sets.setdefault(term, set()).add(repo)
    kept = [
        t for t, n in df.items() if n >= params.min_df and len(repo_sets[t]) >= params.min_repos
    ]
    kept.sort(key=lambda t: (-df[t], t))
    kept = sorted(kept[: params.max_features])
    n_docs = len(grams)
    idf = np.array([np.log((1 + n_docs) / (1 + df[t])) + 1.0 for t in kept], dtype=np.float64)
    return kept, idf


def _sparse_matrix(
    grams: Sequence[Sequence[str]], index: dict[str, int], idf: np.ndarray
) -> sp.csr_matrix:
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, doc in enumerate(grams):
        counts: Counter[int] = Counter(index[g] for g in doc if g in index)
        for c, n in counts.items():
            rows.append(r)
            cols.append(c)
            vals.append(1.0 + float(np.log(n)))
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(grams), len(index)))
    matrix = matrix.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)


def fit(data: Featurised, params: TrainParams = DEFAULT_PARAMS) -> TypeModel:
    vocabulary, idf = _select_vocabulary(data.grams, list(data.repos), params)
    index = {t: i for i, t in enumerate(vocabulary)}
    x_sparse = _sparse_matrix(data.grams, index, idf)
    x = sp.hstack([x_sparse, sp.csr_matrix(data.dense * params.dense_weight)]).tocsr()
    clf = LogisticRegression(C=params.c, max_iter=3000, random_state=SEED)
    clf.fit(x, data.labels)
    order = [list(clf.classes_).index(label) for label in LABELS]
    return TypeModel(
        vocabulary=vocabulary,
        idf=idf,
        coef=clf.coef_[order],
        intercept=clf.intercept_[order],
        labels=LABELS,
        config=params.config,
        dense_weight=params.dense_weight,
    )


def _subset(data: Featurised, idx: np.ndarray) -> Featurised:
    return Featurised(
        grams=[data.grams[i] for i in idx],
        dense=data.dense[idx],
        labels=data.labels[idx],
        repos=data.repos[idx],
    )


def _predict_featurised(model: TypeModel, data: Featurised) -> np.ndarray:
    index = model.index
    x_sparse = _sparse_matrix(data.grams, index, model.idf)
    scores = (
        x_sparse @ model._sparse_coef_t + (data.dense * model.dense_weight) @ model._dense_coef_t
    )
    scores += model.intercept
    return np.array(model.labels)[np.argmax(scores, axis=1)]


def macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float:
    return float(f1_score(truth, pred, labels=list(LABELS), average="macro", zero_division=0))


def nlbse_score(truth: np.ndarray, pred: np.ndarray, repos: np.ndarray) -> dict[str, float]:
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
    issues = load_issues(path)
    data = featurise(issues, params.config)
    strata = np.array([f"{r}|{y}" for r, y in zip(data.repos, data.labels, strict=True)])
    pred = np.empty(len(issues), dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    for train_idx, test_idx in splitter.split(np.zeros(len(issues)), strata):
        model = fit(_subset(data, train_idx), params)
        pred[test_idx] = _predict_featurised(model, _subset(data, test_idx))
    scores = nlbse_score(data.labels, pred.astype(str), data.repos)
    scores["pooled_macro_f1"] = macro_f1(list(data.labels), list(pred.astype(str)))
    return scores


def leave_one_repo_out(path: Path, params: TrainParams = DEFAULT_PARAMS) -> dict[str, float]:
    """Macro-F1 on each repository when the model is trained on the other ones."""
    issues = load_issues(path)
    data = featurise(issues, params.config)
    scores: dict[str, float] = {}
    for repo in sorted(set(data.repos.tolist())):
        train_idx = np.flatnonzero(data.repos != repo)
        test_idx = np.flatnonzero(data.repos == repo)
        model = fit(_subset(data, train_idx), params)
        pred = _predict_featurised(model, _subset(data, test_idx))
        scores[repo] = macro_f1(list(data.labels[test_idx]), list(pred))
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def train(path: Path, params: TrainParams = DEFAULT_PARAMS) -> TypeModel:
    """Fit the model on every issue of ``path``."""
    return fit(featurise(load_issues(path), params.config), params)


def _print_scores(title: str, scores: dict[str, float]) -> None:
    print(title)
    for key, value in scores.items():
        print(f"  {key:<28} {value:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.providers.training")
    parser.add_argument("command", choices=("train", "cv", "loro"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args(argv)
    if args.command == "train":
        model = train(args.data)
        arrays, meta = model.save(args.out)
        size = arrays.stat().st_size + meta.stat().st_size
        print(f"saved {arrays} and {meta} ({size / 1e6:.2f} MB, {len(model.vocabulary)} features)")
    elif args.command == "cv":
        _print_scores("stratified 5-fold CV (NLBSE'24 metric)", cross_validate(args.data))
    else:
        _print_scores("leave-one-repo-out macro-F1", leave_one_repo_out(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
