"""Rule-based topic tags, tuned for precision over recall.

An issue gets a topic only when the issue itself is about it: the rules read the title and
the body's prose as :func:`pipelines.providers.text.clean_issue_text` leaves it (issue-form
headings and placeholder answers, checklists, system-information tables, environment
lines, HTML, code, stack traces and logs removed), minus the template *questions* that
survive as prose (React's "Which versions of React ...", TensorFlow's "Have you reproduced
the bug with TF nightly?"). Each topic has two rule sets: a broader one for the title, where
a word is a claim ("Docs: ...", "Slow search"), and a stricter one for the body, where the
same word is often a passing mention ("I read the docs"). ``crash`` also reads the raw body
for a fatal-signal signature (a segfault in a pasted log is a crash wherever it appears),
and its prose evidence ("then it crashes") does not count beside a thrown error; ``build``
reads the raw body for a compiler's diagnostic (``x.cpp:12:34: error:``), which a pasted
build log shows and the prose never does.
``regression`` reads the prose one sentence at a time, skipping questions and doubts: a
sentence that says it worked in an older version ("works fine at version 1.78.1") or broke
with a newer one ("started happening with the recent update") is evidence.

Every pattern is linear in its input: literal alternations between word boundaries, no
nested or overlapping quantifiers; titles and bodies are bounded before any matching
(:data:`TITLE_MAX`, :data:`MAX_BODY_CHARS`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.config import DEFAULT_TAXONOMY, TITLE_MAX
from pipelines.providers.text import clean_issue_text

__all__ = [
    "DEFAULT_TAXONOMY",
    "MAX_BODY_CHARS",
    "Evidence",
    "TopicTagger",
    "explain",
    "issue_prose",
    "mentions",
]

# Titles longer than the API's own limit are cut to TITLE_MAX before any matching.
MAX_BODY_CHARS = 8000  # topics are decided by the start of long reports
MAX_PROSE_CHARS = 4000  # of the cleaned body: bounds the cost of the rules
_I = re.I


_WORD_START = r"\b(?<![-./])(?:"
_WORD_END = r")(?![\w-]|\.(?-i:[a-z]))"
# Each cue pattern's alternatives, each a pattern of its own: :func:`explain` names the one
# that fired (only there; tagging never reads this).
_CUES: dict[re.Pattern[str], tuple[str, ...]] = {}


def _words(*alternatives: str) -> re.Pattern[str]:
    """One case-insensitive pattern: any alternative, between word boundaries.

    A hyphen is part of a word (``--crash-reporter-id`` holds no ``crash``), a word after
    a dot is an attribute (``model.compile`` is no build), a word after a slash is a path
    segment (``tensorflow/compiler/mlir`` is no build) and a word before a dot and a letter
    is a file or module name (``optimize.mlir`` is no performance; ``failed.But``, a missing
    space, is still a word). The pattern
    starts with ``\\b`` rather than a look-behind so that the regex engine can skip, by the
    set of possible first characters, the positions where no alternative can start.
    """
    pattern = re.compile(_WORD_START + "|".join(alternatives) + _WORD_END, _I)
    _CUES[pattern] = tuple(_WORD_START + a + _WORD_END for a in alternatives)
    return pattern


def _or(words: re.Pattern[str], *raw: str) -> re.Pattern[str]:
    """``words`` or any of ``raw`` (patterns outside word boundaries, e.g. ``-Werror``)."""
    pattern = re.compile("|".join((words.pattern, *raw)), _I)
    _CUES[pattern] = (*_CUES[words], *raw)
    return pattern


@dataclass(frozen=True)
class Rule:
    """A topic's evidence: ``title`` is searched in the title, ``body`` in title and prose."""

    title: re.Pattern[str]
    body: re.Pattern[str]


_NOT_WORKING = r"(?! (?:doesn't|does not|didn't|did not|isn't|is not|aren't|are not|not) work)"
_DOC_NOUN = r"(?:docs?|documentation|readme|docstrings?|tutorials?|guide|api reference|man ?page)"

