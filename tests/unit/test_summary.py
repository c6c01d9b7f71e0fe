"""Tests of the extractive issue summariser."""

from __future__ import annotations

import time

import pytest

from pipelines.providers.summary import MAX_CHARS, clean_body, summarise, truncate

TEMPLATE_BUG = """<!-- Please search existing issues to avoid creating duplicates. -->
### Is there an existing issue for this?

- [X] I have searched the existing issues

### Describe the bug

The export dialog closes immediately when I press the Save button on Windows.

### Steps to reproduce

1. Open the export dialog
2. Press Save

### Expected behavior

_No response_

### Relevant log output

```
Traceback (most recent call last):
  File "export.py", line 12, in <module>
    save()
ValueError: bad handle
```
"""


def test_template_boilerplate_and_code_are_removed() -> None:
    summary = summarise("Export dialog closes", TEMPLATE_BUG)
    assert "export dialog closes immediately" in summary
    for junk in ("###", "searched", "No response", "Traceback", "ValueError", "<!--", "[X]"):
        assert junk not in summary


def test_stack_trace_and_log_lines_skipped() -> None:
    body = (
        "The worker stops processing jobs after the database restarts.\n\n"
        "2024-01-02 10:00:01 ERROR worker: connection reset by peer\n"
        "    at com.example.Worker.run(Worker.java:42)\n"
        "    at java.base/java.lang.Thread.run(Thread.java:833)\n"
    )
    summary = summarise("Worker stops", body)
    assert summary.startswith("The worker stops processing jobs")
    assert "Worker.java" not in summary
    assert "connection reset" not in summary


def test_cap_and_no_mid_word_cut() -> None:
    long_sentence = "The renderer " + " ".join(["repaints"] * 120) + " forever."
    summary = summarise("Renderer loops", long_sentence)
    assert len(summary) <= MAX_CHARS
    assert summary.endswith("…")
    assert summary[:-1].rstrip().split()[-1] in {"renderer", "repaints", "The"}


def test_many_sentences_stay_within_limit_and_in_order() -> None:
    body = " ".join(
        f"Sentence number {word} talks about the cache eviction policy and memory."
        for word in ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    )
    summary = summarise("Cache eviction policy", body)
    assert 0 < len(summary) <= MAX_CHARS
    positions = [
        body.index(s.strip()) for s in summary.split(". ") if s.strip() and s.strip() in body
    ]
    assert positions == sorted(positions)


@pytest.mark.parametrize("body", ["", "   ", "```\ncode only\n```", "<!-- nothing -->"])
def test_empty_body_falls_back_to_title(body: str) -> None:
    assert summarise("Search box ignores accents", body) == "Search box ignores accents."


def test_empty_everything_gives_empty_string() -> None:
    assert summarise("", "") == ""


def test_unicode_preserved() -> None:
    body = "Die Übersetzung für „Größe“ fehlt im Menü. 日本語のラベルが文字化けします。"
    summary = summarise("Übersetzung fehlt", body)
    assert "Übersetzung" in summary
    assert "Größe" in summary


def test_urls_images_and_html_removed() -> None:
    body = (
        "![screenshot](https://example.com/a.png)\n"
        "<details><summary>Logs</summary>lots of logs here</details>\n"
        "The sidebar flickers when <b>resizing</b> the window, "
        "see https://example.com/x for a video."
    )
    summary = summarise("Sidebar flickers", body)
    assert "http" not in summary
    assert "<b>" not in summary
    assert "lots of logs" not in summary
    assert "sidebar flickers when resizing the window" in summary


def test_truncate_helper() -> None:
    assert truncate("short text", 300) == "short text"
    cut = truncate("alpha beta gamma delta", 12)
    assert cut == "alpha beta…"
    assert len(cut) <= 12


def test_clean_body_drops_checklists_and_headings() -> None:
    cleaned = clean_body("## Heading\n- [ ] I agree\n- [x] Done\nReal prose here.")
    assert cleaned == "Real prose here."


def test_speed_under_one_millisecond_for_2kb_body() -> None:
    body = (TEMPLATE_BUG + "\nThe dialog also flickers on resize. It happens every time.\n") * 3
    body = body[:2048]
    summarise("warm up", body)
    start = time.perf_counter()
    for _ in range(50):
        summarise("Export dialog", body)
    assert (time.perf_counter() - start) / 50 < 0.005


def test_feature_template_questions_and_environment_lines_skipped() -> None:
    body = (
        "**Is your feature request related to a problem? Please describe.**\n"
        "Do you want to request a *feature* or report a *bug*?\n"
        "OpenCV version: 4.x Operating System / Platform: Ubuntu 20.04\n\n"
        "The exporter cannot write files larger than four gigabytes on FAT drives."
    )
    summary = summarise("Large exports", body)
    assert summary == "The exporter cannot write files larger than four gigabytes on FAT drives."


def test_repeated_sentences_not_duplicated() -> None:
    body = "Give the build an option to produce static libraries.\n" * 3
    summary = summarise("Static libs", body)
    assert summary.count("static libraries") == 1
