"""Issue text, cleaned: HTML, Markdown, issue-form sections, sentences — in linear time.

GitHub issue bodies mix prose with issue-form headings and their placeholder answers,
checklists, system-information tables, HTML, fenced code, stack traces and logs. This
module turns a body into a :class:`ParsedIssue`: sections with a *role* (what happens,
expected behaviour, steps, environment, log, ...), their prose, their code, the first
salient error and the product version / platform. The summariser, the topic tagger and
the OpenAI prompt all read issues through it.

Every regular expression here is linear in its input (no nested or overlapping
quantifiers; bounded repetition where a pattern could fail late), inputs are bounded
before processing (:data:`TITLE_MAX`, :data:`BODY_MAX`), and the parsing itself is one
pass over the lines. ``tests/unit/test_text_cleaning.py`` holds the hostile inputs.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import lru_cache

TITLE_MAX = 1_000
BODY_MAX = 20_000  # what cleaning reads of a body: long reports say what matters first
PROMPT_BODY_MAX = 50_000  # the API accepts no longer body
MAX_SECTIONS = 200  # later headings are read as plain separators
TEMPLATE_SCAN = 2_000  # template instructions are short: a paragraph's start is checked

# Roles of sections, in the order the summariser prefers their prose.
PROBLEM = "problem"  # what happens / what is asked
ASK = "ask"  # proposed solution, desired behaviour
EXPECTED = "expected"
STEPS = "steps"
ERROR = "error"  # an "Error message" field: its text is the error
LOG = "log"
CODE = "code"
ENV = "env"
IGNORE = "ignore"
OTHER = "other"

# ---- heading roles --------------------------------------------------------------------

# (role, keywords): the first role with a keyword contained in the lower-cased heading wins.
_HEADING_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        IGNORE,
        (
            "checklist",
            "existing issue",
            "contribut",
            "code of conduct",
            "useful skills",
            "want to work on",
            "query string",
            "click to expand",
            "issue type",
            "custom code",
            "nightly",
            "do you want to request",
            "how often",
            "website or app",
            "mobile device",
            "willing to",
            "readiness",
            "here's why",
            "how did you obtain",
            "gpu model",
            "bazel",
            "have i written",
            "reproduced the bug",
            "alternatives",
            "force_builders",
            "summary (automated)",
            "extensions (",
            "a/b experiments",
        ),
    ),
    (ERROR, ("error message",)),
    (
        LOG,
        (
            "log",
            "call stack",
            "component stack",
            "traceback",
            "stack trace",
            "output",
            "screenshot",
            "crash report",
            "backtrace",
        ),
    ),
    (
        CODE,
        ("standalone code", "code to reproduce", "reproducible", "minimal code", "example code"),
    ),
    (PROBLEM, ("unexpected",)),  # "onClick creates unexpected behavior" is the problem
    (EXPECTED, ("expected",)),
    (STEPS, ("steps", "repro", "how to reproduce", "to reproduce")),
    (
        ENV,
        (
            "system info",
            "environment",
            "version",
            "platform",
            "operating system",
            "distribution",
            "compiler",
            "cuda",
            "python",
            "hardware",
            "installation",
            "installed from",
            "devtools package",
            "source",
            "device",
            "browser",
        ),
    ),
    (
        ASK,
        (
            "solution you",
            "proposed",
            "desired",
            "suggest",
            "proposal",
            "would you like",
            "possible fix",
            "possible solution",
        ),
    ),
    (
        PROBLEM,
        (
            "describe the bug",
            "bug description",
            "current behav",
            "actual behav",
            "detailed description",
            "description",
            "describe the problem",
            "what happened",
            "what is happening",
            "summary",
            "issue",
            "problem",
            "feature",
            "motivation",
            "what is the current",
            "question",
            "details",
            "context",
            "request",
        ),
    ),
)


@lru_cache(maxsize=4096)
def heading_role(heading: str) -> str:
    """The role of a section from its heading text (``OTHER`` when nothing matches)."""
    text = heading.strip().lower()[:200]
    if not text:
        return OTHER
    for role, keywords in _HEADING_ROLES:
        if any(k in text for k in keywords):
            return role
    return OTHER


# ---- HTML -----------------------------------------------------------------------------

# A tag: bounded name and attributes, so a stray "<" never makes the scan quadratic.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]{0,15})(?=[\s/>])([^<>]{0,500})>")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_BLOCK_TAGS = _words(
    "p div br li ul ol tr table thead tbody tfoot pre blockquote hr details section "
    "article header footer dl dt dd center figure figcaption main nav aside form html body"
)
# Elements with nothing to show, dropped when written with attributes (HTML pasted from an
# office program: ``<meta name=ProgId content=Excel.Sheet>``); a bare ``<link>`` in a
# sentence stays as written.
_EMPTY_TAGS = _words("meta link col colgroup base")
_INLINE_TAGS = _words(
    "a b i em strong span code kbd sub sup u s strike font mark small big ins del tt "
    "abbr cite q label var samp td th img picture source video audio input button g-emoji"
)
_HEADING_TAGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6", "summary"))
_DROP_TAGS = frozenset(("script", "style", "noscript", "template", "head", "svg", "iframe"))


# A <details> block is a section of its own; after it, the enclosing section goes on.
_DETAILS_OPEN = "\n\ue004\n"
_DETAILS_CLOSE = "\n\ue003\n"


def strip_html_comments(text: str) -> str:
    """Remove ``<!-- ... -->`` (an unclosed comment runs to the end). Linear."""
    if "<!--" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("<!--", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find("-->", start + 4)
        if end < 0:
            break
        out.append(" ")
        pos = end + 3
    return "".join(out)


def html_to_text(text: str) -> str:
    """HTML elements become their text; script/style and the like are dropped.

    Block elements end a line, ``<h1>``…``<h6>`` and ``<summary>`` become Markdown
    headings, unknown tags (``<Component>``, ``List<Mat>``) stay as written, and a
    script or style element written *inside a sentence* (``a comment containing
    <script>alert(1)</script> executes JavaScript``) stays as written too, so that
    dropping it never leaves a hole in the sentence. Entities are decoded.
    """
    if "<" not in text:
        return html.unescape(text) if "&" in text else text
    lower = text.lower()
    out: list[str] = []
    pos = 0
    while True:
        match = _TAG.search(text, pos)
        if match is None:
            out.append(text[pos:])
            break
        closing, name = match.group(1), match.group(2).lower()
        out.append(text[pos : match.start()])
        pos = match.end()
        if name in _DROP_TAGS and not closing:
            close = lower.find(f"</{name}", pos)
            close_end = lower.find(">", close) + 1 if close >= 0 else 0
            end = close_end if close_end > 0 else len(text)
            # Bounded looks either side: is the element inside a line of prose?
            before = text[max(0, match.start() - 200) : match.start()].rsplit("\n", 1)[-1]
            after = text[end : end + 200].split("\n", 1)[0]
            inline = before.strip() and after.strip() and "\n" not in text[match.start() : end]
            out.append(text[match.start() : end] if inline else "\n")
            pos = end
        elif name == "details":
            out.append(_DETAILS_CLOSE if closing else _DETAILS_OPEN)
        elif name in _HEADING_TAGS:
            out.append("\n" if closing else "\n### ")
        elif name in _BLOCK_TAGS:
            out.append("\n")
        elif name in _EMPTY_TAGS and match.group(3).strip():
            out.append(" ")
        elif name in _INLINE_TAGS:
            if name == "img" and not closing:
                out.append(" ")
        else:
            out.append(match.group(0))
    result = "".join(out)
    return html.unescape(result) if "&" in result else result


# ---- Markdown lines ---------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_BOLD_LABEL = re.compile(
    r"[ \t]*(?:[-*+][ \t]+)?\*\*((?:[^*\n]|\*(?!\*)){1,100})\*\*[ \t]*:?[ \t]*(.*)$"
)
# Bold template labels whose role is no keyword ("**Any extra information that might be
# useful in the debugging process.**", "**Any other info / logs**"): a section of their own,
# so the label is never read as the reporter's text.
_TEMPLATE_LABEL = re.compile(r"(?:\(optional\)[ \t]*)?any (?:other|extra) info(?:rmation)?\b", re.I)
_KEY_VALUE = re.compile(
    r"[ \t]*(?:[-*+][ \t]+)?(?:\*\*)?([A-Za-z][\w /&().,'#-]{0,60}?)(?:\*\*)?[ \t]*"
    r"(?::|=>)[ \t]*(.*)$"
)
_RULE = re.compile(r"[ \t]*(?:={3,}|-{3,}|\*{3,}|_{3,})[ \t]*$")
_CHECKLIST = re.compile(r"[ \t]*(?:[-*+]|\d{1,3}[.)])?[ \t]*\[[ xX]{0,2}\]")
_TABLE_ROW = re.compile(r"[ \t]*\|")
_INDENTED = re.compile(r"(?: {4}|\t)[ \t]*\S")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")
_QUOTE = re.compile(r"^[ \t]*>[ \t]?")

_LOG_PREFIX = re.compile(
    r"[ \t]*(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\[\d|\[(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE)\]"
    r"|(?:INFO|WARN|WARNING|DEBUG|TRACE|FATAL|E\d{4}|W\d{4}|I\d{4})[ \t:\]]"
    r"|(?://[ \t]?)?#(?:include|define|undef|ifn?def|if|endif|pragma)\b"
    r"|File \"|Traceback\b|#\d{1,4}[ \t]+0x|0x[0-9a-fA-F]{6,}|\$ |>>> |➤ |npm ERR!|-{2,}>"
    r"|\w{1,60}(?:Error|Exception)[ \t]+Traceback\b"
    r"|[ \t]*\^+[ \t]*$"
    # An Android tombstone: "*** *** ***", "Build fingerprint: '…'", "pid: 1, tid: 2, …".
    r"|\*{3}[ \t]\*{3}[ \t]\*{3}|Build fingerprint:|ABI:[ \t]'|Revision:[ \t]'|"
    r"Timestamp:[ \t]\d{4}-|pid:[ \t]\d{1,8},[ \t]tid:|uid:[ \t]\d{1,8}$|"
    r"signal[ \t]\d{1,3}[ \t]\(SIG"
    r"|(?:[a-z_]\w{0,40}\.){0,8}[A-Z]\w{0,60}?(?:Error|Exception)\b:)"
)
# "at foo.bar.Baz (file.js:1:2)" / "at a.b.c": every segment is separated by a dot that the
# segment class excludes, so a long "at a.a.a.a…" line is matched in one linear pass.
_STACK_FRAME = re.compile(r"[ \t]*at[ \t]+[\w$<>/-]+(?:\.[\w$<>/-]+)*[ \t]*(?:\(|$)")

# Inline Markdown.
# The target class excludes "(" and ")", so a scan stops at the next one: linear.
_IMAGE_MD = re.compile(r"!\[([^\[\]\n]{0,300})\]\([^()\n]{0,20000}\)")
_LINK_MD = re.compile(r"\[([^\[\]\n]{0,300})\]\([^()\n]{0,20000}\)")
# A link whose target runs past the end of the (bounded) text: its text is what is left.
_CUT_LINK = re.compile(r"!?\[([^\[\]\n]{0,300})\]\([^()\n]{0,100000}$")
_REF_LINK = re.compile(r"\[([^\[\]\n]{1,300})\]\[[^\[\]\n]{0,50}\]")
_URL = re.compile(r"<?\b(?:https?|ftp|file|chrome-extension)://[^\s<>)\]]{1,2000}>?", re.I)
_INLINE_CODE = re.compile(r"`{1,3}([^`\n]{0,500})`{1,3}")
# Emphasis markers only (not the text between them): no backtracking over the content,
# so a long "*a*a*a…" line costs one pass.
_EMPHASIS = re.compile(r"(?<![\w*])[*_]{1,3}(?=[^\s*_])|(?<=[^\s*_])[*_]{1,3}(?![\w*])")
_WS = re.compile(r"[ \t\u00a0\u3000]+")
_PLACEHOLDER = re.compile(
    r"(?:_?no response_?|n/?a|none|nan|-+|yes|no|nope|not applicable|doesn'?t apply|"
    r"\.+|tbd|todo|same as above|see above|\?+)[.!]?",
    re.I,
)


_GITHUB_REF = re.compile(
    r"github\.com/([\w.-]{1,100}/[\w.-]{1,100})/(?:issues|pull|discussions)/(\d{1,9})"
)
# A file or folder of a repository: github.com/owner/repo/blob/<ref>/<path>.
_GITHUB_PATH = re.compile(
    r"github\.com/[\w.-]{1,100}/[\w.-]{1,100}/(?:blob|tree)/[^/\s]{1,100}/([^\s?#]{1,300})"
)
_GITHUB_REPO = re.compile(r"github\.com/([\w.-]{1,100}/[\w.-]{1,100})/?(?:[?#]|$)")
_HOST = re.compile(r"://(?:www\.)?([^/\s:?#]{1,200})")
_PATH_MAX = 60


def _short_url(match: re.Match[str]) -> str:
    """A URL as a short reference, so a sentence keeps its words.

    owner/repo#123 for an issue or pull request, the file path for a file of a repository
    (``src/index/base.cpp``), owner/repo for a repository, else the host; links into
    GitHub's other pages and image hosts say nothing and are dropped.
    """
    whole = match.group(0).strip("<>")
    url = whole.rstrip(".,;:!?'\"")
    tail = whole[len(url) :]  # the sentence's punctuation after the URL stays
    ref = _GITHUB_REF.search(url)
    if ref:
        return f"{ref.group(1)}#{ref.group(2)}{tail}"
    path = _GITHUB_PATH.search(url)
    if path:
        found = path.group(1).rstrip("/.")
        short = found if len(found) <= _PATH_MAX else found.rsplit("/", 1)[-1][:_PATH_MAX]
        return f"{short}{tail}"
    repo = _GITHUB_REPO.search(url)
    if repo:
        return f"{repo.group(1)}{tail}"
    host = _HOST.search(url)
    if host and not host.group(1).endswith(("github.com", "githubusercontent.com", "imgur.com")):
        return f"{host.group(1)}{tail}"
    return f" {tail}"


def clean_inline(line: str) -> str:
    """Inline Markdown of one prose line to plain text (links keep their text).

    Code spans are kept as written (without their backticks): markup inside them
    ("it comes up like this `![Alt text](image.png)`") is what the reporter quoted, and a
    link whose text is code (``[`toTree`](src/x.js)``) keeps it. They are set aside while
    the rest is cleaned, then put back.
    """
    spans: list[str] = []
    if "`" in line:

        def keep(match: re.Match[str]) -> str:
            spans.append(match.group(1))
            return f"\ue005{len(spans) - 1}\ue006"

        line = _INLINE_CODE.sub(keep, line)
    line = _clean_markup(line)
    if spans:
        line = _KEPT_SPAN.sub(lambda m: _span_text(spans, m.group(1)), line)
    return _WS.sub(" ", line).strip()


_KEPT_SPAN = re.compile("\ue005(\\d{1,6})\ue006")


def _span_text(spans: list[str], index: str) -> str:
    i = int(index)
    return spans[i] if i < len(spans) else ""


def _clean_markup(line: str) -> str:
    if "](" in line:
        line = _IMAGE_MD.sub(" ", line)
        line = _LINK_MD.sub(r"\1", line)
        line = _CUT_LINK.sub(r"\1", line)
    if "][" in line:
        line = _REF_LINK.sub(r"\1", line)
    if "://" in line:
        line = _URL.sub(_short_url, line)
    if "*" in line or "_" in line:
        line = _EMPHASIS.sub("", line)
    return line


_SPAN = re.compile(r"\ue001(\d{1,6})\ue002")


def _span(spans: list[str], index: str) -> str:
    i = int(index)
    return f"`{spans[i]}`" if i < len(spans) else ""


# Instructions of the five projects' issue and pull-request templates (and their like):
# sentences that a reporter left in place, never content.
TEMPLATE_TEXT = re.compile(
    r"(?:if the current behaviou?r is a bug|your bug will get fixed much faster|"
    r"dependencies other than react|paste the link to your|do you want to request a|"
    r"is your feature request related to a problem|clear and concise description|"
    r"please make sure that this is a|as per our github policy|we only address code/doc|"
    r"you can collect some of this information|you can obtain the tensorflow version|"
    r"provide a reproducible test case|include any logs or source code|"
    r"if including tracebacks|large logs and files should be attached|"
    r"please go to stack ?overflow|here is our policy|it must be a bug, a feature request|"
    r"the form below must be filled|shouldn't be a tensorboard issue|why we have that policy|"
    r"developers respond to issues|work that benefits the whole community|"
    r"support only helps individuals|notifies thousands of people|"
    r"see you communicating an interesting problem|thanks? (?:you )?for taking the time|"
    r"search(?:ed)? (?:the )?existing issues|avoid creating duplicates|do not delete this|"
    r"i agree to contribute|to the best of my knowledge|i report the issue, it's not|"
    r"i checked the problem with documentation|i updated to the latest opencv|"
    r"there is reproducer code|the pr is proposed to the proper branch|"
    r"there is a reference to the original bug|there is accuracy test|"
    r"the feature is well documented and sample code|patch to opencv_extra|"
    r"occur when all extensions are disabled|will this change the current api|"
    r"who will benefit with this feature|describe the (?:bug|feature|problem|solution|"
    r"alternatives?|current behaviou?r|expected behaviou?r)|for guidance on contributing|"
    r"have you reproduced the bug|collect some of this information|tag:(?:bug|feature)_template|"
    r"be sure to convey here|describe the problem clearly here|^a bug happened!?$|"
    r"provide code to help us reproduce|provide a link to a github gist|"
    r"which versions? of react,? and which browser|did this work in previous versions of react|"
    r"if the conversion is successful, but the generated model is wrong|"
    r"model produces wrong results and/or has lesser accuracy|"
    r"model produces correct results, but it is slower than expected|"
    r"if converting tf rnn to tflite fused rnn ops|add issue description here)",
    re.I,
)


def is_log_line(line: str) -> bool:
    return bool(_LOG_PREFIX.match(line) or _STACK_FRAME.match(line))


# Marks of code in a line: a statement keyword at its start, a call, an operator, a
# command-line option, a URL, a line continuation.
_CODE_MARK = re.compile(
    r"^(?:import |from \S{1,100} import |def |class \w|return\b|const |let |var |function\b|"
    r"#|//|>>>|\$ |\./)|\b\w{1,60}\(|[=;{}<>$]|(?:^|(?<=\s))--?[A-Za-z]|://|\\$"
)
_PROSE_BLOCK_LINES = 40
_LONG_LINE_WORDS = 12  # a line this long may hold one "a = b" and still be a sentence


def looks_like_prose(line: str) -> bool:
    """Whether a line inside code is a sentence someone wrote: words, no marks of code."""
    text = line.strip()
    if len(text) > 1_000 or text.count(" ") < 3:
        return False
    compact = len(text) - text.count(" ")
    if sum(map(str.isalpha, text)) < 0.75 * compact:
        return False
    if text.count(" ") >= _LONG_LINE_WORDS and text.count(" = ") == 1:
        text = text.replace(" = ", " ")  # "by setting num_threads = 1 in the Interpreter"
    return not (_CODE_MARK.search(text) or is_log_line(text))


_SENTENCE_WORDS = 8  # an environment answer this long, ending like a sentence, is prose


def _written_sentence(line: str) -> bool:
    """A long line ending like a sentence, mostly letters: prose, wherever it was written."""
    if line.count(" ") < _SENTENCE_WORDS or line[-1:] not in ".?!" or is_log_line(line):
        return False
    compact = len(line) - line.count(" ")
    return sum(map(str.isalpha, line)) >= 0.75 * compact


_LABEL_END = ".,:;!?"
_LINK_LINE = re.compile(r"(?:[-*+][ \t]+)?(?:[\w .()-]{1,40}:[ \t]*)?<?(?:https?|ftp)://\S{1,2000}")


def _prose_block(block: str) -> list[str]:
    """The lines of a fenced block that is really prose (TensorFlow's old form fenced the
    "Current behaviour" answer as ```shell), else ``[]``."""
    lines = [line.strip() for line in block.split("\n") if line.strip()]
    if not lines or len(lines) > _PROSE_BLOCK_LINES:
        return []
    # A short label or aside ("Problem", "Expected Behaviour:", "Hi there!", "Thanks,")
    # counts neither way, nor does a line that only gives a link ("- https://…",
    # "Paper: https://…").
    telling = [
        line
        for line in lines
        if (line.count(" ") >= 3 or not line.rstrip(_LABEL_END).replace(" ", "").isalpha())
        and not _LINK_LINE.fullmatch(line)
    ]
    # A long sentence may name a call or a URL and still be a sentence someone wrote.
    prose = [line for line in telling if looks_like_prose(line) or _written_sentence(line)]
    return lines if prose and len(prose) >= 0.7 * len(telling) else []


def is_placeholder(text: str) -> bool:
    return not text.strip() or bool(_PLACEHOLDER.fullmatch(text.strip()))


# ---- the parsed issue -------------------------------------------------------------------


@dataclass
class Section:
    heading: str
    role: str
    inline: bool = False  # opened by a "Steps to reproduce:" line rather than a heading
    paragraphs: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)  # fenced/indented code and log lines

    @property
    def prose(self) -> str:
        return "\n".join(self.paragraphs)


@dataclass
class ParsedIssue:
    title: str
    sections: list[Section]
    env: list[tuple[str, str]]  # (key, value) pairs from system-information text
    has_body: bool

    def prose(self, roles: frozenset[str] | None = None) -> str:
        return "\n".join(
            s.prose
            for s in self.sections
            if s.paragraphs and (roles is None or s.role in roles) and s.role not in _NOISE
        )


_NOISE = frozenset((IGNORE, ENV, LOG, CODE))
# Sections whose fenced blocks may be prose in disguise.
_PROSE_ROLES = frozenset((PROBLEM, EXPECTED, ASK, CODE))
# Roles of a bold form label that ends a log or code section ("**Describe the solution you'd
# like**"): the reporter's prose follows, not more of the log.
_PROSE_LABELS = frozenset((PROBLEM, EXPECTED, ASK, STEPS))
_ENV_KEYS = (
    "version",
    "os",
    "platform",
    "operating system",
    "distribution",
    "compiler",
    "python",
    "browser",
    "node",
    "electron",
    "chromium",
    "cuda",
    "gpu",
    "bazel",
    "gcc",
    "device",
    "installation",
    "installed from",
    "library",
    "modes",
    "type",
    "commit",
    "date",
    "v8",
    "embedder",
    "user agent",
    "cpu",
    "memory",
    "ram",
    "sandboxed",
    "remote",
    "extensions",
    "react",
    "opencv",
    "tensorflow",
    "renderer",
    "webview",
    "screen reader",
    "vm",
    "load",
    "process argv",
    "arch",
    "kernel",
    "ide",
    "package",
    "shell",
    "terminal",
    "locale",
)


_ENV_KEY = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in _ENV_KEYS) + r")s?\b")


def _is_env_key(key: str) -> bool:
    words = key.lower().strip()
    if len(words) > 60 or len(words.split()) > 8:
        return False
    return _ENV_KEY.search(words) is not None


def _bound(title: str, body: str, max_body: int) -> tuple[str, str]:
    title = _WS.sub(" ", (title or "")[:TITLE_MAX].replace("\n", " ")).strip()
    body = (body or "")[:max_body].replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return title, body


def _split_fences(body: str) -> tuple[list[str], list[str]]:
    """Lines of ``body`` with each fenced block replaced by one marker line; the blocks."""
    lines = body.split("\n")
    out: list[str] = []
    blocks: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        opened = _FENCE_OPEN.match(lines[i])
        if not opened:
            out.append(lines[i])
            i += 1
            continue
        fence = opened.group(1)
        j = i + 1
        while j < n and not lines[j].lstrip().startswith(fence):
            j += 1
        blocks.append("\n".join(lines[i + 1 : j]))
        out.append(f"\ue000{len(blocks) - 1}")
        i = j + 1
    return out, blocks


# Template questions answered in a word or two: a paragraph after the answer is the
# reporter's own text.
_ANSWERED = re.compile(r"do you want to request", re.I)
ANSWER_WORDS = 5  # an answer longer than this may go on in the next paragraph


def parse_issue(title: str, body: str, max_body: int = BODY_MAX) -> ParsedIssue:
    """Sections, prose, code and environment of an issue. Linear in the (bounded) input."""
    title, body = _bound(title, body, max_body)
    has_body = bool(body.strip())
    body = strip_html_comments(body)
    lines, blocks = _split_fences(body)
    spans: list[str] = []

    def stash(match: re.Match[str]) -> str:
        spans.append(match.group(1))
        return f"\ue001{len(spans) - 1}\ue002"

    joined = "\n".join(lines)
    if "`" in joined:
        joined = _INLINE_CODE.sub(stash, joined)
    text = html_to_text(joined)
    if spans:
        text = _SPAN.sub(lambda m: _span(spans, m.group(1)), text)
    sections: list[Section] = [Section("", PROBLEM)]
    env: list[tuple[str, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            joined = " ".join(paragraph).strip()
            if TEMPLATE_TEXT.search(joined[:TEMPLATE_SCAN]):
                kept = [
                    p
                    for p in split_sentences(joined)
                    if not TEMPLATE_TEXT.search(p[:TEMPLATE_SCAN])
                ]
                joined = " ".join(kept)
            if joined and not is_placeholder(joined):
                last = sections[-1]
                if (
                    last.role == IGNORE
                    and len(last.paragraphs) == 1
                    and last.paragraphs[0].count(" ") < ANSWER_WORDS
                    and _ANSWERED.search(last.heading)
                ):
                    # React's old template: "Request a feature", then the request itself
                    # with no heading of its own.
                    last = Section("", PROBLEM)
                    sections.append(last)
                last.paragraphs.append(joined)
            paragraph.clear()

    def start(heading: str, role: str | None = None) -> Section:
        flush()
        section = Section(heading, heading_role(heading) if role is None else role)
        sections.append(section)
        return section

    outer: list[Section] = []
    lines_since_blank = 0
    for raw in text.split("\n"):
        line = raw.rstrip()
        current = sections[-1]
        if not line.strip():
            flush()
            lines_since_blank = 0
            continue
        lines_since_blank += 1
        if line == "\ue004":
            outer.append(current)
            continue
        if line == "\ue003":
            if outer:
                enclosing = outer.pop()
                flush()
                sections.append(Section(enclosing.heading, enclosing.role))
            continue
        if line.startswith("\ue000"):
            flush()
            index = line[1:].strip()
            if index.isdigit() and int(index) < len(blocks):
                block = blocks[int(index)]
                prose = _prose_block(block) if current.role in _PROSE_ROLES else []
                if prose:
                    for line in prose:
                        if line.count(" ") < 3 and heading_role(line) != OTHER:
                            start(line)  # "Expected Behaviour" inside the block
                        else:
                            paragraph.append(clean_inline(line))
                            flush()
                else:
                    current.code.append(block)
            continue
        heading = _ATX_HEADING.match(line)
        if heading and len(sections) >= MAX_SECTIONS:
            flush()
            continue
        if heading:
            start(clean_inline(heading.group(2) or "").rstrip("#").strip())
            continue
        if (
            _RULE.match(line)
            or _CHECKLIST.match(line)
            or _TABLE_ROW.match(line)
            or line.count("|") >= 2
        ):
            flush()
            continue
        label = _BOLD_LABEL.match(line) if "**" in line and len(sections) < MAX_SECTIONS else None
        if label and _TEMPLATE_LABEL.match(label.group(1).strip()):
            start(clean_inline(label.group(1)), OTHER)  # what follows is the reporter's
            rest = clean_inline(label.group(2))
            if rest and not is_placeholder(rest):
                paragraph.append(rest)
            continue
        if current.role == CODE and looks_like_prose(line):
            paragraph.append(clean_inline(line))  # "Hi: I compiled… and got this error"
            continue
        if (
            _INDENTED.match(line)
            and lines_since_blank == 1  # not a list item's wrapped continuation
            and current.role not in (LOG, CODE)
            and line.rstrip()[-1:] in ".?!"
            and looks_like_prose(line)
        ):
            paragraph.append(clean_inline(line))  # an indented sentence, not indented code
            continue
        # "**Describe the solution you'd like**" after "It was also mentioned in debug.log
        # file:" (which opened a log section): the form goes on, so its label is read below.
        form_goes_on = (
            label is not None
            and current.role in (LOG, CODE)
            and heading_role(label.group(1)) in _PROSE_LABELS
        )
        if not form_goes_on and (
            current.role in (LOG, CODE) or _INDENTED.match(line) or is_log_line(line)
        ):
            flush()
            current.code.append(line)
            continue
        if label and heading_role(label.group(1)) != OTHER:
            new = start(clean_inline(label.group(1)))
            rest = clean_inline(label.group(2))
            if rest and not is_placeholder(rest):
                if new.role == ENV:
                    env.append((new.heading, rest))
                elif new.role not in _NOISE or (new.role == CODE and looks_like_prose(rest)):
                    paragraph.append(rest)
            continue
        key_value = _KEY_VALUE.match(line) if (":" in line or "=>" in line) else None
        if key_value and _is_env_key(key_value.group(1)):
            flush()
            value = clean_inline(key_value.group(2))
            if value and not is_placeholder(value):
                env.append((key_value.group(1).strip(), value))
            continue
        if (
            key_value
            and len(key_value.group(2).split()) <= 3
            and heading_role(key_value.group(1)) == IGNORE
        ):
            flush()  # "Custom Code: Yes", "Issue Type: Bug": a form field and its answer
            continue
        if key_value and not key_value.group(2).strip():
            role = heading_role(key_value.group(1))
            if role != OTHER:  # "Steps to Reproduce:" on its own line
                start(key_value.group(1).strip()).inline = True
                continue
        cleaned = clean_inline(_QUOTE.sub("", _LIST_ITEM.sub("", line, count=1), count=1))
        if not cleaned:
            continue
        if current.role == ENV and not _written_sentence(cleaned):
            if not is_placeholder(cleaned):
                env.append((current.heading, cleaned))
            continue
        if current.role == ENV:
            # "### Python version\n3.10.9\nHello! Currently I can get the weights…": the
            # reporter went on writing under the last form field.
            current = Section("", PROBLEM)
            sections.append(current)
        compact = len(cleaned) - cleaned.count(" ")
        if sum(map(str.isalpha, cleaned)) < 0.5 * compact:
            flush()  # "{", "vsliv368:30146709", "1.2.3 | x64": code or data, not prose
            current.code.append(line)
            continue
        if (
            current.inline
            and current.paragraphs
            and not paragraph
            and not _LIST_ITEM.match(line)
            and lines_since_blank == 1
        ):
            # Prose after the list of an inline "Steps to reproduce:" label describes
            # the issue again: it is not a step.
            flush()
            current = Section("", PROBLEM)
            sections.append(current)
        if _LIST_ITEM.match(line):
            flush()  # list items are sentences of their own
            paragraph.append(cleaned)
            flush()
            continue
        paragraph.append(cleaned)
    flush()
    return ParsedIssue(
        title=title,
        sections=[s for s in sections if s.paragraphs or s.code],
        env=env,
        has_body=has_body,
    )


def clean_issue_text(title: str, body: str) -> str:
    """The title and the body's prose, one paragraph per line.

    Template headings and placeholder answers, checklists, system-information tables and
    environment lines, HTML (script/style dropped), code, stack traces and logs are removed.
    """
    parsed = parse_issue(title, body)
    return "\n".join(part for part in (parsed.title, parsed.prose()) if part)


# ---- sentences --------------------------------------------------------------------------

_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?…])[\"')\]]*[ \t]+(?=[\"'(\[]?[A-Z0-9\u00c0-\uffff])|(?<=[\u3002\uff01\uff1f])|\n"
)
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|eg|ie|etc|vs|cf|approx|incl|no|fig|mr|mrs|dr|st|resp|ver|v)\.|\b[A-Z]\.)$",
    re.I,
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def split_sentences(text: str) -> list[str]:
    """Sentences of cleaned text (Latin and CJK punctuation); not after abbreviations."""
    pieces: list[str] = []
    for raw in _SENTENCE_SPLIT.split(text):
        piece = raw.strip()
        if not piece:
            continue
        if pieces and _ABBREVIATION.search(pieces[-1][-12:]) and "\n" not in raw:
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def cjk_count(text: str) -> int:
    return len(_CJK.findall(text))