TOPIC_RULES: dict[str, Rule] = {
    "documentation": Rule(
        title=_words(
            r"docs?",
            r"documentation",
            r"documented",
            r"undocumented",
            r"document(?= (?:the|how|what|that|which|why|when|supported|all|new|missing)\b)",
            r"readme",
            r"docstrings?",
            r"tutorials?",
            r"typos?",
            r"changelog",
            r"release notes",
            r"add(?:s|ing)? (?:a |some )?notes? (?:for|about|on|to|that|when)",
            r"man ?page",
            r"api reference",
        ),
        body=_words(
            rf"{_DOC_NOUN} (?:is|are|seems?|was) (?:wrong|incorrect|outdated|out of date|"
            r"misleading|missing|unclear|incomplete|confusing|broken)",
            rf"(?:wrong|incorrect|outdated|misleading|missing|unclear|incomplete|broken) "
            rf"{_DOC_NOUN}",
            rf"(?:update|fix|improve|clarify|correct) (?:the )?{_DOC_NOUN}",
            r"typo in (?:the )?\w+",
            r"not (?:yet )?documented",
            r"undocumented",
            r"(?:should|must|needs? to) be (?:properly |better |clearly )?documented",
            r"docstrings?",
            # a request to write something into the docs ("something must be written in doc")
            rf"(?:should|must|could|needs? to|has to|would) be (?:\w+ )?(?:written|write|added|"
            rf"mentioned|noted|explained|described|clarified|stated) (?:in|into|to) "
            rf"(?:the |a )?{_DOC_NOUN}",
        ),
    ),
    "performance": Rule(
        title=_words(
            r"performance",
            r"perf",
            r"slow(?:er|ly|ness|s|down)?",
            r"latency",
            r"throughput",
            r"memory (?:leaks?|usage|consumption|footprint)",
            r"leaks? memory",
            r"(?:high|excessive|huge|increased) (?:cpu|gpu|memory|ram|disk)(?: usage)?",
            r"(?:cpu|gpu|ram) usage",
            r"takes (?:too )?(?:long|forever|\d+ ?(?:s|sec|seconds|minutes|min))",
            r"speed ?up",
            r"faster",
            r"optimi[sz](?:e|ed|es|ing|ation|ations)",
            r"bottleneck",
            r"laggy|lags?|lagging",
            r"out of memory|oom",
            r"sluggish(?:ness)?",
            r"time[- ]consuming",
            r"benchmark(?:s|ing|ed)?",
            # a resource leak ("leaks a listener", "disposable leak"), not a leaked secret
            r"leak(?:s|ing|ed)? (?:an? |the )?(?:\w+ )?(?:listeners?|disposables?|handles?|"
            r"resources?|threads?|sockets?|connections?|file descriptors?|objects?)",
            r"(?:listener|disposable|handle|resource|thread|socket|connection|file descriptor)s? "
            r"leaks?",
        ),
        body=_words(
            r"performance (?:issue|problem|regression|degradation|drop|hit|penalty)",
            r"(?:very|extremely|really|too|much|significantly|painfully) slow(?:er)?",
            r"slow(?:s)? down|slowdown",
            r"memory leaks?|leaks? memory",
            r"(?:high|excessive|huge|increased) (?:cpu|gpu|memory|ram)(?: usage)?",
            r"(?:takes?|took|taking) "
            r"(?:for )?(?:about |around |over |almost |nearly |more than |up to |at least )?"
            # a duration in hours is how long a job ran or will run (a rescan, an install script's
            # "It will take 2 hours!"), not a latency the issue is about
            r"\d+(?:\.\d+)?[- ]?(?:ms|s|sec|secs|seconds?|minutes?|mins?)",
            r"(?:takes?|took|taking) (?:too long|forever|ages)",
            r"\d+[- ](?:second|minute)s? (?:search|delay|wait|freeze|hang|lag|load|startup|"
            r"pause|stall)",
            r"out of memory|oom",
            r"latency",
            r"throughput",
            r"sluggish(?:ness)?",
            r"(?:cpu|gpu|memory|ram) (?:usage|utili[sz]ation|consumption|occupancy)(?: rate)? "
            r"(?:is |was |are |gets |goes )?(?:very |extremely |too |really |so )?(?:high|huge)",
            r"(?:needs?|takes?|took|requires?) (?:much |a lot |far |way )?more time",
            r"how (?:to|can i|do i|can we) (?:optimi[sz]e|speed (?:it )?up|accelerate)",
            r"(?:is|are|was|were|seems?|running|runs|getting|gets|becomes?|became) "
            r"(?:very |so |really |extremely |too |quite |a bit |noticeably |still |pretty |"
            r"painfully |unusably )?slow",
            r"(?:not|isn't|poorly|badly) optimi[sz]ed",
            r"(?:cpu|gpu|memory|ram|hardware|compute|computing) resources",
        ),
    ),
    "security": Rule(
        title=_words(
            r"security",
            r"vulnerab\w*",
            r"cve-\d{4}-\d{1,7}",
            r"exploit(?:s|able|ed)?",
            r"xss",
            r"csrf",
            r"cross[- ]site scripting",
            r"(?:sql|code|command|script|html|prototype) injection",
            r"privilege escalation",
            r"denial of service",
            r"d?dos attacks?|ddos",
            r"remote code execution|rce",
            r"sanitiz(?:e|ation|er) (?:bypass|issue)",
        ),
        body=_words(
            r"security (?:issue|vulnerability|bug|flaw|hole|risk|problem|concern|advisory)",
            r"vulnerab(?:le|ility|ilities)",
            r"cve-\d{4}-\d{1,7}",
            r"xss",
            r"csrf",
            r"cross[- ]site scripting",
            r"(?:sql|code|command|script|html|prototype) injection",
            r"privilege escalation",
            r"remote code execution",
            r"arbitrary code execution",
            r"malicious (?:code|input|user|attacker|website|page|script)",
        ),
    ),
    "ui": Rule(
        title=_words(
            r"ui",
            r"ux",
            r"user interface",
            # a button or menu that "doesn't work" reports the action behind it failing
            rf"buttons?{_NOT_WORKING}",
            r"dialogs?",
            r"context menu",
            r"menu ?bar",
            rf"menus?{_NOT_WORKING}",
            r"command (?:center|palette)",
            r"quick ?pick",
            r"pop-?ups?",
            r"(?:keyboard |mouse )?shortcuts?|key ?bindings?",
            r"inlay hints?",
            r"(?:chat|explorer|outline|timeline|search|scm|source control|debug|variables|watch|"
            r"problems|output|test|testing|extensions?|references|diff|split|side by side|zen|"
            r"notebook|welcome|tree|list) views?",
            r"editor groups?",
            r"(?:drawn|rendered|displayed) (?:incorrectly|wrong(?:ly)?)",
            r"looks? (?:disabled|misaligned|blurry|broken)",
            r"overlap(?:s|ped|ping)? with|ui overlaps?",
            r"discoverab(?:le|ility)",
            r"progress (?:indicator|bar)s?",
            r"contrast ratio",
            r"tooltips?",
            r"hover",
            r"sidebar|side bar",
            r"toolbar|tool bar",
            r"status ?bar",
            r"title ?bar",
            r"tab bar",
            r"activity bar",
            r"breadcrumbs?",
            r"minimap",
            r"scroll ?bar",
            r"dark (?:mode|theme)",
            r"light (?:mode|theme)",
            r"high contrast",
            r"(?:color|colour|icon) (?:theme|scheme)",
            r"themes?",
            r"icons?",
            r"font(?:s| size)?",
            r"layout",
            r"screen ?readers?",
            r"accessib(?:le|ility)",
            r"a11y",
            r"aria(?:-\w+)?",
            r"keyboard (?:navigation|focus|shortcut)",
            r"focus (?:is lost|lost|moves|outline)",
            r"accessible view",
            r"panel",
            r"qt|qml",
            r"profiler (?:ui|panel|tab)",
            r"components? (?:tab|panel|tree)",
            r"highlight(?:s|ed|ing)?",
            r"flicker(?:s|ed|ing)?",
            r"(?:editor|wrapping|wrapped|pinned|sticky) tabs?",
            r"settings (?:editor|ui)",
            r"widgets?",
            r"render(?:s|ed|ing)? (?:incorrectly|wrong|badly|blank)",
            r"(?:background|foreground|border|selection|cursor) colou?rs?",
            r"decorations?",
            r"usability",
            r"zoom (?:factor|level|in|out)",
            r"(?:timeline|results?|output|problems|components|profiler|console|network|"
            r"elements|settings|welcome|search|explorer) tabs?",
        ),
        # In the body a theme, a tooltip or "the user interface" is mostly where the reader
        # stands ("if you use the dark theme", "click the icon with the tooltip"); the title
        # names the surface an issue is about.
        body=_words(
            r"screen ?readers?",
            r"accessibility",
            r"a11y",
            r"accessible view",
            r"context menu",
            r"(?:is|are|looks?) (?:misaligned|cut off|truncated|invisible|unreadable|blurry)",
        ),
    ),
    "build": Rule(
        title=_or(
            _words(
                r"build(?:s|ing)? (?:fails?|failure|failed|error|errors|broken|break)",
                r"(?:fails?|failed|failing|unable|cannot|can't) to (?:build|compile|link)",
                r"(?:fix|fixes|fixed) (?:the )?(?:build|compilation|compile|compiler)",
                r"compil(?:e|er|ation|ing)(?: (?:error|errors|fails?|failure|warnings?))?",
                r"cmake",
                r"bazel build",
                r"bazel (?:error|errors|fails?|failed|failure|broken|version \d)",
                r"(?:error|problem|issue)s? (?:when |while )?(?:trying to )?"
                r"(?:build|building|compile|compiling)"
                r"(?! (?:the |a |my )?(?:model|graph|function))",
                r"build(?=:)",
                r"missing #?includes?",
                # Python wheels, not a mouse wheel or a wheel event
                r"(?<!mouse )(?<!scroll )(?<!the )(?<!a )wheels?"
                r"(?! (?:event|events|listener|handler|scroll\w*|zoom\w*|delta|click\w*|button))",
                r"(?:arm|arm64|aarch64|x86|x64|macos|windows|linux|debug|release|universal|static|"
                r"nightly|wasm|android|ios) (?:builds?|binaries)",
                # "builds for Windows on ARM", "Build with OpenVINO in Debug"
                r"builds? (?:for|on|with|against|in|using) (?:\w+ )?(?:windows|linux|macos|mac|"
                r"osx|arm|arm64|aarch64|android|ios|wasm|debug|release|cuda|openvino|msvc|mingw|"
                r"clang|gcc|ubuntu|raspberry)",
                r"^build(?:ing)? (?:with|against)(?= \w)",
                # Bitcoin Core's depends system, not "it depends on"
                r"depends(?=:)",
                r"depends (?:bdb|qt|boost|libevent|zeromq|miniupnpc|sqlite|build|system|"
                r"packages?|tree|(?-i:[A-Z][A-Z0-9_]{3,}))",
                r"makefile",
                r"autotools|autoconf|automake",
                r"configure script",
                r"linker|linking|link errors?",
                r"undefined (?:reference|symbol)",
                r"msbuild|msvc|visual studio 20\d\d",
                r"gradle|maven|ninja|webpack|rollup|esbuild|babel|vcpkg|conan",
                # packaging: the product's installer ("0.23 installer incompatible with ASLR")
                r"installers?",
                r"toolchain",
                r"cross[- ]compil\w*",
                r"build (?:system|from source|script|config(?:uration)?)",
                r"how to (?:build|compile)",
                r"(?:from|on) source",
                r"guix",
                r"no rule to make target",
                r"(?:gcc|clang)(?:[- ]?\d+)?",
                r"(?:ci|github actions) (?:build|job)",
                r"(?:pip )?wheel (?:build|package)",
                r"packaging",
            ),
            r"-Werror\b",
        ),
        body=_or(
            _words(
                r"build(?:s|ing)? (?:fails?|failure|failed|error|errors|broken|breaks)",
                r"(?:fails?|failed|failing|unable|cannot|can't) to (?:build|compile|link)",
                r"compil(?:e|ation|er) (?:error|errors|fails?|failure|failed)",
                r"(?:error|errors|fails?|failure) (?:when|while) (?:building|compiling|linking)"
                r"(?! (?:the |a |my |this |our )?(?:model|graph|function|keras))",
                r"(?:building|compiling|linking) (?:fails|failed|breaks)",
                r"undefined reference",
                r"linker (?:error|errors|fails?|failed)",
                r"link(?:ing)? errors?",
                r"(?<!n't )(?<!not )(?:build|building|built) from source",
                r"cmake (?:error|fails?|failed)",
                r"bazel build",
                r"ninja: build stopped",
                r"no rule to make target",
                r"configure: error",
                r"make: \*\*\*",
                r"compilation terminated",
                r"error C\d{4}",
                r"causing (?:the )?builds? to fail|builds? to fail",
                r"(?:cannot|can't|cant|can not|couldn't|could not|unable to) (?:be )?"
                r"(?:linked|compiled)",
                r"cmake --build",
                r"static lib(?:s|rary|raries)",
                r"(?:trying|tried|try|attempting) to (?:build|compile) (?:\w+ )?(?:from source|"
                r"(?:opencv|tensorflow|bitcoin(?: core)?|bitcoind|tflite|vs ?code) v?\d[\w.]*)",
            ),
            r"-Werror\b",
        ),
    ),
    "tests": Rule(
        title=_or(
            _words(
                r"tests?(?=:)",
                r"tests? (?:fails?|failed|failing|failure|failures|suite|framework|case|cases|"
                r"coverage|runner|harness|timeout|times out)",
                r"(?:failing|flaky|broken|intermittent) tests?",
                r"unit ?tests?",
                r"functional tests?",
                r"integration tests?",
                r"\w*_tests?",
                r"\w*tests?\.(?:py|cpp|js|ts|cc)",
                # A test named as the place where a wrong result shows ("... in Test_X.Y") is
                # where it was seen, not what the issue is about.
                r"(?<!\bin )test_\w+(?:\.\w+)*",
                r"(?:fail\w*|errors?|crash\w*|timeouts?) in test_\w+(?:\.\w+)*",
                r"\w*test-?renderer",
                r"how (?:to|do (?:i|we|you)|can (?:i|we|you)|should (?:i|we)) (?:unit )?test",
                r"testing (?:framework|library|utilities|utils)",
                r"test ?renderer",
                r"flaky|flakiness",
                r"(?<!while )(?<!when )(?<!during )(?<!after )testing",
                # the plural is the project's tests ("run the interface tests in the CI"); a
                # singular "test" is often a test *of* something the issue is about
                r"tests",
                r"intermittent(?:ly)? (?:fail\w*|error|timeout|issues?)",
                r"pytest|jest|gtest|googletest|unittest|ctest|mocha|vitest",
                r"fuzz(?:er|ing)?|fuzz (?:target|test|harness)",
                r"(?:address|thread|memory|undefined ?behaviou?r) ?sanitizer|[amtu]san",
            ),
            # a test target that fails: "//pkg/tests:optimize.mlir.test fails"
            r"[./:]tests? (?:fails?|failed|failing|failures?)\b",
        ),
        body=_words(
            r"tests? (?:fails?|failed|failing|failure|failures|times out|timed out)",
            r"(?:failing|flaky) tests?",
            r"flaky|flakiness",
            r"test suite (?:fails?|failed|is failing|breaks)",
            r"test framework",
            r"(?:failing|fails|failed) (?:on|in) (?:my|our|the) (?:unit )?tests",
            r"intermittent(?:ly)? (?:fail\w*|error\w*)|(?:seems|appears) to be intermittent",
        ),
    ),
    "dependencies": Rule(
        title=_words(
            r"dependenc(?:y|ies) (?:conflicts?|updates?|upgrades?|versions?|resolution|issues?|"
            r"hell|bump)",
            r"(?:update|upgrade|bump)(?:s|d|ed)? (?:the )?dependenc(?:y|ies)",
            r"(?:fails?|failed|failing|unable|cannot|can't) to install (?:via|with|using) \S+",
            r"error (?:occurs )?when installing",
            r"(?:upgrade|update|bump)(?:s|d|ed)? (?!vs ?code|vscode|to |from )\S+ (?:to|from) "
            r"v?\d+(?:\.\d+)+",
            r"requirements\.txt|requirements file",
            r"package\.json|package-lock\.json|yarn\.lock",
            r"(?:third[- ]party|3rd ?party) (?:librar(?:y|ies)|dependenc(?:y|ies)|packages?|"
            r"modules?|code)",
            r"(?<![/\\])3rdparty(?![/\\])",
            r"vendored|(?:git )?submodules? (?:update|updates|bump|version|commit|pointer)",
            r"git submodules?",
            r"peer dep(?:endency|endencies)?",
            r"version conflict",
            r"incompatible with \S+ (?:version|v?\d[\w.]*)",
            r"(?:pip|npm|yarn|conda) install",
            r"eresolve",
            r"(?:protobuf|numpy|keras|cuda|cudnn|ffmpeg|boost|qt|openssl|onnx|node) "
            r"(?:version|compatibility|incompatibility|v?\d+(?:\.\d+)+)",
            r"(?:is |are )?(?:incompatible|incompitable|not compatible) with (?:\w+ )?"
            r"v?\d+(?:\.\d+)+",
        ),
        body=_words(
            r"dependency (?:conflict|resolution|issue|problem|version|update|upgrade)",
            r"dependencies conflict",
            r"conflicting (?:dependencies|versions|peer)",
            r"peer dep(?:endency|endencies)",
            r"eresolve",
            r"could not resolve dependency",
            r"version conflict",
            r"(?:requires|needs|pins?) (?:\w+ )?(?:version )?(?:>=|<=|==|<|>)",
            r"(?<![/\\])3rdparty(?![/\\])",
            r"incompatible (?:with )?(?:numpy|protobuf|keras|python|cuda|cudnn) ",
        ),
    ),
    "crash": Rule(
        title=_words(
            r"crash(?:es|ed|ing)?(?! reporter)",
            r"segfaults?|segfaulting",
            r"segmentation fault",
            r"seg fault",
            r"sigsegv|sigabrt|sigill|sigbus|sigfpe",
            r"core dump(?:ed|s)?",
            r"abort(?:s|ed|ing)?",
            r"panic(?:s|ked)?",
            r"fatal (?:exception|signal)",
            r"access violation",
            r"dies|died",
            r"terminat(?:es|ed) unexpectedly",
            r"illegal instruction",
            r"(?:silently |suddenly |unexpectedly )(?:stops?|kills?|terminates?|exits?|quits?|"
            r"closes?|dies)",
            r"(?:stops?|kills?|terminates?) (?:the )?(?:python |node |whole |main )?process",
            # TensorFlow's CHECK macro aborts the process ("Check failed when running tf.x")
            r"check[- ]fail(?:ed|ure|s) (?:when|while) (?:running|calling|executing)",
            r"internal assertion failure",
            r"(?:launch(?:es|ing)?|open(?:s|ing)?|start(?:s|ing)?) and (?:then )?(?:immediately )?"
            r"(?:quits?|quitting|closes?|closing|exits?|exiting)",
        ),
        body=_words(
            r"(?:it|app|application|process|program|server|editor|node|bitcoind|python|"
            r"kernel|window|extension host|renderer|browser|tab) (?:crash(?:es|ed)|"
            r"(?:is|was|keeps) crashing)",
            r"crash(?:es|ed)? (?:with|on startup|at startup|immediately|every time|"
            r"when (?:i|we|you|the|it|opening|running|calling|loading|starting|trying)|"
            r"while (?:running|loading|opening|calling)|(?:the|my) (?:app|application|"
            r"process|program|server|editor|node|kernel|browser))",
            r"segfaults?|segfaulting",
            r"segmentation fault",
            r"sigsegv|sigabrt|sigill|sigbus",
            r"core dumped",
            r"abort(?:s|ed)? (?:with|unexpectedly|when|while|on)",
            r"fatal signal",
            r"access violation",
            r"terminated unexpectedly",
            r"killed by signal",
            r"illegal instruction",
            r"(?:quits?|closes?|exits?|shuts? down|disappears?) (?:unexpectedly|abruptly|silently|"
            r"suddenly|without (?:any )?(?:errors?|warnings?|messages?))",
            r"(?:silently|suddenly|unexpectedly) (?:stops?|exits?|quits?|dies|closes?|terminates?)",
            r"(?:stops?|terminates?) the (?:python |node |whole |main )?process",
            r"process (?:dies|died|is killed|was killed|gets killed|got killed)",
        ),
    ),
    "regression": Rule(
        title=_words(
            r"regress?ion(?! tests?\b)",
            r"regressed",
            r"no longer",
            # "... after update", "Since latest update, ..." (not "after the update of the state")
            r"(?:after|since) (?:an? |the )?(?:latest|recent|last|new|newest) (?:\w+ )?"
            r"(?:update|upgrade)",
            r"(?:after|since) (?:an? )?(?:update|upgrade|updating|upgrading)(?=\s*(?:$|[,.;:!)]))",
            r"stopped working",
            r"used to work",
            r"broken (?:since|after|in) v?\d[\w.]*",
            r"(?:since|after) (?:upgrading|updating|update|upgrade) (?:to )?v?\d[\w.]*",
            # "... after version 1.79.0", "after TF 2.11" (not "after 2.5 seconds")
            r"after (?:version |updating to |upgrading to |\w+ )?v?\d+(?:\.\d+)+"
            r"(?![\d.]| ?(?:s|secs?|seconds?|ms|minutes?|mins?|hours?|days?|[kmg]b|%)\b)",
            r"compared? (?:to|with) (?:\w+ )?v?\d+(?:\.\d+)+",
            r"(?:slower|worse) than (?:in )?(?:\w+ )?v?\d+(?:\.\d+)+",
            r"version ?(?:higher|newer|later|greater) than",
            r"now (?:disappears?|fails?|crash(?:es)?|throws?|breaks?|hangs?|freezes?|ignores?|"
            r"errors?|missing)",
            r"(?:not working|doesn't work|does not work|broken|fails?|failing) any ?more",
        ),
        body=_words(
            r"regression(?! tests?\b)",
            r"regressed",
            r"used to work",
            r"stopped working (?:after|since|in|with|on) ",
            # with a version: "I was working on an indexer", "it was working in the model
            # file" are no earlier release
            r"(?:was|were) working (?:fine |well |correctly )?(?:(?:in|on|with) "
            r"(?:v(?:ersion)?\s?)?\d[\w.]*|(?:before|until) (?:the |an? )?"
            r"(?:update|upgrade|updating|upgrading))",
            r"worked (?:fine |well |correctly |as expected )?(?:in|on|with|before|until) "
            r"(?:v(?:ersion)?\s?)?\d[\w.]*",
            r"works? (?:fine |well |correctly )?(?:in|on|with) (?:v(?:ersion)?\s?)?\d[\w.]*"
            r" but (?:not|fails|breaks)",
            r"(?:since|after) (?:upgrading|updating) (?:to|from)",
            r"no longer works?",
            r"broken since",
            r"(?:worked|works) (?:fine |well )?in (?:the )?(?:previous|older|earlier) "
            r"(?:version|release|versions|releases)",
            r"(?:has |had )?changed (?:since|in|after|between) v?\d+(?:\.\d+)+",
        ),
    ),
}

