"""Extractive summaries of GitHub issue reports.

The body is cleaned of everything that is not prose (issue-template headings and
boilerplate, checklists, HTML comments, fenced and indented code, stack traces, log lines,
tables, images, URLs, HTML), split into sentences, and the sentences closest to the
centroid of the issue (a TF-IDF-like bag of content words of the title and the body) are
kept, in their original order, within :data:`MAX_CHARS` characters. Pure Python + regex.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

MAX_CHARS = 300
MAX_SENTENCES = 1  # the hard limit is three; one scores best against human titles
SOFT_BUDGET = 180  # preferred length; a longer best sentence is still used, truncated
POSITION_BONUS = 0.25
ELLIPSIS = "…"

# ---- cleaning -------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.S | re.M)
_DETAILS = re.compile(r"<details\b.*?(?:</details>|\Z)", re.S | re.I)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|<img\b[^>]*>", re.I)
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"<?\b(?:https?|ftp|file|chrome-extension)://[^\s>)]+>?|\bwww\.[^\s)]+", re.I)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_HTML_ENTITY = re.compile(r"&(?:nbsp|amp|lt|gt|quot|#\d+);")
_EMPHASIS = re.compile(r"(\*\*|__|\*|(?<!\w)_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_INLINE_CODE = re.compile(r"`([^`\n]*)`")

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*$|^\s*#{1,6}\s*$")
_SETEXT_RULE = re.compile(r"^\s*(?:={3,}|-{3,}|\*{3,}|_{3,})\s*$")
_CHECKLIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])?\s*\[[ xX]?\]")
_TABLE = re.compile(r"^\s*\|.*\|\s*$|^\s*\|?\s*:?-{3,}")
_INDENTED_CODE = re.compile(r"^(?: {4,}|\t)\S")
_BOLD_LABEL = re.compile(r"^\s*(?:[-*+]\s*)?\*\*[^*]{1,60}\*\*:?\s*$")
_KEY_VALUE = re.compile(r"^\s*(?:[-*+]\s*)?[\w /()',.-]{2,70}(?:\([^)]*\))?\s*:\s*\S{0,40}\s*$")
_LOG_LINE = re.compile(
    r"^\s*(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\[\d|\[(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE)\]"
    r"|(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|FATAL|E\d{4}|W\d{4}|I\d{4})[\s:\]]"
    r"|at\s+[\w.$<>/:-]+\s*\(|at\s+[\w.$<>]+(?:\.[\w$<>]+)+\s*$|File \"|Traceback\b"
    r"|#\d+\s+0x|0x[0-9a-f]{6,}|\$ |> |>>> |\w+(?:Error|Exception): |\s*\^+\s*$)",
    re.I,
)
_BOILERPLATE = re.compile(
    r"(?:do not delete this|please (?:read|search|make sure|fill|provide|go to|note|see|use"
    r"|describe|include|ensure|check|confirm|answer|follow|attach|add|submit)|"
    r"read (?:our|the) (?:rules|guidelines|contributing|code of conduct)|"
    r"search existing issues|avoid creating duplicates|issue template|"
    r"(?:stack ?overflow|discussions? (?:forum|page)) for (?:help|support|questions)|"
    r"this (?:form|template) is|if you open a github issue|here is our policy|"
    r"thank(?:s| you) for (?:taking the time|reporting|filing|contributing)|"
    r"describe the (?:bug|feature|problem|issue|solution|alternatives?)|"
    r"^(?:type|issue type|version|os|os version|browser|platform|environment|"
    r"vs ?code version|extension version|node version|modes?|system info(?:rmation)?)\s*:|"
    r"clear and concise description|a clear description|"
    r"do you want to request a|is your (?:feature )?request related to|"
    r"does this (?:issue|bug) occur when|link to (?:the )?code example|"
    r"\b(?:operating system|compiler)\b.{0,20}(?:/|:)|\bversions?\s*:\s*\S|"
    r"i agree to|to the best of my knowledge|i (?:have )?(?:searched|checked|read|reported|"
    r"confirmed|updated)|extensions? (?:\(\d+\)|disabled)|"
    r"\bsee (?:details )?(?:at|in) (?:the )?(?:wiki|link)|"
    r"(?:e\.g\.|for example),? (?:linux|ubuntu|windows|macos)|automated\)|"
    r"^(?:n/?a|none|yes|no|nope|-)\.?$)",
    re.I,
)

_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9\u00c0-\uffff])|(?<=[.!?])\s{2,}|\n"
)
_ABBREVIATIONS = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|no|fig|mr|mrs|dr|st|resp|ver|v)\.|\b[A-Z]\.)$",
    re.I,
)
_BULLET_PREFIX = re.compile(r"^\s*(?:[-*+>•]|\d+[.)])\s+")
_CODE_CHARS = re.compile(r"[{}\[\]();=<>|\\$]")
MAX_PROSE_CHARS = 600
MAX_BODY_CHARS = 12000  # very long reports: only their beginning is summarised
_WS = re.compile(r"[ \t\u00a0]+")
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can cannot could did do does doing down
    during each few for from further had has have having he her here hers him his how i
    if in into is it its itself just me more most my no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their
    theirs them then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your yours get
    got using use used one like also still even may might must need want tried try
    trying seems seem thanks thank please hi hello hey issue problem
    """.split()  # noqa: SIM905
)