# ---- errors and environment -------------------------------------------------------------

_EXCEPTION = re.compile(
    r"(?:^|(?<=[\s(\[\"'`]))((?:[a-z_][\w]{0,40}\.){0,8}[A-Z]\w{0,60}?"
    r"(?:Error|Exception|Failure|Fault|Violation|Panic))\b(?::[ \t]*([^\n]{0,300}))?"
)
_FATAL = re.compile(
    r"\b(segmentation fault|core dumped|illegal instruction|bus error|"
    r"fatal error[^\n]{0,120}|aborted|abort trap|assertion[^\n]{0,60}failed(?:: [^\n]{1,120})?|"
    r"error message: [^\n]{5,160}|"
    r"undefined reference to [^\n]{1,120}|"
    r"(?:zsh|bash|sh): killed|npm ERR! code [A-Z]+|error C\d{4}[^\n]{0,120}|"
    r"error: [^\n]{5,300})\b",
    re.I,
)
# Not "\b": a version glued to its name ("tf2.12.0") starts after a letter, and must not
# start inside its own digits ("12.0").
_VERSION = re.compile(r"(?<![\d.])v?\d{1,4}(?:\.\d{1,6}){1,3}(?:[-+.]?[A-Za-z][\w.]{0,12})?")
_PRODUCTS = (
    ("tensorflow", "TensorFlow"),
    ("tf ", "TensorFlow"),
    ("opencv", "OpenCV"),
    ("react", "React"),
    ("vs code", "VS Code"),
    ("vscode", "VS Code"),
    ("devtools", "DevTools"),
    ("bitcoin", "Bitcoin Core"),
    ("python", "Python"),
    ("node", "Node.js"),
)
_OS_NAMES = (
    ("windows", "Windows"),
    ("darwin", "macOS"),
    ("macos", "macOS"),
    ("mac os", "macOS"),
    ("osx", "macOS"),
    ("ubuntu", "Ubuntu"),
    ("debian", "Debian"),
    ("centos", "CentOS"),
    ("fedora", "Fedora"),
    ("arch", "Arch Linux"),
    ("linux", "Linux"),
    ("android", "Android"),
    ("ios", "iOS"),
)