# A fatal-signal signature anywhere in the raw body (also in code blocks and logs): the
# process died, whatever the prose says.
_CRASH_SIGNATURE = re.compile(
    r"Segmentation fault|SIGSEGV|SIGABRT|core dumped|Fatal signal \d|"
    r"EXC_BAD_ACCESS|Access violation|Illegal instruction|terminate called after throwing",
    _I,
)

# A compiler's diagnostic anywhere in the raw body (a build log is code, so the prose never
# shows it): ``src/fs.cpp:129:32: error: …``, ``x.h:27:10: fatal error: db_cxx.h: No such
# file``. Line *and* column: OpenCV's runtime errors name ``file.cpp:652: error:`` only.
_BUILD_SIGNATURE = re.compile(
    r"\.(?:h|hh|hpp|hxx|c|cc|cpp|cxx|cu|m|mm|inc|ipp):\d+:\d+: (?:fatal )?error: ", _I
)

# A thrown error the program reports: "then it crashes" in such an issue is no process dying.
_THROWN = re.compile(r"\b(?:throws?|thrown|throwing|\w*(?:Error|Exception))\b")

# Regression in the body's own words, read one sentence at a time (linear: each sentence is
# searched by a few literal patterns). Either it worked in an older version ("works fine
# at version 1.78.1", "with the older version of OpenCV it is working", "this didn't occur
# for me with v21") or it broke with an update ("this started happening with the recent VS
# Code update", "in the insiders version the buffer is no longer updated").
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")
_HEDGE = re.compile(
    r"\?|\b(?:unsure|not sure) (?:if|whether)\b|\bwhether\b|\bif (?:this|it)\b|"
    # a denial: "this also happens in 1.81.1, so it is not a 1.82 regression"
    r"\bnot an? (?:[\w.]+ )?regression\b",
    _I,
)
_WORKED = _words(
    r"(?<!not )(?<!n't )(?<!never )(?:works?|worked|working|passe[sd])",
    r"(?:is|was|seems? to be) (?:still )?(?:fine|ok|okay|good)",
    r"no (?:problems?|issues?)",
    r"(?:does not|doesn't|did not|didn't|never) (?:occur|happen)",
)
_OLDER = _words(
    r"(?:older|previous|earlier|prior) (?:\w+ )?(?:versions?|releases?|builds?)",
    r"(?:at|in|on|with|using|under) (?:\w+ )?(?:version |v)?\d+(?:\.\d+)+",
    r"(?:at|in|on|with|using|under) v\d+",
)
_CHANGED = _words(
    r"no longer(?! (?:supported|maintained|needed|necessary|required|used|in)\b)",
    r"any ?more",
    r"started|starts|began|stopped",
    r"broke|broken|breaks",
)
_NEWER = _words(
    r"(?:after|since|with|in|from) (?:the |an? |this |my )?(?:recent|latest|last|new|newest) "
    r"(?:\w+ )?(?:updates?|upgrades?|versions?|releases?|builds?)",
    r"after an? (?:\w+ )?(?:update|upgrade)",
    r"after (?:updating|upgrading|installing|moving|switching|migrating)(?: to)?(?: \w+)? "
    r"v?\d+(?:\.\d+)+",
    r"insiders?",
    r"since v?\d+(?:\.\d+)+",
)


