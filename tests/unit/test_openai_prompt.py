"""What the OpenAI-compatible provider sends: cleaned, bounded, sectioned (issue 9, item 6)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from pipelines.providers.openai import OpenAIProvider
from pipelines.providers.text import PROMPT_TEXT_MAX, prompt_text

TAXONOMY = ["documentation", "performance", "security", "ui", "build", "crash", "deploy"]
PROMPT_MAX = 6_000

LONG_BUG = (
    "<!-- Please search existing issues first -->\n"
    "### Is there an existing issue for this?\n\n- [X] I have searched the existing issues\n\n"
    "### Describe the bug\n\nExporting a project with more than 10,000 layers hangs forever "
    "at 99 percent. " + "The progress bar keeps moving but nothing is written. " * 400 + "\n\n"
    "### Steps to reproduce\n\n1. Open a project with 10,000 layers\n2. Choose File > Export\n\n"
    "### Expected behavior\n\nThe export finishes within a minute.\n\n"
    "### Relevant log output\n\n```\n"
    + "2024-05-01 10:00:00 DEBUG exporter: tick\n"
    * 600
    + 'Traceback (most recent call last):\n  File "export.py", line 9\n'
    "TimeoutError: export worker did not answer\n```\n\n"
    "<details><summary>System Info</summary>\n\n|Item|Value|\n|---|---|\n|Screen Reader|no|\n"
    "</details>\n\n### Environment\n\n- OS: Windows 11\n- App version: 4.2.0\n"
)


def _provider(replies: list[str], seen: list[dict[str, Any]]) -> OpenAIProvider:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        content = replies.pop(0)
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    return OpenAIProvider(
        base_url="https://llm.example.test/v1",
        api_key=None,
        model="m",
        taxonomy=TAXONOMY,
        transport=httpx.MockTransport(handler),
    )


def _prompt(payload: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in payload["messages"])


def test_a_50000_character_body_gives_a_bounded_prompt_with_the_key_sections() -> None:
    body = (LONG_BUG + "\nMore words that fill the report. " * 2_000)[:50_000]
    assert len(body) == 50_000
    seen: list[dict[str, Any]] = []
    with _provider(['{"summary": "ok"}', '{"tags": ["bug"]}'], seen) as provider:
        provider.summarise("Export hangs at 99%", body)
        provider.tag("Export hangs at 99%", body, "ok")
    for payload in seen:
        prompt = _prompt(payload)
        assert len(prompt) <= PROMPT_MAX, len(prompt)
        user = payload["messages"][1]["content"]
        for key in (
            "Exporting a project with more than 10,000 layers hangs forever",
            "Steps to reproduce: Open a project with 10,000 layers",
            "Expected behavior: The export finishes within a minute.",
            "Error: TimeoutError: export worker did not answer",
            "Environment: Windows 11",
        ):
            assert key in user, key
        for junk in ("existing issues", "<!--", "Screen Reader", "<details>", "DEBUG exporter"):
            assert junk not in user, junk


def test_prompt_text_shares_the_budget_between_sections() -> None:
    text = prompt_text("t", LONG_BUG)
    assert len(text) <= PROMPT_TEXT_MAX
    assert text.index("Describe the bug:") < text.index("Steps to reproduce:")
    assert text.index("Steps to reproduce:") < text.index("Expected behavior:")
    assert "[truncated]" in text.split("Steps to reproduce:")[0]


def test_the_summary_prompt_asks_for_specifics_and_names_the_taxonomy() -> None:
    seen: list[dict[str, Any]] = []
    with _provider(['{"summary": "ok"}'], seen) as provider:
        provider.summarise("t", "b")
    system = seen[0]["messages"][0]["content"]
    for topic in TAXONOMY:
        assert f'"{topic}"' in system
    for wanted in ("error or exception name", "versions", "platform", "expected"):
        assert wanted in system


def test_the_tag_prompt_explains_the_topics_and_forbids_template_text() -> None:
    seen: list[dict[str, Any]] = []
    with _provider(['{"tags": ["bug", "crash"]}'], seen) as provider:
        assert provider.tag("t", "b", "s") == ["bug", "crash"]
    system = seen[0]["messages"][0]["content"]
    assert "crash: the process dies" in system
    assert "never because of issue-template" in system
    assert '"deploy"' in system  # a custom topic is listed by name


def test_html_and_templates_are_cleaned_before_sending() -> None:
    seen: list[dict[str, Any]] = []
    body = (
        "<p>The <b>Save</b> button stays grey.</p><script>track()</script>\n"
        "**Describe the solution you'd like**\nEnable it once the form is valid."
    )
    with _provider(['{"summary": "ok"}'], seen) as provider:
        provider.summarise("Save disabled", body)
    issue = json.loads(seen[0]["messages"][1]["content"].split("\n", 1)[1].rsplit("\nEND", 1)[0])
    assert issue["title"] == "Save disabled"
    assert "The Save button stays grey." in issue["body"]
    assert "Enable it once the form is valid." in issue["body"]
    assert "track()" not in issue["body"]
    assert "<b>" not in issue["body"]


def test_a_huge_title_is_cut_in_the_prompt() -> None:
    seen: list[dict[str, Any]] = []
    with _provider(['{"summary": "ok"}'], seen) as provider:
        provider.summarise("word " * 10_000, "b")
    assert len(_prompt(seen[0])) <= PROMPT_MAX