# Platform answers that name none: "all", "any".
_NO_PLATFORM = frozenset(("all", "any", "all platforms", "any platform", "cross-platform", "x"))


def find_error(parsed: ParsedIssue) -> str:
    """The most telling error of an issue: an exception with its message, else a fatal line.

    Error-message fields first, then logs, then code (for a Python traceback, its last
    exception line), then prose; an exception name without a message (a class a
    reproducer uses) only when none has one. ``""`` when there is none.
    """
    ordered: list[str] = []
    for section in parsed.sections:
        if section.role == ERROR:
            ordered.extend(section.paragraphs)
    # A log says what happened; code (a reproducer) names classes it uses: logs first.
    for section in parsed.sections:
        if section.role == LOG:
            ordered.extend(section.code)
    for section in parsed.sections:
        if section.role not in (ERROR, LOG):
            ordered.extend(section.code)
    code_chunks = len(ordered)  # fatal-line patterns are looked for in these only
    for section in parsed.sections:
        if section.role not in (ERROR, IGNORE, ENV):
            ordered.extend(section.paragraphs)
    bare = ""  # a name without a message (``tf.keras.losses.MeanAbsoluteError``): a fallback
    for chunk in ordered:
        best = ""
        traceback = "Traceback" in chunk
        for line in _candidate_lines(chunk, _EXCEPTION_HINTS):
            for match in _EXCEPTION.finditer(line):
                name = match.group(1).rsplit(".", 1)[-1]
                message = (match.group(2) or "").strip()
                best = f"{name}: {message}" if message else name
                break
            if best and not traceback:
                break  # the first exception outside a traceback; a traceback's last one
        if best and (":" in best or traceback):
            return best
        bare = bare or best
    if bare:
        return bare
    for chunk in ordered[:code_chunks]:
        if "error message:" in chunk:
            cli = _CLI_ERROR.search(chunk)
            if cli:  # bitcoin-cli: "error code: -32601\nerror message:\nMethod not found"
                return f"{cli.group(2).strip()} (error code {cli.group(1)})"
    for chunk in ordered[:code_chunks]:
        for line in _candidate_lines(chunk, _FATAL_HINTS):
            fatal = _FATAL.search(line)
            if fatal:
                return _without_location(fatal.group(1).strip())
    for chunk in ordered[code_chunks:]:  # in prose, only what cannot be a passing word
        for line in _candidate_lines(
            chunk, ("undefined reference", "segmentation fault", "error:")
        ):
            fatal = _PROSE_FATAL.search(line)
            if fatal:
                found = fatal.group(1) or fatal.group(2) or fatal.group(0)
                return found.strip(" \"'`")
    return ""