def _regression_sentence(body: re.Pattern[str], prose: str) -> _Found | None:
    """A sentence, not a question or a doubt, that matches ``body`` (the regression rule) or
    says it worked in an older version or broke with a newer one."""
    for sentence in _SENTENCE.split(prose):
        if _HEDGE.search(sentence):
            continue
        if match := body.search(sentence):
            return _Found("sentence", body, sentence, match)
        if _WORKED.search(sentence) and (match := _OLDER.search(sentence)):
            return _Found("sentence (worked + older)", _OLDER, sentence, match)
        if _CHANGED.search(sentence) and (match := _NEWER.search(sentence)):
            return _Found("sentence (changed + newer)", _NEWER, sentence, match)
    return None


# Template questions that survive cleaning as prose: never evidence for any topic.
_TEMPLATE_LINE = re.compile(
    r"which versions? of react|did this work in previous versions|"
    r"dependencies other than react|do you want to request a|"
    r"reproduced the bug with (?:tf|tensorflow) nightly|is this a regression\?|"
    r"does this issue occur when all extensions are disabled|"
    r"i (?:report the issue|checked the problem|updated to the latest)|"
    r"there is (?:accuracy test|reproducer code|a reference to the original)|"
    r"the feature is well documented|"
    r"if the issue is about documentation or the website|"
    r"please (?:search|read|provide|include|describe|fill|test using|file)|"
    # a browser console's log line pasted as text ("[Violation] 'message' handler took 210ms"),
    # a library's warning pasted as text ("Warning: ... indicates a memory leak")
    r"\[violation\]|^\s*warning: |"
    # VS Code's issue reporter line: the kind the reporter picked, not what the issue says
    r"^\s*type: performance issue",
    _I,
)


