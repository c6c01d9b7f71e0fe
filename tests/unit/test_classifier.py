"""The type classifier: the misfires issue 9 names, bug evidence, loading, bounded cost."""

from __future__ import annotations

import time

import pytest

from pipelines.providers.classifier import (
    MODEL_DIR,
    TypeModel,
    bug_evidence,
    get_model,
    is_non_english,
)

BUGS_THAT_READ_LIKE_SOMETHING_ELSE = {
    "security report (XSS)": (
        "XSS in the markdown preview",
        "A comment containing <script>alert(1)</script> executes JavaScript when the preview "
        "is opened. This is a stored cross-site scripting vulnerability.",
    ),
    "security report (injection)": (
        "SQL injection in the search endpoint",
        "Passing a quote in the q parameter lets an attacker run arbitrary SQL.",
    ),
    "regression": (
        "Go to definition no longer works in 1.85",
        "Since updating to 1.85, F12 does nothing. It worked in 1.84.",
    ),
    "regression in a proposal's words": (
        "Please restore the old tab behaviour",
        "This is a regression: after upgrading to 2.3 the tabs close on a single click.",
    ),
    "short bug report": ("Undo does not work in the terminal", ""),
    "short crash report": ("Crash on startup", ""),
    "Chinese crash report": (
        "程序启动时崩溃",
        "打开大文件时程序崩溃\uff0c报错 Segmentation fault (core dumped)。",
    ),
    "Japanese crash report": (
        "起動時にクラッシュする",
        "アプリを起動するとすぐにクラッシュします。エラー: EXC_BAD_ACCESS",
    ),
    "Spanish crash report": (
        "La aplicación se cierra al guardar",
        "Al guardar un archivo la aplicación se cierra con el error NullPointerException.",
    ),
    "German crash report": (
        "Absturz beim Öffnen großer Dateien",
        "Das Programm stürzt beim Öffnen einer 2 GB Datei ab.",
    ),
}


@pytest.mark.parametrize(
    ("title", "body"),
    BUGS_THAT_READ_LIKE_SOMETHING_ELSE.values(),
    ids=BUGS_THAT_READ_LIKE_SOMETHING_ELSE.keys(),
)
def test_named_misfires_are_bugs(title: str, body: str) -> None:
    assert get_model().predict(title, body) == "bug"


@pytest.mark.parametrize(
    ("title", "body", "label"),
    [
        (
            "How do I configure the proxy settings?",
            "Is there a way to set a proxy for the downloader with an environment variable?",
            "question",
        ),
        (
            "Feature request: export reports as PDF",
            "It would be nice to have an option to export the monthly report as a PDF file.",
            "feature",
        ),
        (
            "Add a security policy page to the docs",
            "It would be nice to document how to report vulnerabilities.",
            "feature",
        ),
    ],
)
def test_no_bug_evidence_where_there_is_none(title: str, body: str, label: str) -> None:
    if label != "feature":
        assert not bug_evidence(title, body)
    assert get_model().predict(title, body) == label


def test_bug_evidence_cues() -> None:
    assert bug_evidence("Crash when saving", "")
    assert bug_evidence("Editor", "It used to work in 1.2 and stopped working after 1.3.")
    assert bug_evidence("Login", "An attacker can bypass authentication: a security vulnerability.")
    assert bug_evidence("Export is broken", "")
    assert not bug_evidence("Export is broken?", "")  # a question about breakage
    assert not bug_evidence("Export", "Export to PDF is not supported; please add it. " * 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The app crashes when I open a file.", False),
        ("程序启动时崩溃\uff0c打开大文件时程序崩溃", True),
        ("アプリを起動するとすぐにクラッシュします", True),
        ("Al guardar un archivo la aplicación se cierra con un error.", True),
        ("Das Programm stürzt beim Öffnen einer Datei ab.", True),
        ("NullPointerException", False),  # too few words to say
        ("", False),
    ],
)
def test_non_english_detection(text: str, expected: bool) -> None:
    assert is_non_english(text) is expected


def test_model_loads_without_pickle_and_matches_the_cached_one() -> None:
    fresh = TypeModel.load(MODEL_DIR)
    cached = get_model()
    assert fresh is not cached
    assert fresh.labels == cached.labels == ("bug", "feature", "question")
    title, body = BUGS_THAT_READ_LIKE_SOMETHING_ELSE["regression"]
    assert (fresh.decision(title, body) == cached.decision(title, body)).all()


def test_model_load_within_budget() -> None:
    started = time.thread_time()
    TypeModel.load(MODEL_DIR)
    assert time.thread_time() - started <= 2.0


HOSTILE = {
    "10,000 blank lines": "\n" * 10_000,
    "emphasis run": "*a" * 25_000,
    "log-line dots": "at a" + ".a" * 25_000,
    "one 50,000-character word": "a" * 50_000,
    "error words": "Error " * 10_000,
    "CJK": "崩溃" * 25_000,
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_classified_in_bounded_time(body: str) -> None:
    """Within 50 ms of this thread's CPU, the best of three runs."""
    model = get_model()
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        model.predict("x" * 50_000, body)
        best = min(best, time.thread_time() - started)
    assert best <= 0.050