_CLI_ERROR = re.compile(
    r"error code:[ \t]{0,10}(-?\d{1,6})[ \t]{0,10}\r?\n[ \t]{0,10}error message:[ \t]{0,10}\r?\n"
    r"[ \t]{0,10}([^\n]{3,200})"
)


# "ERROR: /home/u/.cache/bazel/…/BUILD.bazel:3204:11: Compiling x failed": where is not what.
_LOCATION = re.compile(
    r"(error:[ \t]*)(?:[A-Za-z]:)?[^\s:]{1,400}:\d{1,6}(?::\d{1,6})?:[ \t]*", re.I
)
_LOCATION_KEEP = 20  # a message shorter than this after the location keeps it


def _without_location(error: str) -> str:
    """An ``error: <file>:<line>:<col>: message`` line without its file location."""
    match = _LOCATION.match(error)
    if match and len(error) - match.end() >= _LOCATION_KEEP:
        return match.group(1) + error[match.end() :]
    return error


_PROSE_FATAL = re.compile(
    r"undefined reference to [`'\"]?[ \t]?[\w:~<>]{1,120}|segmentation fault(?: \(core dumped\))?|"
    r"[A-Za-z]:\d{1,6}:\d{1,6}: ((?:fatal )?error: [^\n]{1,160})|"
    r"error: (\(-\d{1,4}:[^)\n]{1,60}\)[^\n]{0,160})",
    re.I,
)