def _rule_for(word: str) -> Rule:
    """A taxonomy entry without built-in rules is matched by its own word (and plural)."""
    escaped = re.escape(word.strip())
    pattern = re.compile(rf"(?<![\w-]){escaped}(?:s|es)?(?![\w-])", _I)
    return Rule(title=pattern, body=pattern)


@functools.lru_cache(maxsize=32)  # the type classifier's bug evidence reads the same prose
def issue_prose(title: str, body: str) -> str:
    """The body's prose that topics are read from: cleaned, template questions dropped."""
    cleaned = clean_issue_text("", (body or "")[:MAX_BODY_CHARS])[:MAX_PROSE_CHARS]
    return "\n".join(line for line in cleaned.split("\n") if not _TEMPLATE_LINE.search(line))


def mentions(topic: str, title: str, prose: str, raw_body: str = "") -> bool:
    """Whether the built-in rules of ``topic`` hold for an issue (``prose``: :func:`issue_prose`).

    ``title`` and ``raw_body`` must already be bounded (:data:`TITLE_MAX`,
    :data:`MAX_BODY_CHARS`).
    """
    return _found(topic, TOPIC_RULES[topic], title, prose, raw_body) is not None


@dataclass(frozen=True)
class _Found:
    """Where a rule held: the text searched, the pattern and its match."""

    where: str
    pattern: re.Pattern[str]
    text: str
    match: re.Match[str]


