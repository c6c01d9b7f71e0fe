"""lab.teacher's text cutting and lab.student's ridge regression onto teacher outputs.

The teacher itself (torch) is not run here: these check the parts whose mistakes would
silently corrupt an experiment -- windows that split words or leak past the body, and a
regression that does not reproduce what it was fitted on.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from lab.student import StudentParams, count_texts, fit_student
from lab.teacher import MAX_WINDOWS, WINDOW_CHARS, _windows, cut_texts
from lab.training import Issue


def test_windows_cut_at_whitespace_and_cover_the_body_start() -> None:
    words = [f"w{i:04d}" for i in range(2000)]
    body = " ".join(words)
    windows = _windows(body)
    assert len(windows) == MAX_WINDOWS
    assert windows[0].startswith("w0000 ")
    for window in windows:
        assert len(window) <= WINDOW_CHARS
        assert all(piece in words for piece in window.split())  # no word cut in two
    # consecutive windows overlap, so no text between them is skipped
    for first, second in pairwise(windows):
        assert second.split()[0] in first.split()


def test_short_bodies_give_one_window_or_none() -> None:
    assert _windows("Too short.") == []
    assert _windows("A body of one short paragraph that is long enough to keep.") == [
        "A body of one short paragraph that is long enough to keep."
    ]


def test_cut_texts_names_each_issue_once_per_kind() -> None:
    issues = [
        Issue("Crash on start", "It crashes " * 200, "bug", "a/x"),
        Issue("How do I?", "", "question", "a/y"),
    ]
    texts = cut_texts(issues)
    kinds = [(t.issue, t.kind) for t in texts if t.kind != "window"]
    assert kinds == [(0, "title"), (0, "opening"), (1, "title"), (1, "opening")]
    assert {t.issue for t in texts if t.kind == "window"} == {0}
    assert [t.text for t in texts if t.issue == 1] == ["How do I?", "How do I?"]


def test_ridge_student_reproduces_its_training_targets_and_generalises() -> None:
    """Texts built from word groups, targets the sum of per-group vectors: a linear map."""
    rng = np.random.default_rng(0)
    groups = [[f"g{g}w{i}" for i in range(3)] for g in range(12)]
    vectors = rng.normal(size=(12, 8))
    texts, targets = [], []
    for _ in range(300):
        chosen = rng.choice(12, size=3, replace=False)
        texts.append(" ".join(groups[g][rng.integers(3)] for g in chosen))
        targets.append(vectors[chosen].sum(axis=0))
    counts = count_texts(texts)
    y = np.asarray(targets)
    train = np.arange(250, dtype=np.int64)
    test = np.arange(250, 300, dtype=np.int64)
    student = fit_student(counts, train, y, StudentParams(alpha=0.01, use_chars=False))
    fitted = student.embed(counts, train)
    predicted = student.embed(counts, test)
    baseline = np.mean((y[test] - y[train].mean(axis=0)) ** 2)
    assert np.mean((fitted - y[train]) ** 2) < 0.05 * baseline
    assert np.mean((predicted - y[test]) ** 2) < 0.5 * baseline


def test_student_vocabulary_comes_from_training_texts_only() -> None:
    texts = ["alpha beta", "alpha beta", "gamma delta", "gamma delta"]
    counts = count_texts(texts)
    y = np.eye(4)
    student = fit_student(
        counts, np.array([0, 1], dtype=np.int64), y, StudentParams(use_chars=False)
    )
    # the unseen texts have no known n-gram: the student answers the training mean
    assert student.embed(counts, np.array([2], dtype=np.int64))[0] == pytest.approx(
        y[[0, 1]].mean(axis=0)
    )