_EXCEPTION_HINTS = ("Error", "Exception", "Failure", "Fault", "Violation", "Panic")
_FATAL_HINTS = (
    "fault",
    "dumped",
    "illegal",
    "error",
    "overflow",
    "fatal",
    "abort",
    "assert",
    "killed",
    "err!",
    "undefined",
)
_LINE_SCAN = 1_000  # of a line, what the error patterns read


def _candidate_lines(chunk: str, hints: tuple[str, ...]) -> list[str]:
    """Lines of ``chunk`` that contain one of ``hints`` (case-insensitive for lower-case
    hints), each cut to :data:`_LINE_SCAN` characters: the patterns run on few, short lines."""
    lower = hints[0].islower()
    out: list[str] = []
    for line in chunk.split("\n"):
        probe = line.lower() if lower else line
        if any(h in probe for h in hints):
            out.append(line[:_LINE_SCAN])
    return out


def _version(value: str) -> str:
    found = _VERSION.search(value[:60])
    return found.group(0) if found else ""


def environment(parsed: ParsedIssue) -> list[str]:
    """Up to two short environment facts: the product version and the platform."""
    product = ""
    platform = ""
    ranked = sorted(
        parsed.env,
        key=lambda kv: next(
            (i for i, (needle, _) in enumerate(_PRODUCTS) if needle in kv[0].lower()),
            len(_PRODUCTS),
        ),
    )
    for key, value in ranked:
        k = key.lower()
        v = value.lower()
        if not platform and re.search(r"\b(?:os|operating system|platform|distribution)\b", k):
            for needle, name in _OS_NAMES:
                at = v.find(needle)
                if at >= 0:
                    # The version next to the name: 'PRETTY_NAME="Ubuntu 22.04.2 LTS"'.
                    near = value[at : at + 40]
                    version = _version(near) if name not in ("Windows", "macOS") else ""
                    if name == "Windows":
                        release = re.search(r"\b(?:windows|win)[ \t]*(\d{1,2}|xp)\b", v)
                        version = release.group(1) if release else ""
                    platform = f"{name} {version}".strip()
                    break
            else:
                if (
                    len(value) <= 30
                    and any(c.isalpha() for c in value)
                    and value.lower().strip(" .") not in _NO_PLATFORM
                    and not value.startswith(":")  # an emoji code, ":grey_question:"
                ):
                    platform = value
        if not product and "version" in k:
            version = _version(value)
            if not version:
                continue
            for needle, name in _PRODUCTS:
                if needle in k or (needle.strip() in v and name != "Python"):
                    if name == "Python" and "python" not in k:
                        continue
                    if name == "Python":
                        break  # a Python version alone is not the product
                    product = f"{name} {version}"
                    break
    return [fact for fact in (product, platform) if fact]