def _found(topic: str, rule: Rule, title: str, prose: str, raw_body: str) -> _Found | None:
    """``rule`` (of ``topic``) on the title and prose, with the topic's own extra evidence."""
    if match := rule.title.search(title):
        return _Found("title", rule.title, title, match)
    if topic == "crash":
        if match := _CRASH_SIGNATURE.search(raw_body):
            return _Found("raw body", _CRASH_SIGNATURE, raw_body, match)
        # "then it crashes" where the issue shows a thrown error is no process dying.
        match = rule.body.search(prose)
        if match and not (_THROWN.search(title) or _THROWN.search(prose)):
            return _Found("prose", rule.body, prose, match)
        return None
    if topic == "regression":
        return _regression_sentence(rule.body, prose)
    if match := rule.body.search(prose):
        return _Found("prose", rule.body, prose, match)
    if topic == "build" and (match := _BUILD_SIGNATURE.search(raw_body)):
        return _Found("raw body", _BUILD_SIGNATURE, raw_body, match)
    return None


@dataclass(frozen=True)
class Evidence:
    """Why an issue got a topic: where (``title``, ``prose``, ``raw body``, ``sentence …``),
    the cue (the rule's alternative that fired, as a pattern) and the text it matched."""

    topic: str
    where: str
    cue: str
    matched: str