def _is_noise_line(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    return bool(
        _HEADING.match(line)
        or _SETEXT_RULE.match(line)
        or _CHECKLIST.match(line)
        or _TABLE.match(line)
        or _INDENTED_CODE.match(line)
        or _LOG_LINE.match(stripped)
        or _BOLD_LABEL.match(line)
        or (":" in line and len(stripped.split()) <= 8 and _KEY_VALUE.match(line))
    )


def clean_body(body: str) -> str:
    """The prose of an issue body: one paragraph per block, markup removed."""
    text = body[:MAX_BODY_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    text = _HTML_COMMENT.sub("\n", text)
    text = _FENCE.sub("\n\n", text)
    text = _DETAILS.sub("\n\n", text)
    text = _IMAGE.sub(" ", text)
    text = text.replace("_No response_", " ")
    kept: list[str] = []
    for line in text.split("\n"):
        if _is_noise_line(line):
            kept.append("")
            continue
        if "](" in line:
            line = _MD_LINK.sub(r"\1", line)
        if "://" in line or "www." in line:
            line = _URL.sub(" ", line)
        if "<" in line:
            line = _HTML_TAG.sub(" ", line)
        if "&" in line:
            line = _HTML_ENTITY.sub(" ", line)
        if "`" in line:
            line = _INLINE_CODE.sub(r"\1", line)
        if "*" in line or "_" in line:
            line = _EMPHASIS.sub(r"\2", line)
        line = _BULLET_PREFIX.sub("", line)
        kept.append(_WS.sub(" ", line).strip())
    # Join wrapped lines of one paragraph; blank lines separate paragraphs.
    paragraphs: list[str] = []
    current: list[str] = []
    for line in kept:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


def split_sentences(text: str) -> list[str]:
    """Sentences of cleaned text; does not split after common abbreviations."""
    pieces: list[str] = []
    for raw in _SENTENCE_SPLIT.split(text):
        piece = raw.strip()
        if not piece:
            continue
        if pieces and _ABBREVIATIONS.search(pieces[-1]) and "\n" not in raw:
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and not t.isdigit()]


def _is_prose(sentence: str, min_spaces: int = 2, min_letters: float = 0.6) -> bool:
    if sentence.count(" ") < min_spaces:
        return False
    compact = len(sentence) - sentence.count(" ")
    if sum(map(str.isalpha, sentence)) < min_letters * compact:
        return False
    if len(_CODE_CHARS.findall(sentence)) > max(2, len(sentence) // 25):
        return False
    return not _BOILERPLATE.search(sentence)


def truncate(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` if it fits, else cut at the last word boundary and end with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > 0 else cut[: limit - len(ELLIPSIS)]
    return cut.rstrip(" ,;:(\u2013\u2014-") + ELLIPSIS


def _ensure_period(sentence: str) -> str:
    return sentence if sentence[-1:] in ".!?…:\"')" else sentence + "."


def _vector(words: Iterable[str], weights: dict[str, float]) -> dict[str, float]:
    counts = Counter(words)
    return {w: (1.0 + math.log(n)) * weights.get(w, 1.0) for w, n in counts.items()}


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _title_summary(title: str) -> str:
    title = _WS.sub(" ", title).strip()
    return truncate(_ensure_period(title)) if title else ""


def summarise(title: str, body: str, max_chars: int = MAX_CHARS) -> str:
    """One to three salient sentences of ``body`` (or the title), at most ``max_chars``."""
    candidates = [truncate(s, MAX_PROSE_CHARS) for s in split_sentences(clean_body(body or ""))]
    sentences = list(dict.fromkeys(s for s in candidates if _is_prose(s)))  # no repeats
    if not sentences and not title.strip():
        # No title to fall back on: accept short fragments (e.g. an error message line).
        sentences = [s for s in candidates if _is_prose(s, min_spaces=1, min_letters=0.5)]
    if not sentences:
        return _title_summary(title)
    sentence_tokens = [tokens(s) for s in sentences]
    # Inverse "sentence frequency" down-weights words that are everywhere in the issue.
    n = len(sentences)
    sf: Counter[str] = Counter()
    for toks in sentence_tokens:
        sf.update(set(toks))
    weights = {w: math.log(1.0 + n / c) for w, c in sf.items()}
    title_tokens = tokens(title)
    centroid = _vector([t for toks in sentence_tokens for t in toks] + title_tokens * 3, weights)
    scored: list[tuple[float, int]] = []
    for i, toks in enumerate(sentence_tokens):
        position_bonus = POSITION_BONUS / (1 + i)
        length_penalty = 0.85 if len(sentences[i]) > 200 else 1.0
        scored.append(
            ((_cosine(_vector(toks, weights), centroid) + position_bonus) * length_penalty, i)
        )
    scored.sort(key=lambda item: (-item[0], item[1]))

    chosen: list[int] = []
    used = 0
    budget = min(max_chars, SOFT_BUDGET)
    for _, i in scored:
        length = len(sentences[i]) + (1 if chosen else 0)
        if used + length <= budget:
            chosen.append(i)
            used += length
        if len(chosen) >= MAX_SENTENCES:
            break
    if not chosen:
        best = scored[0][1]
        return truncate(sentences[best], max_chars)
    summary = " ".join(_ensure_period(sentences[i]) for i in sorted(chosen))
    if len(summary) > max_chars:
        summary = truncate(summary, max_chars)
    if len(summary) < 40 and title.strip():
        combined = f"{_ensure_period(title.strip())} {summary}"
        if len(combined) <= max_chars:
            return combined
    return summary