# ---- a bounded, cleaned text for a language model -------------------------------------

PROMPT_TEXT_MAX = 4_000
TRUNCATED = " [truncated]"
_EXCERPT_MAX = 600
_SECTION_LABELS = {
    PROBLEM: "Description",
    ASK: "Proposed solution",
    EXPECTED: "Expected behaviour",
    STEPS: "Steps to reproduce",
    ERROR: "Error message",
    OTHER: "Other",
}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(TRUNCATED))]
    space = cut.rfind(" ")
    if space > len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip() + TRUNCATED


def _excerpt(parsed: ParsedIssue, max_lines: int = 8) -> str:
    """What matters of the code and logs: the lines that name an error, else the first
    distinct lines of the first block. Repeated lines appear once."""
    chunks = [c for s in parsed.sections for c in s.code if c.strip()]
    seen: set[str] = set()
    telling: list[str] = []
    for chunk in chunks:
        for line in _candidate_lines(chunk, _FATAL_HINTS):
            key = line.strip()[:200]
            if key and key not in seen:
                seen.add(key)
                telling.append(key)
        if len(telling) >= max_lines:
            break
    if telling:
        return "\n".join(telling[-max_lines:])
    first: list[str] = []
    for line in chunks[0].split("\n") if chunks else []:
        key = line.rstrip()[:200]
        if key.strip() and key not in seen:
            seen.add(key)
            first.append(key)
            if len(first) >= max_lines:
                break
    return "\n".join(first)


