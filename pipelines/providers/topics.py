"""Rule-based topic tags: word-boundary regexes, tuned for precision over recall."""

from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_TAXONOMY: tuple[str, ...] = (
    "documentation",
    "performance",
    "security",
    "ui",
    "build",
    "tests",
    "dependencies",
    "crash",
    "regression",
)

_I = re.I
MAX_BODY_CHARS = 8000  # topics are decided by the start of long reports

# Each topic: patterns searched in the title + summary + body prose (code stripped).
TOPIC_RULES: dict[str, tuple[re.Pattern[str], ...]] = {
    "documentation": (
        re.compile(
            r"\b(?:documentation|docs?|readme|docstrings?|tutorials?|typo in (?:the )?(?:docs?|"
            r"documentation|readme|comment)|api reference|man ?page|changelog)\b",
            _I,
        ),
    ),
    "performance": (
        re.compile(
            r"\b(?:performance|slow(?:er|ly|ness|down)?|latency|throughput|memory leak|"
            r"leaks? memory|high (?:cpu|memory|ram) usage|(?:cpu|memory|ram) usage|"
            r"takes (?:too )?(?:long|forever)|speed ?up|faster|optimi[sz](?:e|ation)|"
            r"bottleneck|laggy|out of memory|oom)\b",
            _I,
        ),
    ),
    "security": (
        re.compile(
            r"\b(?:security|vulnerab\w*|cve-\d{4}-\d+|exploit\w*|xss|csrf|"
            r"(?:sql|code|command|script) injection|"
            r"sanitiz\w*|privilege escalation|authenticat\w*|authoriz\w*|password|"
            r"credentials?|encrypt\w*|decrypt\w*|tls|ssl|certificate|malicious|dos attack|"
            r"denial of service|private keys?|secrets?)\b",
            _I,
        ),
    ),
    "ui": (
        re.compile(
            r"\b(?:ui|gui|ux|user interface|buttons?|dialogs?|context menu|tooltips?|sidebar|"
            r"toolbar|status ?bar|dark mode|light mode|color theme|render(?:s|ing|ed)? "
            r"(?:incorrectly|wrong|badly)|screen ?reader|accessibility|a11y|css|scrollbar|"
            r"hover|tab bar|window title)\b",
            _I,
        ),
    ),
    "build": (
        re.compile(
            r"\b(?:build (?:fails?|failure|error|broken|system)|fails? to (?:build|compile|link)|"
            r"compil(?:e|er|ation|ing) (?:error|fails?|failure|warning)|cmake|bazel|makefile|"
            r"autotools|configure script|linker|link(?:ing)? error|undefined reference|"
            r"webpack|babel|msbuild|gradle|maven|ninja|toolchain|cross[- ]compil\w*|"
            r"\bci\b|continuous integration|build from source|building from source)\b",
            _I,
        ),
    ),
    "tests": (
        re.compile(
            r"\b(?:unit tests?|tests? (?:fails?|failure|suite|case|coverage)|failing tests?|"
            r"flaky|test_\w+|\w+_test\b|functional tests?|integration tests?|pytest|jest|"
            r"gtest|googletest|unittest|test framework|ctest)\b",
            _I,
        ),
    ),
    "dependencies": (
        re.compile(
            r"\b(?:dependenc(?:y|ies)|upgrade \w+ to|bump(?:s|ed)? \w+|package\.json|"
            r"requirements\.txt|pip install|npm install|yarn|third[- ]party|"
            r"vendored|submodule|incompatible with \w+ (?:version|v?\d)|peer dep\w*|"
            r"protobuf version|numpy version|version conflict|lib\w+ version)\b",
            _I,
        ),
    ),
    "crash": (
        re.compile(
            r"\b(?:crash(?:es|ed|ing)?|segfaults?|segmentation fault|sigsegv|sigabrt|sigill|"
            r"core dumped|panic(?:s|ked)?|abort(?:s|ed)? (?:with|unexpectedly)|"
            r"fatal (?:error|exception|signal)|access violation|stack overflow error|"
            r"terminated unexpectedly|killed by signal|illegal instruction)\b",
            _I,
        ),
    ),
    "regression": (
        re.compile(
            r"\b(?:regression|regressed|used to work|worked (?:fine |well |correctly )?"
            r"(?:in|on|with|before)|was working (?:in|on|with|before)|since (?:upgrading|"
            r"updating|the (?:last|latest) (?:update|release|version))|after (?:upgrading|"
            r"updating) (?:to|from)|no longer works?|stopped working|broke in|broken since|"
            r"works? in (?:v?\d[\w.]*|the previous|older))\b",
            _I,
        ),
    ),
}

_CODE = re.compile(r"```.*?(?:```|\Z)|<!--.*?(?:-->|\Z)", re.S)
_URL = re.compile(r"\bhttps?://\S+", _I)
_STACK_FATAL = re.compile(r"\bfatal\b", _I)
_STACK_HINT = re.compile(r"Traceback \(most recent call last\)|^\s+at \S+ \(", re.M)


def _rule_for(word: str) -> re.Pattern[str]:
    """A taxonomy entry without built-in rules is matched by its own word (and plural)."""
    escaped = re.escape(word.strip())
    return re.compile(rf"(?<![\w-]){escaped}(?:s|es)?(?![\w-])", _I)


class TopicTagger:
    """Tags the topics of ``taxonomy`` that an issue clearly mentions, in taxonomy order."""

    def __init__(self, taxonomy: Sequence[str] = DEFAULT_TAXONOMY) -> None:
        seen: dict[str, None] = {}
        for entry in taxonomy:
            normalised = entry.strip().lower()
            if normalised:
                seen.setdefault(normalised, None)
        self.taxonomy: tuple[str, ...] = tuple(seen)
        self._rules: dict[str, tuple[re.Pattern[str], ...]] = {
            topic: TOPIC_RULES.get(topic, (_rule_for(topic),)) for topic in self.taxonomy
        }

    def tags(self, title: str, body: str, summary: str = "") -> list[str]:
        head = (body or "")[:MAX_BODY_CHARS]
        prose = _URL.sub(" ", _CODE.sub(" ", head))
        text = f"{title}\n{summary}\n{prose}"
        found: list[str] = []
        for topic, patterns in self._rules.items():
            if any(p.search(text) for p in patterns) or (
                topic == "crash" and _STACK_HINT.search(head) and _STACK_FATAL.search(head)
            ):
                found.append(topic)
        return found