def explain(topic: str, title: str, body: str, summary: str = "") -> Evidence | None:
    """The evidence for ``topic`` that :meth:`TopicTagger.tags` finds, or ``None``."""
    title = " ".join((title or "")[:TITLE_MAX].split())
    raw = (body or "")[:MAX_BODY_CHARS]
    prose = issue_prose(title, raw)
    if summary:
        prose = f"{summary[:TITLE_MAX]}\n{prose}"
    rule = TOPIC_RULES.get(topic) or _rule_for(topic)
    found = _found(topic, rule, title, prose, raw)
    if found is None:
        return None
    start = found.match.start()
    cue = next(
        (
            alternative
            for alternative in _CUES.get(found.pattern, ())
            if re.compile(alternative, _I).match(found.text, start)
        ),
        found.pattern.pattern,
    )
    return Evidence(topic, found.where, cue, found.match.group(0))


class TopicTagger:
    """Tags the topics of ``taxonomy`` that an issue is about, in taxonomy order."""

    def __init__(self, taxonomy: Sequence[str] = DEFAULT_TAXONOMY) -> None:
        seen: dict[str, None] = {}
        for entry in taxonomy:
            normalised = entry.strip().lower()
            if normalised:
                seen.setdefault(normalised, None)
        self.taxonomy: tuple[str, ...] = tuple(seen)
        self._rules: dict[str, Rule] = {
            topic: TOPIC_RULES.get(topic) or _rule_for(topic) for topic in self.taxonomy
        }

    def tags(self, title: str, body: str, summary: str = "") -> list[str]:
        """The topics of the issue. ``summary`` (derived from the body) counts as prose."""
        title = " ".join((title or "")[:TITLE_MAX].split())
        raw = (body or "")[:MAX_BODY_CHARS]
        prose = issue_prose(title, raw)
        if summary:
            prose = f"{summary[:TITLE_MAX]}\n{prose}"
        return [
            topic
            for topic, rule in self._rules.items()
            if _found(topic, rule, title, prose, raw) is not None
        ]