def prompt_text(title: str, body: str, limit: int = PROMPT_TEXT_MAX) -> str:
    """The issue body as a language model should see it: cleaned, sectioned, bounded.

    Prose sections keep their (normalised) headings in document order and share the
    budget fairly, so a huge first section never crowds out "Expected behaviour" or the
    steps; the error, the environment and a short excerpt of the first code or log
    block follow. At most ``limit`` characters.
    """
    parsed = parse_issue(title, body, PROMPT_BODY_MAX)
    tail: list[str] = []
    error = find_error(parsed)
    if error:
        tail.append(f"Error: {_clip(error, 300)}")
    env = environment(parsed)
    if env:
        tail.append(f"Environment: {', '.join(env)}")
    excerpt = _excerpt(parsed)
    if excerpt:
        tail.append(f"Code or log excerpt:\n{_clip(excerpt, _EXCERPT_MAX)}")
    tail_text = "\n".join(tail)
    budget = max(0, limit - len(tail_text) - 2)
    sections = [s for s in parsed.sections if s.paragraphs and s.role in _SECTION_LABELS]
    pieces: list[str] = []
    for i, section in enumerate(sections):
        label = section.heading or _SECTION_LABELS[section.role]
        text = f"{_clip(label, 80)}: {section.prose}"
        share = budget // (len(sections) - i)
        clipped = _clip(text, max(share, 0))
        if clipped:
            pieces.append(clipped)
            budget -= len(clipped) + 1
    head = "\n".join(pieces)
    result = f"{head}\n\n{tail_text}" if head and tail_text else head or tail_text
    return result[:limit]
