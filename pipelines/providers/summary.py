"""Extractive summaries of issue reports that say more than the title.

The body is read through :func:`pipelines.providers.text.parse_issue`: issue-form sections
get a role (what happens, expected behaviour, steps, error message, environment, log ...).
The summary is composed of what a maintainer skimming a triage queue looks for, in this
order (room is given by worth: statement, error, question or proposal, environment, then
"Expected:"):

1. **what happens or what is asked** — the best of the first informative prose sentences
   of the problem sections (or the text before any heading, then the other sections; a
   step the maintainers mark with 🐛 first), a second one when the first is short and the
   second adds words of its own, the next section's first when the statement only
   restates the title; a sentence that needs its neighbours, or carries less than half of
   the title's words, is led by the title (without "[DevTools Bug]:"-like labels). Command
   lines, compiler and configure output, tracebacks, code statements, author lists and
   link labels are not sentences. A sentence naming an API or class the title does not is
   preferred; one that points at what follows ("…the following command:") is shown
   completed with it (the command, the error, the items) or gives way to another;
   "Steps:" labels only a step. The key fact wins over its setup (a contrast: "…shows up
   instead", "only when I swap them…", "However, …" after what works; two measured times,
   or a run of lines with one each), shown after the sentence that sets it up when both
   fit; so does the ask over the motivation ("Can you also add…"); a statement that adds
   little to the title takes the next sentence;
2. **the question** the issue asks after its context, or what a feature request
   **proposes**, or the ask it writes after its motivation, when the statement says
   none of these;
3. **the error** — exception name and message from the error fields, logs and code (else a
   log line that says in words what failed), when neither the title nor the sentence
   already names it;
4. **expected behaviour**, when the report says it and there is room;
5. **the environment** — product version and platform from the system-information text.

At most :data:`SUMMARY_MAX` characters, cut at a word boundary. Never empty: with no
usable prose, the title plus whatever specifics exist. Pure Python, linear time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from app.config import SUMMARY_MAX
from pipelines.providers.text import (
    ASK,
    CODE,
    ENV,
    ERROR,
    EXPECTED,
    IGNORE,
    LOG,
    OTHER,
    PROBLEM,
    STEPS,
    ParsedIssue,
    Section,
    cjk_count,
    clean_issue_text,
    environment,
    find_error,
    parse_issue,
    split_sentences,
)

MAIN_MAX = 210
SENTENCE_MAX = 600  # longer sentences are cut before they are scored
PARAGRAPH_MAX = 6_000  # what is split into sentences of one paragraph
MAX_SENTENCES = 60  # of one section, read for the statement
BODY_MAX = (
    16_000  # what the summariser reads of a body  # the statement's share when specifics follow
)
SHORT_STATEMENT = 110  # below this, a second sentence of the same section is added
RESTATES_TITLE = 0.5  # a statement with fewer new content words than this share restates it
SHORT_ALONE = 45  # below this, a statement is read with the title as its context
TITLE_CONTEXT_MAX = 100  # a longer title is not put in front of a statement
ERROR_SHOWN = 120  # characters of the error shown
TITLE_LEADS = 3  # content words a title needs to be put in front of a statement
TITLE_COVERED = 0.5  # a statement with less of such a title's words is led by it
ELLIPSIS = "…"
EMPTY = "(no description)"

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?")
_CODE_CHARS = re.compile(r"[{}\[\]();=<>|\\$]")
_GREETING = re.compile(
    r"(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening|day)|thanks?|"
    r"thank you|cheers|regards|best|kind regards)\b",
    re.I,
)
_WEAK = re.compile(
    r"(?:i (?:have|got|get|had) (?:a|an|this|the same|same|one) (?:question|problem|issue|"
    r"error|bug)|same (?:issue|problem|here)|any (?:kind of )?(?:idea|help|suggestion)s?|"
    r"how (?:can|do|could|should|to) (?:i |we )?(?:solve|fix|resolve|handle|remedy) (?:this|it|"
    r"that|the (?:problem|issue|error|situation))|"
    r"thankful|grateful|appreciate|can (?:someone|"
    r"anyone) help|please help|help me|i need help|"
    r"as (?:the )?title(?: says)?|see (?:the )?title|title says (?:it )?all|"
    r"i(?:'|\u2019)?ll try (?:and|to) (?:break|explain|describe|show)|"
    r"thanks? (?:you )?for (?:the |all |your )?(?:great |good |awesome |amazing |hard )?work|"
    r"(?:has|have|does|did) (?:any|some)(?:body|one) (?:else )?(?:experienced|seen|had|got))\b",
    re.I,
)
# "Code for conversion.", "Here is the full log:": a label in front of code.
_CODE_LABEL = re.compile(
    r"(?:here is |here's |below is )?(?:the |my |a )?(?:full |complete )?(?:code|example|"
    r"output|logs?(?! (?:in|into|out|on)\b)|screenshots?|error message|traceback|stack ?trace|"
    r"snippet)\b"
    r"[^.?!\n]{0,30}[:.]?$",
    re.I,
)
_LINK_LABEL = re.compile(
    r"(?:original |related |reference |source )?links?(?:[ \t]?:| (?:for|to) [^:\n]{0,80}:)", re.I
)
# "Ibrahim Jubran, Fares Fares, Yuval Alfassi, Dan Feldman": a list of names, not a sentence.
_NAME = r"[A-Z][\w'.-]{0,30}(?: [A-Z][\w'.-]{0,30}){0,3}"
_NAME_LIST = re.compile(rf"(?:{_NAME}, ){{2,}}(?:and )?{_NAME}\.?")
# Openers that carry nothing, whatever follows them.
_WEAK_START = re.compile(
    r"(?:i (?:have|had|got) (?:a|an|this|one|some) (?:question|doubt)s?\b|apolog|sorry\b|"
    r"not a coder|i(?:'m| am|m) new to|i(?:'m| am) a beginner|first of all\b|"
    r"(?:i )?hope (?:this|i|that you|you)\b|i want to report a bug\b|"
    r"i think (?:it|this|that)(?:'s| is| was| might| may| could)\b|note:|"
    r"(?:i(?:'m| am) )?(?:not sure|happy to)\b|side note\b|btw\b|p\.?s\.?\b|"
    r"see (?:the|this|my|our|also|here|below|above|attached)\b|cc:?[ \t]@|"
    r"(?:i(?:'ve| have) )?attach(?:ed|ing) (?:is |are |you'll find )?(?:my|the|a|an|here)\b|"
    r"(?:the |my )?(?:full|original|complete|whole) (?:post|thread|discussion|question|"
    r"report|story|log|code)s? (?:is|are|at|here|on|in|can be found)\b|"
    r"(?:@[\w-]{1,40}[,:]? )?(?:thanks|thank you)\b|"
    r"this is (?:a|just a|more of a|more a) question\b|"
    r"if you (?:don't|do not) mind\b|i (?:could|can|will|would) (?:create|open|submit|send) "
    r"(?:a |the )?(?:pr|pull request)\b)",
    re.I,
)
_BOILERPLATE = re.compile(
    r"(?:do not delete this|please (?:read|search|make sure|fill|go to|note|ensure|confirm|"
    r"answer|follow|attach|submit)\b|"
    r"read (?:our|the) (?:rules|guidelines|contributing|code of conduct)|"
    r"search existing issues|avoid creating duplicates|issue template|"
    r"(?:stack ?overflow|discussions? (?:forum|page)) for (?:help|support|questions)|"
    r"this (?:form|template) is|if you open a github issue|here is our policy|"
    r"thank(?:s| you) for (?:taking the time|reporting|filing|contributing)|"
    r"describe the (?:bug|feature|problem|issue|solution|alternatives?)|"
    r"clear and concise description|a clear description|"
    r"do you want to request a|is your (?:feature )?request related to|"
    r"does this (?:issue|bug) occur when|link to (?:the )?code example|"
    r"i agree to|to the best of my knowledge|i (?:have )?(?:searched|checked|read|reported|"
    r"confirmed|updated) (?:the|for|existing|to)|"
    r"\bsee (?:details )?(?:at|in) (?:the )?(?:wiki|link)|"
    r"(?:e\.g\.|for example),? (?:linux|ubuntu|windows|macos)|automated\)|"
    r"you can collect some of this information|you can obtain the tensorflow version|"
    r"provide a reproducible test case|include any logs or source code|"
    r"if the current behavior is a bug|your bug will get fixed much faster|signed-off-by|"
    r"originally posted by|"
    # a console's banner pasted with its session: "Microsoft Windows [Version 10.0…] (c)
    # Microsoft Corporation. All rights reserved."
    r"(?:\(c\)|\u00a9|copyright) (?:\d{4} )?\w[\w ,.-]{0,60}(?:corporation|inc\b|ltd\b)|"
    r"all rights reserved|derechos reservados|microsoft windows \[ver)",
    re.I,
)
# "It crashes…", "This happens…", "That is…": a subject pronoun followed by a verb.
_DANGLING_START = re.compile(
    r"(?:it|this|that|these|those|they|he|she)(?:'s| (?:is|was|are|were|does|did|doesn't|"
    r"don't|didn't|isn't|wasn't|aren't|has|had|have|happens|happened|seems|seemed|works|"
    r"worked|would|will|should|can|could|can't|cannot|also|only|just|still|always|never|"
    r"used|makes|causes|breaks|fails|failed|crashes|results|occurs|occurred|means|might|"
    r"may|must|gives|shows|returns|throws|leads|looks|appears|affects|started|stopped|"
    r"keeps|kept|needs|goes|went|comes|came|includes|contains|allows|requires|helps))\b",
    re.I,
)
_INTRODUCES = re.compile(r"(?::|\b(?:like|following|as follows|below|this|these|here))[.…]?$", re.I)
_DANGLING_END = re.compile(r"\b(?:it|this|that|them|these|those)[?.!…]*$", re.I)
# "Does not happen when…", "Happens every time.": a verb with its subject left out.
_SUBJECTLESS = re.compile(
    r"(?:does|doesn't|did|didn't|isn't|wasn't|happens|happened|seems|works|worked|fails|"
    r"failed|crashes|crashed|occurs|occurred|also|same|still|results|and|but|or|so)\b",
    re.I,
)

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

_ENGLISH_STARTS = STOPWORDS | frozenset(
    [
        "the",
        "a",
        "an",
        "when",
        "if",
        "after",
        "while",
        "every",
        "sometimes",
        "currently",
        "since",
        "although",
        "however",
    ]
)

# Lines that are not sentences a person wrote, though they pass for prose after cleaning.
# An IPython or Python traceback pasted as prose.
_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|<ipython-input|-{2,}>|^File [\[\"'~/]|site-packages/|"
    r"\.pyx?[\"']?(?:, line |:)\d|\.pyx? in [\w.]|^\d{1,3} frames\b|dist-packages/|"
    r"^Cell In ?\[\d{1,5}\]|^\[?(?:ERROR|WARN(?:ING)?|INFO|DEBUG|FATAL)[:\]@ ]"
)
# Marks of statements in code: "x = 1;" (two of them make a line of code), and a line that
# opens with a call taking a string ("plt.title('Loss') plt.show()").
_STATEMENT_MARK = re.compile(r";(?=\s|$)| = ")
PUNCTUATED_WORDS = 15  # a sentence this long with ";" and at most one " = " is prose
_CALL_START = re.compile(r"[\w.]{1,80}\(['\"]")
_CONFIGURE = re.compile(r"\bchecking (?:whether|for|if|how)\b")
# "./configure --with-gui=no --disable-wallet": a command line, not a sentence.
_COMMAND = re.compile(r"\./|\$ |> |sudo ")
_PATH = re.compile(r"(?:^|(?<=\s))[`'\"(]?[\w.~-]{0,60}/[\w.~-]{1,60}/\S")
# "--disable-wallet", "-datadir=/x": command-line options (one dash and no value: "-f" may
# be prose).
_OPTION = re.compile(r"(?:^|(?<=\s))(?:--[A-Za-z]|-\w{1,40}=)")
# "src/x.h:72:8: note: …", "Makefile:11830: recipe…", "make[2]: ***": compiler and make output.
_DIAGNOSTIC = re.compile(r"[A-Za-z]:\d{1,6}:(?:\d{1,6}:)?\s|\*\*\*|\bmake\[\d")

# Section roles in the order the statement is taken from them.
# CODE: the prose a reporter wrote into a "Standalone code" field. EXPECTED last: React's
# old template asks feature requests only "What is the expected behavior?".
_STATEMENT_ROLES: tuple[str, ...] = (PROBLEM, ERROR, OTHER, ASK, STEPS, CODE, EXPECTED)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and not t.isdigit()]


def clean_body(body: str) -> str:
    """The prose of an issue body, one paragraph per line (see ``clean_issue_text``)."""
    return clean_issue_text("", body).lstrip("\n")


def truncate(text: str, limit: int = SUMMARY_MAX) -> str:
    """``text`` if it fits, else cut at the last word boundary and end with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    if space > limit // 3:
        cut = cut[:space]
    elif cjk_count(cut) * 2 >= len(cut):
        cut = cut[: limit - len(ELLIPSIS)]  # CJK has no spaces: any character boundary
    elif space > 0:
        cut = cut[:space]
    else:
        cut = cut[: limit - len(ELLIPSIS)]
    return cut.rstrip(" ,;:(\u2013\u2014-") + ELLIPSIS


_CLOSING = "\"')`\u201d\u2019"
_ENDS = ".!?…:\u3002\uff01\uff1f"


def _ensure_period(sentence: str) -> str:
    """``sentence`` ending like a sentence: "…`--descriptors`" gets its full stop, "…(x)." and
    "…said "no."" keep theirs."""
    sentence = sentence.rstrip()
    inner = sentence.rstrip(_CLOSING)
    if sentence[-1:] in _ENDS or (inner != sentence and inner[-1:] in _ENDS):
        return sentence
    if sentence[-1:] == ")" and sentence.count("(") == sentence.count(")"):
        return sentence if sentence[:-1].rstrip()[-1:] in _ENDS else sentence + "."
    return sentence + "."


def is_prose(sentence: str) -> bool:
    """A sentence a person wrote (not code, a log line, boilerplate or a placeholder)."""
    cjk = cjk_count(sentence)
    if cjk < 4 and sentence.count(" ") < 2:
        return False
    compact = len(sentence) - sentence.count(" ")
    if sum(map(str.isalpha, sentence)) < 0.6 * compact:
        return False
    if len(_CODE_CHARS.findall(sentence)) > max(3, len(sentence) // 12):
        return False
    if _COMMAND.match(sentence) or len(_OPTION.findall(sentence)) >= 2:
        return False  # "./configure --with-gui=no --disable-tests"
    if len(_PATH.findall(sentence)) >= 2 or _DIAGNOSTIC.search(sentence):
        return False  # "/usr/local/bin/ld: … /opt/src/util/system.cpp:1103: undefined …"
    # Semicolons in a long sentence are punctuation ("…decoding; when I switch…").
    marks = _STATEMENT_MARK.findall(sentence)
    if sentence.count(" = ") < 2 and sentence.count(" ") >= PUNCTUATED_WORDS:
        marks = []
    if len(marks) >= 2 or _CALL_START.match(sentence) or _CONFIGURE.findall(sentence)[1:]:
        return False  # "a.x = 1; a.y = 2;", "plt.title('x') plt.show()", configure output
    if _TRACEBACK.search(sentence):
        return False
    return not _BOILERPLATE.search(sentence)


# "[EDIT: unquoted relevant part of my question..]": a note on the issue's own text.
_EDIT_NOTE = re.compile(r"\[[ \t]*(?:edit(?:ed)?|update[d]?)\b[^\[\]]{0,300}\][ \t.]*", re.I)


FRAGMENT_WORDS = 3  # a lower-case sentence this short is a note ("expected to show")


def _informative(sentence: str, title_tokens: set[str]) -> bool:
    if not is_prose(sentence):
        return False
    words = sentence.split()
    if len(words) <= 6 and _GREETING.match(sentence):
        return False
    if len(words) <= 12 and _WEAK.search(sentence):
        return False
    if _WEAK_START.match(sentence) or (len(words) <= 8 and _CODE_LABEL.match(sentence)):
        return False
    if _NAME_LIST.fullmatch(sentence) or _EDIT_NOTE.fullmatch(sentence):
        return False
    if len(words) <= 8 and _LINK_LABEL.match(sentence):  # "Original link: forum.opencv.org."
        return False
    if _INTRODUCES.search(sentence) and len(words) < 8:
        return False  # "Often we write something like:" only introduces code or a list
    toks = tokens(sentence)
    if cjk_count(sentence) >= 4:
        return True
    if len(toks) < 2 or (
        len(words) <= FRAGMENT_WORDS
        and sentence[:1].islower()
        and not any("/" in w or "." in w.rstrip(".") for w in words)  # "crash in src/a.cpp"
    ):
        return False  # "expected to show": a note, not a sentence
    return bool(set(toks) - title_tokens)  # says something the title does not


def _capitalise(text: str) -> str:
    """Upper-case a plain English first word ("the view opens" -> "The view opens")."""
    first = text.split(" ", 1)[0]
    if first.isalpha() and first.islower() and first in _ENGLISH_STARTS:
        return text[:1].upper() + text[1:]
    return text


def _novel(text: str, title_tokens: set[str]) -> float:
    """The share of a text's content words that the title does not have."""
    words = set(tokens(text))
    return len(words - title_tokens) / len(words) if words else 0.0


# "[DevTools Bug]: ", "Bug: ", "[Feature Request] ": labels of the issue's kind, which the
# type tag says; in front of a statement they only take room.
_KIND_LABEL = re.compile(
    r"(?:\[[ \t]?(?:devtools )?(?:bug|bug report|feature|feature request|question|request|"
    r"proposal|idea|enhancement)[ \t]?\][ \t]*:?|(?:bug|bug report|feature|feature request|"
    r"feature idea|question|request|proposal|idea)[ \t]*:)[ \t]*",
    re.I,
)
_KIND_LABELS = 3  # at most this many labels are taken off a title's start


def title_context(title: str) -> str:
    """The title as the context of a statement: without its kind labels ("[DevTools Bug]:")
    and its end punctuation (a question keeps its "?"); ``""`` when the labels are all it
    has."""
    rest = title
    for _ in range(_KIND_LABELS):
        match = _KIND_LABEL.match(rest)
        if not match:
            break
        rest = rest[match.end() :]
    rest = rest.strip().rstrip(".:;!… ")
    return rest if any(c.isalnum() for c in rest) else ""


def _with_context(sentence: str, title: str) -> str:
    """Prefix a sentence that needs its neighbours with the title."""
    context = title_context(title) if title else ""
    if not context:
        return sentence
    if context.endswith("?"):
        return f"{context} {sentence}"
    return f"{context}: {_lower_first(sentence)}"


def _upper_first(sentence: str) -> str:
    """ "working on the browser…" -> "Working on the browser…" (a plain lower-case word)."""
    word = sentence.split(" ", 1)[0]
    return sentence[:1].upper() + sentence[1:] if word.isalpha() and word.islower() else sentence


def _lower_first(sentence: str) -> str:
    word = sentence.split(" ", 1)[0]
    if word == "I" or word.lower() not in _ENGLISH_STARTS or not sentence[1:2].islower():
        return sentence  # "I'm…", names and identifiers keep their case
    return sentence[:1].lower() + sentence[1:]


def is_dangling(sentence: str) -> bool:
    """Whether a sentence needs its neighbours: "It crashes.", "Any fix for this?"."""
    return bool(
        _DANGLING_START.match(sentence)
        or _DANGLING_END.search(sentence)
        or (_SUBJECTLESS.match(sentence) and not sentence.endswith("?"))
    )


_CUE = re.compile(
    r"\b(?:crash\w*|error|errors|fail\w*|broken|break\w*|wrong|incorrect\w*|instead|"
    r"doesn't|does not|don't|do not|didn't|did not|can't|cannot|can not|couldn't|unable|"
    r"won't|isn't|is not|never|no longer|results? in|throws?|hangs?|freez\w*|stuck|"
    r"missing|empty|slow\w*|leak\w*|should|expected|would like|i'd like|wish|suggest|"
    r"propose|request|add|support|allow|provide|option|want|how (?:can|do|to)|is there|"
    r"why|what|when i|gives?|shows?|returns?|prints?)\b",
    re.I,
)
# 🐛: VS Code's maintainers mark the faulty step with it — as a word of its own ("Hover a
# link, 🐛 it flickers"), not inside a name ("🐛.txt").
_BUG_STEP = re.compile(r"(?:^|(?<=\s))(?:\U0001f41b|:bug:)(?=\s)")  # also as a shortcode
_QUESTION_MARK = "\u2753"  # ❓: and the step whose outcome the tester doubts
_SAYS_BUG = re.compile(
    r"\b(?:this|that|which) is (?:a|the) bug\b|^(?:bug|actual(?: result)?):", re.I
)
# "However, …", "Therefore …": a sentence that goes on from the one before it.
_CONNECTOR = re.compile(
    r"(?:however|but|also|additionally|besides|though|anyway|in addition|therefore|thus|"
    r"hence|so|otherwise|instead|moreover|furthermore|as a result|given (?:this|that)|"
    r"similarly|because of (?:this|that)|for this reason|in (?:this|that) case)\b",
    re.I,
)
_POINTS_AT = re.compile(
    r"\b(?:the following|(?:code|example|log|output) (?:sees? |shown )?below|see below|"
    r"as (?:shown |written |given )?(?:below|above)|(?:code|example) above)\b",
    re.I,
)
_CANDIDATES = 4  # informative sentences of a section that compete for the statement
# "There is another issue here regarding…", "Not sure if that's related": an aside about
# other reports, not what this one is about.
_OTHER_REPORT = re.compile(
    r"\b(?:another|other|similar|related|older|existing) (?:issues?|bugs?|reports?|threads?|"
    r"tickets?)\b|\b(?:could|might|may) be related\b|\bnot sure if (?:it|this|that)(?:'s| is) "
    r"related\b",
    re.I,
)
# What a maintainer searches for: `code`, dotted or CamelCase names (`tf.image.resize`,
# `getDerivedStateFromProps`, `ImportError`), snake_case names. Not versions: the
# environment part shows them, and a sentence listing them is mostly background.
_IDENTIFIER = re.compile(
    r"`[^`\n]{2,60}`|(?<![\w/.-])[A-Za-z_]\w{1,40}(?:\.[A-Za-z_]\w{1,40}){1,4}(?:\(\))?"
    r"(?![\w/-])|(?<![\w/+=])[a-z]{2,20}[A-Z]\w{1,40}(?![\w/+=])|"
    r"(?<![\w/+=@])[A-Z][a-z]{1,20}[A-Z]\w{1,40}(?![\w/+=])|"
    r"(?<![\w/.-])[a-z]{2,20}_\w{2,40}(?![\w/-])"
)
# Names that are not an issue's specifics: products, and links or files by their host or
# extension ("arxiv.org", "download.gradle" stays: it is a file of the project).
_NOT_IDENTIFIER = re.compile(
    r"(?:tensorflow|opencv|devtools|github|gitlab|javascript|typescript|vscode|pytorch|"
    r"macos|nodejs|youtube|stackoverflow|chatgpt|openai|macbook|iphone|ipad|webstorm|"
    r"intellij|powershell|linkedin|bitcoin|vs ?code)$|"
    r".*\.(?:com|org|net|io|dev|ai|co|app|html?|png|jpe?g|gif|txt|md|pdf)$",
    re.I,
)
IDENTIFIER_MAX = 60  # a longer "name" is data
# A sentence with code in it ("//Above code…", "x = f(a, b)", "error code: -4"): the bonus is
# for prose that names things.
_CODE_LIKE = re.compile(
    r"//|\s=\s|\w\([^()\n]{0,80},[^()\n]{0,80}\)|error code|[{};]\s|[\w)][ \t]?\([ \t]"
)
# "works fine", "as expected": how a sentence says that something does what it should.
_FINE = r"(?:fine|perfect(?:ly)?|well|great|as expected|correctly)\b"
_WORKS = re.compile(rf"\bworks? {_FINE}", re.I)
_GOES_WRONG = re.compile(
    r"\b(?:but|however|fail\w*|error\w*|crash\w*|not|no|never|wrong|broken|unable|cannot)\b|n't\b",
    re.I,
)
_CUT_EXAMPLE = re.compile(r"\b(?:e\.g|i\.e|eg|ie)\.?$", re.I)  # "…in your tree, e.g."
_FRAGMENT = re.compile(r"(?:and|or|but|if|because|then|which|where|from @)\b")
IDENTIFIER_BONUS = 0.3  # for a sentence naming something the title does not
# The key specific a maintainer reads for (issue 9, sixth round): the contrast that says what
# goes wrong ("…but the character G shows up instead", "only when I swap them it works",
# "alt+Down unexpectedly opens…", "reverting #25244 fixes it") and a measured comparison
# ("takes 24ms, this implementation takes 49ms", "3 times slower", "380 vs 28 ms"). Not
# "instead of" (mostly a proposal: "use OpenMP instead of GCD"), not "VS Code", not an
# "unexpected token" error. Bounded and without nested quantifiers.
_KEY_FACT = re.compile(
    r"\binstead\b(?! of\b)|\bunexpectedly\b|\bunexpected (?:behaviou?rs?|results?|outputs?)\b|"
    r"(?<!was )\bonly (?:when|if|after|with|by|works?|worked)\b|"
    r"\brevert(?:s|ed|ing)?\b[^.;!?]{0,80}\b(?:fix|solv|work|resolv)|"
    r"\bbut (?:still|actually|got|gets?|returns?|shows?|prints?|gives?)\b|"
    r"\b(?:times|x) (?:slower|faster|larger|smaller|bigger)\b|\b(?:vs\.?|versus)(?= \d)",
    re.I,
)
_MEASURE = re.compile(
    r"(?<![\w.])\d{1,9}(?:\.\d{1,9})?[ \t]?(?:ms|milliseconds?|seconds?|secs?|minutes?|mins|fps)\b",
    re.I,
)
# "One possible solution is using OpenMP instead": a proposal, not what goes wrong.
_REMEDY = re.compile(r"\b(?:solution|workaround|alternative)s?\b", re.I)
_LOG_LIKE = re.compile(r"\w\.\w{1,4}:\d{1,6}\b")  # "contentScript.js:113 [Violation] …"
KEY_FACT_BONUS = 1.0  # for a sentence carrying such a contrast or measurement


# "It works well with one request. However, when the server gets two…": the contrast after
# what works, or after what the docs say should happen, is what goes wrong.
_CONTRAST = re.compile(r"(?:however|but)\b", re.I)
_SETUP = re.compile(
    rf"\b(?:works?|worked|working) {_FINE}|"
    r"\b(?:should|according to|docs?|documentation)\b",
    re.I,
)


MEASURED_LINE = 100  # a measurement sentence longer than this is no line of a run of them
_MEASURED_RUN = 4  # measurement sentences joined, at most


def _measured_run(sentences: list[str], start: int) -> list[str]:
    """Two or more short sentences in a row from ``start`` that each report a measured time
    ("opencv CUDA spend 380ms", "my cuda code spend 28ms"): together, a comparison. Joined
    up to :data:`MAIN_MAX` characters; ``[]`` when there is no such run."""
    run: list[str] = []
    size = 0
    for sentence in sentences[start : start + _MEASURED_RUN]:
        text = sentence.rstrip(".;,")
        if len(text) > MEASURED_LINE or not _MEASURE.search(text) or _LOG_LIKE.search(text):
            break
        if size + len(text) + 2 > MAIN_MAX:
            break
        run.append(text)
        size += len(text) + 2
    return run if len(run) >= 2 else []


# Words one of which every _KEY_FACT match has (a quick test before the patterns).
_KEY_WORDS = (
    "instead", "unexpected", "only ", "revert", "but ", "slower", "faster", "larger",
    "smaller", "bigger", "vs", "versus",
)  # fmt: skip
_DIGIT = re.compile(r"\d")


def _key_fact(sentence: str, before: str = "") -> bool:
    """Whether a sentence says a contrast (alone, or after the sentence ``before`` it that
    says what works or should happen) or compares measured times (two or more)."""
    lowered = sentence[:SENTENCE_MAX].lower()
    contrast = bool(before) and lowered.startswith(("however", "but"))
    words = any(word in lowered for word in _KEY_WORDS)  # cheap tests first: most have none
    digit = _DIGIT.search(lowered) is not None
    found = (
        (words and _KEY_FACT.search(sentence) is not None)
        or (
            contrast
            and _CONTRAST.match(sentence) is not None
            and _SETUP.search(before) is not None
            and not sentence.endswith("?")  # "But can OpenCV handle big endian data?"
        )
        or (digit and len(_MEASURE.findall(sentence[:SENTENCE_MAX])) >= 2)
    )
    return found and not (_LOG_LIKE.search(sentence) or _REMEDY.search(sentence))


# The ask of a feature request ("Can you also add a minimum width setting?", "It would be
# super helpful if cv2 could provide…", "So I'm requesting…"): what a maintainer decides on,
# over the motivation around it ("I've been looking online…") or praise ("I am very happy
# that you introduced…").
_ASK = re.compile(
    r"\b(?:it )?would be (?:\w{1,12} )?(?:nice|great|helpful|useful|good|awesome|cool)\b|"
    r"\b(?:can|could|would) (?:you|we|someone|they) (?:please |also |maybe |just )?(?:add|"
    r"support|provide|expose|allow|implement|introduce|include)\b|"
    r"\b(?:please|kindly) (?:add|support|provide|expose|allow|consider|implement)\b|"
    r"\bi(?:'d| would) love to (?:see|have)\b|"
    r"\bi(?:'m| am) requesting\b|(?:^|[,;] )(?:i|we) (?:would like to |want to )?(?:request|"
    r"propose|suggest)\b|"
    r"\b(?:add|provide|introduce|expose) (?:an? |the )?(?:new )?(?:option|setting|flag|parameter|"
    r"kwarg|argument|api|way)\b",
    re.I,
)
# Words one of which every _ASK match has (a quick test before the pattern).
_ASK_WORDS = (
    "would be", "you ", "we ", "someone ", "they ", "please ", "kindly ", "request",
    "propose", "suggest", "love to ", "add ", "provide ", "introduce ", "expose ",
)  # fmt: skip


def _asks(text: str) -> bool:
    """Whether ``text`` asks for something (:data:`_ASK`)."""
    lowered = text.lower()
    return any(word in lowered for word in _ASK_WORDS) and bool(_ASK.search(text))


ASK_BONUS = 0.6
ASK_CONTEXT = 40  # an ask and the sentence before it are shown together below 150 chars
_PRAISE = re.compile(
    r"\bi(?:'m| am) (?:very |really |so )?(?:happy|glad|pleased)\b|\bi (?:really )?love\b",
    re.I,
)
# "However, when the server gets 2 requests…": the connector of a key-fact sentence shown
# first is dropped (the title leads it).
_LEADING_CONNECTOR = re.compile(r"\A(?:however|but|yet|still|so)(?:,[ \t]*|[ \t]+)(?=\w)", re.I)
# "This background label should…", "These functions…": a sentence whose subject is picked
# out by the sentence before it.
_DEMONSTRATIVE = re.compile(r"(?:this|that|these|those|such)[ \t]+[a-z]", re.I)


# "I was trying to cross compile opencv for android.", "Fresh install of Ubuntu Focal": what
# the reporter did, not what went wrong (issue 9, seventh round: "setup over outcome").
_SETUP_START = re.compile(
    r"(?:so |first,? |then,? )?(?:i|we)(?:'m|'ve| am| was| were| have| had)?[ \t](?:just[ \t])?"
    r"(?:trying|tried|attempting|attempted|working on)\b|"
    r"(?:a )?fresh (?:install|installation|clone|checkout)\b",
    re.I,
)
SETUP_PENALTY = 0.4  # for a sentence that only says what the reporter did


def _only_setup(sentence: str) -> bool:
    """Whether ``sentence`` says what the reporter did and nothing of what went wrong or is
    asked ("I was trying to cross compile opencv for android.")."""
    return (
        _SETUP_START.match(sentence) is not None
        and not _GOES_WRONG.search(sentence)
        and not sentence.endswith("?")
        and not _asks(sentence)
    )


def _new_identifier(sentence: str, title: str) -> bool:
    """Whether ``sentence`` names something (an API, a class, a version) ``title`` does not."""
    lowered = title.lower()
    for match in _IDENTIFIER.finditer(sentence[:SENTENCE_MAX]):
        name = match.group(0).strip("`")
        if len(name) > IDENTIFIER_MAX or sum(map(str.isdigit, name)) >= 3:
            continue  # a hash, a base64 blob
        if name.lower() not in lowered and not _NOT_IDENTIFIER.match(name):
            return True
    return False


def _score(
    sentence: str, index: int, title_tokens: set[str], title: str = "", before: str = ""
) -> float:
    new = len(set(tokens(sentence)) - title_tokens)
    cue = 0.5 if _CUE.search(sentence) or sentence.endswith("?") else 0.0
    score = min(new, 8) / 8 + cue + (0.4 if index == 0 else 0.0) - 0.1 * index
    if (
        _BUG_STEP.search(sentence)
        or sentence.startswith(_QUESTION_MARK)
        or _SAYS_BUG.search(sentence)
    ):
        score += 2.0
    if _DANGLING_END.search(sentence) or _INTRODUCES.search(sentence):
        score -= 0.5  # "… like this:" points at something the summary does not show
    key_fact = _key_fact(sentence, before)
    if key_fact:
        score += KEY_FACT_BONUS
    asks = _asks(sentence)
    if asks:
        score += ASK_BONUS
    if _PRAISE.search(sentence):
        score -= 0.4  # "I am very happy that you introduced…": the ask comes after it
    if (_CONNECTOR.match(sentence) and not (key_fact or asks)) or _POINTS_AT.search(sentence):
        score -= 0.5  # "However, …", "the following code": what the summary does not show
    if len(sentence) > MAIN_MAX:
        score -= 0.3
    if _OTHER_REPORT.search(sentence):
        score -= 0.6
    if index and _DEMONSTRATIVE.match(sentence):
        score -= 0.4  # the first candidate may say "This function…" of the title's subject
    if _FRAGMENT.match(sentence) or _CUT_EXAMPLE.search(sentence):
        score -= 0.4  # "and unfortunately getting…", "if I add…": the rest of a sentence
    if _WORKS.search(sentence) and not _GOES_WRONG.search(sentence):
        score -= 0.4  # "…the app works perfect with these models": background
    if _new_identifier(sentence, title) and not _CODE_LIKE.search(sentence):
        score += IDENTIFIER_BONUS
    if _only_setup(sentence):
        score -= SETUP_PENALTY
    return score


_LEAD = re.compile(
    r"(?:(?:hi|hello|hey|greetings)(?:,?[ \t](?:there|all|team|guys|everyone|folks))?"
    r"[ \t]*[,!.\uff0c\uff01\u3002]*|"  # "Hello \uff0cI am…": a full-width comma too
    r"summary:|tl;dr:?|update:|edit(?:ed)?\d?:|so,|then,?|[.:;,\uff0c\uff1a\uff1b\u3002]+|=>|->|"
    r"\u2192)[ \t]*(?<=[ \t\uff0c\uff01\u3002\uff1a\uff1b])(?=\S)|"
    r"\d{1,2}[.)](?=[A-Z])",  # "1.Is there any way…": a list number without its space
    re.I,
)


# "Per some discussion today with @a and @b, I'd like…": where the idea came from, in front
# of what it is. ("I'm new to X and…" makes the whole sentence weak: what follows is
# mostly background too.)
# "I'm not sure where to put this issue, anyway reading BIP 152…", "Not sure if this is the
# right place, but…": a doubt about where the issue belongs, in front of what it says.
_WEAK_CLAUSE = re.compile(
    r"(?:(?:as )?per (?:some |our |the |a |my )?(?:recent )?(?:discussions?|conversations?|"
    r"chats?|talks?)[^,.;:!?]{0,80}|(?:i(?:'m| am) )?not sure (?:where|if|whether) (?:to put|"
    r"this is|it is|this belongs|i should)[^,.;:!?]{0,60})"
    r",[ \t]+(?:(?:but|anyway|so|though)\b,?[ \t]*)?(?=\S)",
    re.I,
)


def _drop_lead(sentence: str) -> str:
    """ "Hi, I got…" -> "I got…", "Summary: The link…" -> "The link…", "Per some discussion
    with @a, I'd like…" -> "I'd like…"."""
    for pattern in (_LEAD, _WEAK_CLAUSE, _LEAD):
        match = pattern.match(sentence)
        if match and len(sentence) - match.end() >= 15:
            rest = sentence[match.end() :]
            sentence = rest[:1].upper() + rest[1:]
    return sentence


def _section_sentences(paragraphs: list[str], seen: set[str]) -> list[str]:
    out: list[str] = []
    for paragraph in paragraphs:
        if len(out) >= MAX_SENTENCES:
            break
        for whole in split_sentences(paragraph[:PARAGRAPH_MAX]):
            # A "sentence" this long is a run-on paste; its start is what can be used.
            sentence = truncate(whole, SENTENCE_MAX) if len(whole) > SENTENCE_MAX else whole
            sentence = _drop_lead(sentence)
            key = sentence.lower()
            if key not in seen:
                seen.add(key)
                out.append(sentence)
    return out


def _unmark(sentence: str) -> str:
    """A sentence without the maintainers' 🐛 / ❓ step markers."""
    text = _BUG_STEP.sub(" ", sentence).lstrip(f"{_QUESTION_MARK} ")
    return " ".join(text.split())


def _statement_sections(parsed: ParsedIssue) -> list[Section]:
    """Sections to take the statement from, in order: one with a step marked 🐛 (the
    maintainers' own pointer at the bug) first, then by role (:data:`_STATEMENT_ROLES`)."""
    ordered = [
        section
        for role in _STATEMENT_ROLES
        for section in parsed.sections
        if section.role == role and section.paragraphs
    ]
    marked = [s for s in ordered if any(_BUG_STEP.search(p) for p in s.paragraphs)]
    return marked[:1] + [s for s in ordered if s not in marked[:1]]


FOLLOW_NEW_WORDS = 3  # content words a second sentence must add to the first and the title
_ASIDE = re.compile(
    r"(?:please|thanks?|thank you|so\b|and yet\b|anyway|any (?:kind of )?help|"
    r"here(?:'s| is| are)\b|below\b)",  # "Here's some examples, with…": code follows
    re.I,
)

# A subordinate clause opening: with a colon at its end, the main clause is the code below.
_CLAUSE_START = re.compile(
    r"(?:(?:however|but|and|so|then),?[ \t]+)?(?:when|whenever|if|while|after|once|as soon as)\b",
    re.I,
)


def _adds_to(sentence: str, first: str, title_tokens: set[str]) -> bool:
    """Whether a second sentence says enough of its own to be worth its length."""
    if _ASIDE.match(sentence) or is_dangling(sentence) or _CODE_LABEL.match(sentence):
        return False
    if sentence.endswith(":") and _CLAUSE_START.match(sentence):
        return False  # "However, when I try to unlock it for 60s:" (and code): half a sentence
    new = set(tokens(sentence)) - title_tokens - set(tokens(first))
    return len(new) >= FOLLOW_NEW_WORDS


THIN_WORDS = 4  # a statement with fewer content words beyond the title's says little more
MORE_WORDS = 5  # words a sentence after such a statement needs
_DOWNLOAD_LINK = re.compile(r"\b(?:download |source )?links?\b", re.I)
_NOT_MORE = re.compile(
    r"(?:please|thanks?|thank you|any (?:kind of )?help|here(?:'s| is| are)\b|below\b|"
    r"(?:so )?(?:what|how) (?:to|do|can|should) i\b)",
    re.I,
)


def _thin_then_more(first: str, sentence: str, title_tokens: set[str]) -> bool:
    """Whether ``sentence``, right after a statement that adds fewer than
    :data:`THIN_WORDS` content words to the title, is worth adding though it goes on from it
    ("tf.sparse.reduce_max does not define a gradient. So it cannot be used in training.",
    "…while debugging. It's a problem with hot reload."): it adds content words of its own."""
    known = title_tokens | set(tokens(first)) | STOPWORDS
    if len(set(tokens(first)) - title_tokens - STOPWORDS) >= THIN_WORDS:
        return False
    if _NOT_MORE.match(sentence) or _WEAK.search(sentence) or _CODE_LABEL.match(sentence):
        return False
    if len(sentence.split()) < MORE_WORDS or _DOWNLOAD_LINK.search(sentence):
        return False  # "This prints: True.", "Model download link Image download link."
    if not sentence[:1].isupper():
        return False  # "yarn add react-devtools -D": a command, not a sentence
    return len(set(tokens(sentence)) - known) >= FOLLOW_NEW_WORDS - 1


def _first_informative(sections: list[Section], title_tokens: set[str], seen: set[str]) -> str:
    """The first informative sentence of ``sections`` (not a step), or ``""``."""
    for section in sections:
        if section.role in (STEPS, EXPECTED):
            continue  # a step does not say what is wrong; "Expected:" has its own place
        for sentence in _section_sentences(section.paragraphs, seen)[:_CANDIDATES]:
            if _informative(sentence, title_tokens) and not is_dangling(sentence):
                return sentence
    return ""


# "…the following command:", "…these two assertions (please tell me if they are wrong):",
# "…leads to the following error": a sentence whose point is what comes after it.
_POINTER_END = re.compile(
    r"(?::|\b(?:(?:the|these|this|as) )?(?:following|below|like this|as follows)"
    r"(?:[ \t][\w-]{1,20}){0,2})[ \t]*[.…]?$",
    re.I,
)
_CODE_POINTER = re.compile(
    r"\b(?:command|code|snippet|script|lines?|config\w*|settings?|setup|output|calls?|"
    r"functions?|example|program|query|steps?|cmd|like(?: this| so)?|run(?:ning)?)\b",
    re.I,
)
# What a sentence ends with when what it says comes after it.
_NEEDY_END = re.compile(
    r"\b(?:following|below|this|these|like|as follows|here|command|code|snippet|output|logs?|"
    r"results?|errors?|messages?|problem|gives?|shows?|returns?|prints?|says?|get|got|"
    r"getting|is|are|was|were|with|to|of|by|from|in|for|the|a|an)$",
    re.I,
)
# "…all of the following packages to support Python 3.10:", "…showed this at the time of
# the crash:": what the sentence is about comes after it.
_SHOWN_BELOW = re.compile(r"\b(?:the following|this|these|like this|below|as follows)\b", re.I)
_ERROR_POINTER = re.compile(
    r"\b(?:errors?|exceptions?|messages?|warnings?|traceback|problems?)\b", re.I
)
# "$ ", ">>> ", "PS C:\\src> ", "user@host:~/x$ ": a shell prompt in front of a command.
_PROMPT = re.compile(
    r"(?:\$|>>>|>|#|PS [^>\n]{0,80}>|[\w.-]{1,40}@[\w.-]{1,40}:[^$\n]{0,80}\$)[ \t]*"
)
_JSON_MEMBER = re.compile(r"[\"'][^\"'\n]{1,60}[\"'][ \t]*:")
CODE_ALNUM = 6  # letters and digits a code line needs to be shown
CODE_SHOWN = 80  # characters of a command or code line that completes a sentence
ITEM_MAX = 100  # a following sentence longer than this is not an item of a list
ITEMS_SHOWN = 150  # characters of the items that complete a sentence
ITEM_WORDS = 4  # words an item needs to say something alone
POINTER_SHOWN = 0.3  # gives back part of what a pointing sentence loses, once completed
_ITEMS = 3  # items read after a sentence that points at them


def _shown_whole(shown: str, written: str) -> bool:
    """Whether a sentence that pointed at what follows is shown with it, or says what is
    wrong before its colon ("Failed to build OpenCV dnn with this version of Protobuf:")."""
    return len(shown) > len(written) or (shown != written and bool(_CUE.search(shown)))


def _needs_what_follows(sentence: str) -> bool:
    """ "…the following packages to support Python 3.10:" says nothing without what follows;
    "Notice how the blue color appears over the entire tab bar:" does."""
    if not _POINTER_END.search(sentence):
        return False
    base = sentence.rstrip().rstrip(":.… ")
    return bool(_NEEDY_END.search(base) or _SHOWN_BELOW.search(base))


def _code_line(chunk: str) -> str:
    """The first line of a code chunk without its prompt ("$ ", ">"), shortened at a space
    to :data:`CODE_SHOWN` characters; ``""`` when it has none or cannot be cut whole."""
    for raw in chunk.split("\n")[:20]:
        line = " ".join(raw.split())
        prompt = _PROMPT.match(line)
        if prompt and prompt.end() < len(line):
            line = line[prompt.end() :]
        if sum(map(str.isalnum, line)) < CODE_ALNUM or _JSON_MEMBER.match(line):
            continue  # '"name": "e2e",' says nothing alone
        if any(line.count(a) != line.count(b) for a, b in ("()", "[]", "{}")):
            continue  # 'import React, { useContext': a part of a statement
        line = line.replace("`", "'").rstrip(" \\^")
        if len(line) <= CODE_SHOWN:
            return line
        space = line.rfind(" ", 0, CODE_SHOWN)
        return line[:space].rstrip(" ,;:(") + ELLIPSIS if space > CODE_SHOWN // 2 else ""
    return ""


def _code_after(section: Section, sentence: str) -> str:
    """The code chunk that follows the paragraph of ``sentence`` in ``section``: the n-th
    chunk after the n-th paragraph that points at code (paragraphs and chunks alternate)."""
    tail = sentence.rstrip(" .:…")[-30:]
    pointers = 0
    for paragraph in section.paragraphs:
        if tail and tail in paragraph:
            break
        if _POINTER_END.search(paragraph):
            pointers += 1
    return section.code[pointers] if pointers < len(section.code) else ""


# "OpenCV(4.7.0) D:\a\opencv-python\…\arithm.cpp:652: error: " in front of OpenCV's message:
# the path fills the shown error before "(-215:Assertion failed) …" (seventh round).
_OPENCV_LOCATION = re.compile(
    r"OpenCV\([^()\s]{1,30}\)[ \t]+\S{0,400}?:-?\d{1,6}:[ \t]+error:[ \t]+"
)


def _error_message(error: str) -> str:
    """The error as the summary shows it: without its "Error:" label, OpenCV's source
    location and its backticks."""
    shown = error[6:].lstrip() if error.lower().startswith("error:") else error
    if "OpenCV(" in shown:
        shown = _OPENCV_LOCATION.sub("", shown, count=1)
    return shown.replace("`", "")


def _completed(
    sentence: str, following: list[str], section: Section, error: str, title: str
) -> str | None:
    """A sentence that points at what follows it ("…the following command:") completed with
    that: the command in backticks, the error, or the short sentences after it; ``None`` when
    what it points at cannot be shown (then it says nothing alone). Other sentences as
    they are."""
    if not _POINTER_END.search(sentence):
        return sentence
    base = sentence.rstrip().rstrip(":.… ").rstrip()
    # "…is never disposed:" says its point before the code it shows; "…the following
    # command:" does not.
    fallback = None if _NEEDY_END.search(base) else base
    end = base[-40:]
    if _ERROR_POINTER.search(end):
        if not error:
            return None
        if any(_contains(title, key) for key in _error_keys(error)):
            return base  # the title quotes it
        return f"{base}: {truncate(_error_message(error), ERROR_SHOWN)}"
    if _CODE_POINTER.search(end):
        line = _code_line(_code_after(section, sentence))
        return f"{base}: `{line}`" if line else None
    items: list[str] = []
    for item in following[:_ITEMS]:
        if len(item) > ITEM_MAX or not is_prose(item) or _POINTER_END.search(item):
            break
        if _DANGLING_END.search(item) or _CONNECTOR.match(item) or len(item.split()) < ITEM_WORDS:
            break
        if len("; ".join([*items, item])) > ITEMS_SHOWN:
            break
        items.append(_lower_first(item.rstrip(" .;")))
    return f"{base}: {'; '.join(items)}" if items else fallback


# "Open the editor", "Run react-devtools", "1. Click…": how a step starts. "There is another
# issue…" or "The window disappears" from a steps section is no step, and is not labelled so.
_STEP_START = re.compile(
    r"(?:\d{1,2}[.)][ \t]*)?(?:open|run|click|go|navigate|install|create|type|press|select|"
    r"enter|start|use|add|set|call|load|build|execute|launch|try|paste|write|make|compile|"
    r"visit|hover|drag|change|remove|delete|save|close|copy|import|define|put|move|invoke|"
    r"download|clone|configure|enable|disable|edit|insert|switch|toggle|scroll|focus|"
    r"restart|reload|refresh|check|follow|wait|have|let|see|observe|notice|right-click|"
    r"double-click|ctrl|cmd|alt|shift|in|on|from|using|with|after|then|now|next|first|"
    r"finally|convert|train|predict|access|accessing|upgrade|update|apply|init\w*|sign|log|"
    r"connect|send|request|fetch|query|resize|split|drop|pass|pick|choose|hit|tap|mount|"
    r"render|declare|quit|exit|reopen|verify|browse|search|find|do|just|simply|"
    # and as the reporter tells them: "Added a useEffect…", "Went to check…"
    r"added|went|clicked|opened|ran|created|installed|typed|tried|used|started|selected|"
    r"navigated|changed|updated|upgraded|downgraded|called|loaded|built|launched|pressed|"
    r"entered|visited|hovered|wrote|made|compiled|saved|closed|copied|imported|moved|"
    r"removed|deleted|enabled|disabled|switched|reloaded|refreshed|checked|followed|"
    r"accessed|converted|trained|connected|rendered|mounted|executed|dragged)\b",
    re.I,
)


STEPS_ASIDE = "steps-aside"  # the role of a statement from a steps section that is no step


def _step_like(text: str) -> bool:
    return bool(_STEP_START.match(text))


# A pull request's "Merge with opencv/opencv_contrib#3497", "See #123", a bare link: a
# reference says nothing of what the issue is about without the title.
_ISSUE_REF = r"(?:[\w.-]{1,100}/[\w.-]{1,100})?#\d{1,7}"  # "#123", "owner/repo#123"
_A_REFERENCE = re.compile(_ISSUE_REF + r"\b|\S{0,200}://\S{0,2000}")
REFERENCE_WORDS = 3


def _only_a_reference(text: str) -> bool:
    """Whether a statement is a reference (an issue, a pull request, a link) and at most
    ``REFERENCE_WORDS`` words around it."""
    rest, found = _A_REFERENCE.subn(" ", text)
    return bool(found) and len(tokens(rest)) <= REFERENCE_WORDS


def _statement(parsed: ParsedIssue, error: str = "") -> tuple[str, str]:
    """What happens or what is asked, and the role of the section it came from."""
    title_tokens = set(tokens(parsed.title))
    seen: set[str] = set()
    sections = _statement_sections(parsed)
    for position, section in enumerate(sections):
        role = section.role
        if role == STEPS:
            listed = _step_list(section.paragraphs, title_tokens)
            if listed:
                return listed, role
        sentences = _section_sentences(section.paragraphs, seen)
        informative = [i for i, s in enumerate(sentences) if _informative(s, title_tokens)]
        marked = [
            i
            for i in informative
            if _BUG_STEP.search(sentences[i])
            and _novel(_unmark(sentences[i]), title_tokens) >= RESTATES_TITLE
        ]  # "🐛 Layout issue" under "Quick Chat layout issue on resize" is no pointer
        informative = marked[:1] or informative[:_CANDIDATES]
        if not informative:
            continue
        # A sentence pointing at what follows is shown completed with it, or not at all
        # when something else can be said.
        completed = {
            i: _completed(
                sentences[i], sentences[i + 1 : i + 1 + _ITEMS], section, error, parsed.title
            )
            for i in informative
        }
        shown = [i for i in informative if completed[i] is not None]
        if shown and len(shown) < len(informative):
            informative = shown
        written = sentences  # scored as written: what completes a sentence is not its merit
        sentences = [
            (completed.get(i) or s) if i in informative else s for i, s in enumerate(sentences)
        ]
        runs = {i: _measured_run(written, i) for i in informative}
        best = max(
            informative,
            key=lambda i: (
                _score(
                    written[i],
                    informative.index(i),
                    title_tokens,
                    parsed.title,
                    written[i - 1] if i else "",
                )
                + (POINTER_SHOWN if _shown_whole(sentences[i], written[i]) else 0.0)
                + (KEY_FACT_BONUS if runs[i] and not _key_fact(written[i]) else 0.0),
                -i,
            ),
        )
        chosen = [sentences[best]]
        before = sentences[best - 1] if best else ""
        if runs[best]:
            chosen = ["; ".join(runs[best])]  # "opencvCUDA spend 380ms; my kernel 28ms"
        elif before and _key_fact(written[best], before):
            # The key fact that won over the sentence before it is shown after it when both
            # fit and that one sets it up or says what goes wrong too: "…should reveal.
            # However, this doesn't…", "Zero rotation has… (wrong orientation). 90 deg
            # around z rotates instead…".
            if (
                best - 1 in informative
                and len(before) + len(chosen[0]) < MAIN_MAX
                and (_GOES_WRONG.search(written[best - 1]) or _CONTRAST.match(written[best]))
            ):
                chosen = [before, chosen[0]]
            elif _CONNECTOR.match(written[best]):
                bare = _LEADING_CONNECTOR.sub("", chosen[0], count=1)
                chosen = [bare[:1].upper() + bare[1:]]  # "However, when…" -> "When…"
        elif (
            before
            and _asks(written[best])
            and best - 1 in informative
            and len(before) + len(chosen[0]) < SHORT_STATEMENT + ASK_CONTEXT
            and not _asks(written[best - 1])
            and not (_CONNECTOR.match(written[best - 1]) or _FRAGMENT.match(written[best - 1]))
        ):
            # "Adan seems a better optimizer than Adam. Can we introduce this in Keras?": a
            # short ask after its reason is shown with it.
            chosen = [before, chosen[0]]
        follow = best + 1
        if (
            len(chosen) == 1
            and follow < len(sentences)
            and len(chosen[0]) < SHORT_STATEMENT
            and follow in informative
            and len(chosen[0]) + len(sentences[follow]) <= MAIN_MAX
            and (
                _adds_to(written[follow], chosen[0], title_tokens)
                or (
                    sentences[follow] == written[follow]  # not completed with a command
                    and _thin_then_more(chosen[0], written[follow], title_tokens)
                )
            )
            and not _needs_what_follows(written[follow])
        ):
            chosen.append(sentences[follow])
        if role == STEPS and not _step_like(chosen[0]):
            role = STEPS_ASIDE  # "There is another issue…" under "Repro steps": no step
        if len(chosen) == 1 and _novel(chosen[0], title_tokens) < RESTATES_TITLE:
            # "Add color conversion to NV12" under the title "Color conversion: RGB => NV12":
            # what the next section says is what the summary can add.
            more = _first_informative(sections[position + 1 :], title_tokens, seen)
            if (
                more
                and len(chosen[0]) + len(more) <= MAIN_MAX
                and _adds_to(more, chosen[0], title_tokens)
                and not _needs_what_follows(more)
            ):
                chosen.append(more)
        chosen = [c[:-1].rstrip() if c.endswith(":") else c for c in chosen]
        text = " ".join(_ensure_period(_unmark(s)) for s in chosen)
        text = _capitalise(text)
        short = len(text) < SHORT_ALONE and _novel(text, title_tokens) >= 0.5
        # A statement that carries little of the title does not say what it is about:
        # "I installed bitcoin core on ubuntu" under "createwallet error: Compiled without
        # sqlite support". A title of one or two content words says too little to lead.
        shared = len(set(tokens(text)) & title_tokens)
        misses_title = bool(title_tokens) and (
            not shared
            or (len(title_tokens) >= TITLE_LEADS and shared < TITLE_COVERED * len(title_tokens))
        )
        unanchored = misses_title and len(parsed.title) <= TITLE_CONTEXT_MAX
        stepwise = role in (STEPS, STEPS_ASIDE)  # the title is put in front by the caller
        if not stepwise and (
            is_dangling(chosen[0]) or short or unanchored or _only_a_reference(text)
        ):
            text = _with_context(text, parsed.title)
        elif not stepwise and misses_title:
            # A long title is its own sentence in front, when both fit in the lead.
            context = title_context(parsed.title)
            context = context if context[-1:] in ".!?…" else f"{context}."
            if len(context) + 1 + len(text) <= MAIN_MAX:
                text = f"{context} {text}"
        return text, role
    # Nothing informative: still never the title alone when the body has prose of its own.
    for section in parsed.sections:
        if section.role not in _STATEMENT_ROLES:
            continue
        for paragraph in section.paragraphs:
            for sentence in split_sentences(paragraph[:PARAGRAPH_MAX])[:MAX_SENTENCES]:
                sentence = sentence.rstrip(":").strip()
                if (
                    is_prose(sentence)
                    and set(tokens(sentence)) - title_tokens
                    and not _CODE_LABEL.match(sentence)
                ):
                    clipped = truncate(sentence, MAIN_MAX)
                    return _with_context(_ensure_period(clipped), parsed.title), section.role
    return "", ""


STEP_MAX = 80  # a list item longer than this is not a short step
STEPS_SHOWN = 140  # characters of the steps joined
_OUTCOME_STEP = re.compile(
    r"(?:and |then )?(?:you |it )?(?:will |would )?(?:see|get|show|observe|notice|throw)s?\b"
    r".{0,30}(?:error|following|this|bug|crash|issue|result)s?\W{0,3}$",
    re.I,
)

_LINK_STEP = re.compile(r"(?:here is |see )?(?:a |the )?(?:links?|url)\b", re.I)


def _step_list(paragraphs: list[str], title_tokens: set[str]) -> str:
    """Short steps (one list item a paragraph) joined with "; " when all of them fit in
    :data:`STEPS_SHOWN` characters and there are two or more, else ``""``.

    "Steps: enter the site; open react-devtools; select We." says more than the one step
    that scores best ("and show following errors."). Steps that do not fit are read as
    sentences, where the step that says what goes wrong can win; so are steps with one
    marked 🐛 (the maintainers' pointer at the failing step)."""
    steps: list[str] = []
    for paragraph in paragraphs[:MAX_SENTENCES]:
        step = paragraph.strip().rstrip(".;:,")
        if _BUG_STEP.search(step):
            if _novel(_unmark(step), title_tokens) >= RESTATES_TITLE:
                return ""  # the marked step says what goes wrong: read as sentences
            continue  # "🐛 Layout issue": the title says it
        if not step or len(step) > STEP_MAX or "\n" in step:
            return ""  # not a list of short steps: read as sentences
        if not set(tokens(step)) - title_tokens or _LINK_STEP.match(step):
            continue  # a step that repeats the title; "Link to code example"
        compact = len(step) - step.count(" ")
        if len(step.split()) < 2 or sum(map(str.isalpha, step)) < 0.6 * compact:
            continue  # a link, a value, a command
        if _OUTCOME_STEP.match(step):
            continue  # "and show following errors": the outcome is said elsewhere
        steps.append(_lower_first(step))
    joined = "; ".join(steps)
    if len(steps) < 2 or len(joined) > STEPS_SHOWN:
        return ""
    return _capitalise(_ensure_period(joined))


def _expected(parsed: ParsedIssue) -> str:
    for section in parsed.sections:
        if section.role == EXPECTED:
            for paragraph in section.paragraphs:
                for sentence in split_sentences(paragraph[:SENTENCE_MAX]):
                    if _CONNECTOR.match(sentence):
                        continue  # "Therefore, it seems a bug…" is not what was expected
                    if is_prose(sentence) or (cjk_count(sentence) >= 4):
                        return sentence
    return ""


QUESTION_NEW_WORDS = 2  # content words a question must add to the title and the statement
PROPOSAL_NEW_WORDS = 3  # ... and a proposal
_QUESTION_ROLES = frozenset((PROBLEM, OTHER, ASK, ERROR))
_LATER_READ = 12  # question (or ask) sentences looked at, at most


def _is_question(sentence: str) -> bool:
    return sentence.endswith("?")


def _paragraph_sentences(
    parsed: ParsedIssue,
    roles: frozenset[str],
    paragraph_may: Callable[[str], bool],
    most: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Each sentence, with the one before it in its paragraph (``""`` for the first), of the
    sections with one of ``roles``: the first ``most`` of each paragraph that
    ``paragraph_may`` lets through (the others are not split at all)."""
    for section in parsed.sections:
        if section.role not in roles:
            continue
        for paragraph in section.paragraphs:
            if not paragraph_may(paragraph[:PARAGRAPH_MAX]):
                continue
            before = ""
            for sentence in split_sentences(paragraph[:PARAGRAPH_MAX])[:most]:
                yield before, sentence
                before = sentence


def _later_sentences(
    parsed: ParsedIssue,
    paragraph_may: Callable[[str], bool],
    sentence_is: Callable[[str], bool],
    most: int | None = None,
) -> Iterator[str]:
    """The sentences ``sentence_is`` picks in the sections a question or an ask is written in
    (see :func:`_paragraph_sentences`), at most ``_LATER_READ`` of them, each without its
    lead and markup."""
    read = 0
    for _, sentence in _paragraph_sentences(parsed, _QUESTION_ROLES, paragraph_may, most):
        if not sentence_is(sentence):
            continue
        read += 1
        if read > _LATER_READ:
            return
        yield _unmark(_drop_lead(sentence))


def _question(parsed: ParsedIssue, statement: str) -> str:
    """The question the issue asks, when the statement does not ask it.

    A question issue often opens with its context ("I was stitching 360° images with
    SIFT…") and asks later ("Can I choose which image is in the centre?"): the question is
    what a maintainer must answer. The first question sentence that stands alone (no
    "any ideas?", no "how do I fix this?") and adds words to the title and the statement.
    """
    if statement.rstrip().endswith("?"):
        return ""
    known = set(tokens(parsed.title)) | set(tokens(statement))
    for sentence in _later_sentences(parsed, lambda text: "?" in text, _is_question):
        if _contains(statement, sentence) or len(sentence) > MAIN_MAX:
            continue
        if not _informative(sentence, known) or is_dangling(sentence):
            continue
        if _ASIDE.match(sentence) or _WEAK.search(sentence) or _POINTS_AT.search(sentence):
            continue
        if len(set(tokens(sentence)) - known) >= QUESTION_NEW_WORDS:
            return sentence
    return ""


def _ask(parsed: ParsedIssue, statement: str) -> str:
    """The ask of a feature request written after its motivation ("It would be super helpful
    if cv2 could provide…" after three sentences of why), when the statement does not ask."""
    if _asks(statement):
        return ""
    known = set(tokens(parsed.title)) | set(tokens(statement))
    asks = _later_sentences(
        parsed, _asks, lambda sentence: _asks(sentence[:SENTENCE_MAX]), MAX_SENTENCES
    )
    for sentence in asks:
        sentence = sentence.rstrip(",; ")
        if _contains(statement, sentence) or len(sentence) > MAIN_MAX:
            continue
        if not _informative(sentence, known) or _POINTS_AT.search(sentence):
            continue
        if _POINTER_END.search(sentence):
            continue  # "…built in, something like:" points at code
        if len(set(tokens(sentence)) - known) >= PROPOSAL_NEW_WORDS:
            return _ensure_period(_LEADING_CONNECTOR.sub("", sentence, count=1))
    return ""


# The key specific a statement is followed by when there is room (seventh round: "the key
# specific is missing", "the title restated"): a later sentence with a contrast or a measured
# comparison (:func:`_key_fact`), the value wanted ("`focal_loss1` should be `0.51168`"),
# where it works ("The same code works on windows and the cap is set to 4k"), where it does
# not happen ("Can't seem to repro with 1.81.1 stable"), what the other returns ("…, while
# the C++ version returns [8400 x 1]").
_SPECIFIC = re.compile(
    r"\bshould (?:be|return|give|output|print|equal)[ \t]+[`'\"]?[-+(\[]?\d|"
    r"\bworks? (?:fine |well |perfectly |correctly )?(?:on|in|with|under)[ \t]+(?:windows|linux|"
    r"ubuntu|mac\w{0,4}|chrome|firefox|safari|python|cpu|gpu|v?\d)|"
    r"\b(?:can't|cannot|can not|couldn't|could not|unable to)[ \t]+(?:seem to[ \t]+)?"
    r"repro\w{0,8}[ \t]+(?:it[ \t]+)?(?:with|on|in)\b|"
    r"\bwhile (?:the |my |it |this )?[^.;!?\n]{0,60}\b(?:returns?|gives?|shows?|prints?|"
    r"outputs?)\b|"
    r"\b(?:returns?|returned|gives?|gave|prints?|printed|outputs?|shows?|showed|equals?|"
    r"becomes?|became|got|get)[ \t]+(?:only[ \t]+)?[`'\"]?(?:-?\d|\[|\(\d|nan\b|"
    r"inf\b|none\b|null\b|undefined\b|true\b|false\b)",
    re.I,
)
# One of these, or a digit, is in every _SPECIFIC match (a quick test before the pattern).
_SPECIFIC_WORDS = (
    "should ", "work", "repro", "while ", "nan", "inf", "none", "null", "undefined", "true",
    "false", "[",
)  # fmt: skip
_SPECIFIC_ROLES = frozenset((PROBLEM, OTHER, ERROR))  # "Expected:" shows its own
_EARLY_PRONOUN = re.compile(r"(?:[^\s.!?]{1,40}[ \t]+){0,3}(?:that|this|these|those|it)\b", re.I)
SPECIFIC_MAX = 160  # a longer sentence is not added after the statement
SPECIFIC_NEW_WORDS = 3  # content words it must add to the title and the statement


def _specific_words(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in (*_KEY_WORDS, *_SPECIFIC_WORDS)) or bool(
        _DIGIT.search(lowered)
    )


def _key_specific(parsed: ParsedIssue, statement: str) -> str:
    """The first sentence after the statement that carries the key specific (a contrast,
    the value wanted, where it works or does not happen), ``""`` when there is none."""
    known = set(tokens(parsed.title)) | set(tokens(statement))
    sentences = _paragraph_sentences(parsed, _SPECIFIC_ROLES, _specific_words, MAX_SENTENCES)
    for read, (written, sentence) in enumerate(sentences, 1):
        if read > MAX_SENTENCES:
            return ""
        if len(sentence) > SPECIFIC_MAX or _contains(statement, sentence):
            continue
        if not _SPECIFIC.search(sentence) and (
            "instead" in sentence.lower() or not _key_fact(sentence, written)
        ):
            continue  # "…fine with this being closed by assisting instead": an aside
        sentence = _unmark(_drop_lead(sentence))
        if not _informative(sentence, known) or is_dangling(sentence):
            continue
        if _POINTS_AT.search(sentence) or _INTRODUCES.search(sentence):
            continue
        if _EARLY_PRONOUN.match(sentence):
            continue  # "Only after that do we trigger…": about a sentence not shown
        if len(set(tokens(sentence)) - known) >= SPECIFIC_NEW_WORDS:
            bare = _LEADING_CONNECTOR.sub("", sentence, count=1)
            return _ensure_period(_capitalise(bare))
    return ""


PROPOSAL_WORDS = 8  # a proposal this long that ends in a colon has said its point


def _proposal(parsed: ParsedIssue, statement: str, role: str) -> str:
    """What a feature request proposes ("Proposed solution" and the like), when the
    statement came from another section: the problem says why, this says what."""
    if role == ASK:
        return ""
    known = set(tokens(parsed.title)) | set(tokens(statement))
    for section in parsed.sections:
        if section.role != ASK:
            continue
        for paragraph in section.paragraphs:
            for sentence in split_sentences(paragraph[:PARAGRAPH_MAX])[:_CANDIDATES]:
                sentence = _unmark(_drop_lead(sentence))
                if sentence.endswith(":") and len(sentence.split()) >= PROPOSAL_WORDS:
                    # "I would love to see an onion address in the wallet, like ABCore:"
                    # says it before the colon (a picture follows).
                    sentence = sentence.rstrip(":").rstrip()
                if not _informative(sentence, known) or is_dangling(sentence):
                    continue
                if _POINTS_AT.search(sentence) or _INTRODUCES.search(sentence):
                    continue
                if len(set(tokens(sentence)) - known) >= PROPOSAL_NEW_WORDS:
                    return sentence
    return ""


def _contains(haystack: str, needle: str) -> bool:
    return needle.lower() in haystack.lower()


ERROR_HEAD = 30  # characters of an error's rest that, found in the summary, say it already
BEYOND_TITLE_WORDS = 3  # words an error must say past the title's quote of it
QUOTE_HEAD = 16  # characters of an error's start that, found in the title, make a quote
_PART_END = frozenset(".:;!?")


def _beyond_title(error: str, title: str) -> str:
    """What an error says past the part the title quotes.

    The title ``ValueError: Exception encountered when calling layer "13" (type Lambda).``
    and the traceback's ``… (type Lambda). Dimensions must be equal, but are 204 and 206 …``
    give ``Dimensions must be equal, but are 204 and 206 …``. ``""`` when the title does not
    quote the error's start or the rest says little. Linear in both (bounded) texts.
    """
    flat = " ".join(error.split())
    quoted = " ".join(title.split()).lower()
    lower = flat.lower()
    at = quoted.find(lower[:QUOTE_HEAD])
    if at < 0:
        return ""
    shared = 0
    for mine, theirs in zip(lower, quoted[at:], strict=False):
        if mine != theirs:
            break
        shared += 1
    # The quote must end where a part of the message ends ("…(type Lambda)." or
    # "…unhashable" before ". Instead, …"), not inside a path or a word.
    ends_part = flat[shared - 1 : shared] in _PART_END or flat[shared : shared + 1] in _PART_END
    rest = flat[shared:].lstrip(" .:;,-")
    return rest if ends_part and len(rest.split()) >= BEYOND_TITLE_WORDS else ""


def summarise(title: str, body: str, max_chars: int = SUMMARY_MAX) -> str:
    """A summary of at most ``max_chars`` characters that is never empty.

    Composed of parts, shown in reading order (statement, question or proposal, error,
    expected, environment) but given room in order of worth: the statement, then the error,
    the question or proposal, the environment and last "Expected:", which takes what is left.
    """
    parsed = parse_issue(title or "", body or "", BODY_MAX)
    title = parsed.title
    error = find_error(parsed)
    if _LOCATION_ONLY.match(error):
        error = ""  # autoconf's "error: in `/src/dir':" says where; the next line says what
    error = error or _failure_line(parsed) or _logged_error(parsed)
    statement, role = _statement(parsed, error)
    if statement and role in (STEPS, STEPS_ASIDE) and title:
        # Steps alone do not say what is wrong: the title does.
        context = title_context(title)
        steps = f"Steps: {statement}" if role == STEPS else _upper_first(statement)
        context = truncate(context, 140)
        context = context if context[-1:] in ".!?…" else f"{context}."
        statement = f"{context} {steps}" if context != "." else steps
    specific = _key_specific(parsed, statement) if statement and role != STEPS else ""
    env = environment(parsed)
    expected = _expected(parsed)
    asked = _question(parsed, statement) if statement else ""
    proposed = "" if asked or not statement else _proposal(parsed, statement, role)
    if statement and not (asked or proposed):
        asked = _capitalise(_ask(parsed, statement))
        if len(statement) + 1 + len(asked) > max_chars:
            asked = ""  # the statement is not cut for it
    context = f"{title} {statement} {asked} {proposed} {specific}".replace("`", "")
    if error and any(_contains(context, piece.replace("`", "")) for piece in _error_keys(error)):
        # Said already, unless the error goes on past what the title quotes of it.
        rest = _beyond_title(error, title)
        error = rest if rest and not _contains(context, rest[:ERROR_HEAD]) else ""
    title_error = _title_error(title, statement)
    if title_error and ":" not in error:
        error = title_error  # the title's "AssertionError: Tried to export…" over a bare name
    error = error or title_error
    env = [fact for fact in env if not _contains(context, fact.split()[-1])]

    lead = ""
    if statement:
        has_extras = bool(error or env or expected or asked or proposed or specific)
        lead = _fit(statement, MAIN_MAX if has_extras else max_chars)
    elif title:
        # "[DevTools Bug] Cannot add node…": the kind label is the type tag's to say.
        lead = _ensure_period(truncate(title_context(title) or title, MAIN_MAX))
    # (order shown, text) by worth; each is kept only if it fits whole.
    slots: dict[int, str] = {0: lead} if lead else {}
    if error:
        shown = _error_message(error)
        if shown.count("(") == shown.count(")") + 1 and len(shown) < ERROR_SHOWN:
            shown += ")"  # "Segmentation fault (core dumped": the pattern stops at a word
        _place(slots, 20, _ensure_period(f"Error: {truncate(shown, ERROR_SHOWN)}"), max_chars)
    if asked:
        _place(slots, 10, asked, max_chars)
    elif proposed:
        _place(slots, 10, _ensure_period(f"Proposed: {proposed}"), max_chars)
    if specific and lead == statement:
        _place(slots, 5, specific, max_chars)  # right after the statement it goes on from
    if env:
        _place(slots, 40, f"({', '.join(env)})", max_chars)
    refs = references(parsed)
    if refs and not _contains(f"{title} {statement}", refs.rstrip(".").rsplit("#", 1)[-1]):
        _place(slots, 50, refs, max_chars)
    if statement and lead != statement and 0 in slots:
        # The statement was cut to make room: give it back what the others left.
        others = len(_joined({k: v for k, v in slots.items() if k != 0}))
        slots[0] = _fit(statement, max_chars - others - (1 if others else 0))
    if expected and statement and role != EXPECTED:
        expected_text = _ensure_period(f"Expected: {_lower_first(expected)}")
        room = max_chars - len(_joined(slots)) - 1
        if room >= 40:
            slots[30] = truncate(expected_text, room)
    summary = _joined(slots).strip()
    if not any(c.isalnum() for c in summary):
        summary = _fallback(body or "")  # "." for a title of "." says nothing
    return truncate(summary, max_chars)


# "resolves #21046", "Fix issue: https://github.com/o/r/issues/22052" (made "o/r#22052" by
# the parser), "Fixed #23937 and #23056": the issues a pull request answers.
_REFERENCE = re.compile(
    r"\b(fix(?:es|ed)?|close[sd]?|resolve[sd]?|reworks?|continues|follow-?up (?:to|of|for)|"
    r"duplicate of|supersedes|replaces)(?:[ \t]{1,3}issues?)?[ \t]{0,3}:?[ \t]{0,3}"
    rf"({_ISSUE_REF}(?:(?:,[ \t]{{0,3}}|[ \t]{{1,3}}and[ \t]{{1,3}}){_ISSUE_REF}){{0,4}})",
    re.I,
)
_REPO_PREFIX = re.compile(r"[\w.-]{1,100}/[\w.-]{1,100}#")
REFERENCES_SHOWN = 3  # references of a pull request shown, at most
_REFERENCE_TEXT = 2_000  # characters of each paragraph or code chunk read for them


def references(parsed: ParsedIssue) -> str:
    """The issues a pull request fixes or continues, as "Resolves #21046." (the repository
    prefix dropped: it is nearly always the issue's own), ``""`` when there are none."""
    chunks = (
        chunk for section in parsed.sections for chunk in [*section.paragraphs, *section.code]
    )
    found = {
        f"{match.group(1).lower()} {_REPO_PREFIX.sub('#', match.group(2))}": None
        for chunk in chunks
        if "#" in chunk
        for match in _REFERENCE.finditer(chunk[:_REFERENCE_TEXT])
    }  # in order, once each
    if not found:
        return ""
    text = "; ".join(list(found)[:REFERENCES_SHOWN])
    return f"{text[:1].upper()}{text[1:]}."


def _fit(statement: str, limit: int) -> str:
    """The statement in ``limit`` characters: whole sentences while the first fits (a
    second sentence cut in the middle says less than none), else the first one cut."""
    if len(statement) <= limit:
        return statement
    sentences = split_sentences(statement)
    kept = sentences[:1]
    for sentence in sentences[1:]:
        if len(" ".join([*kept, sentence])) > limit:
            break
        kept.append(sentence)
    return truncate(" ".join(kept), limit)


def _joined(slots: dict[int, str]) -> str:
    return " ".join(slots[k] for k in sorted(slots))


def _place(slots: dict[int, str], order: int, text: str, limit: int) -> None:
    """Put ``text`` at position ``order`` if the summary still fits in ``limit``."""
    if len(_joined({**slots, order: text})) <= limit:
        slots[order] = text


# A title that names an error ("…: Element type is invalid: expected a string…",
# "libfoo.so: signal 11 (SIGSEGV)"); not one that only says something fails.
_NAMES_ERROR = re.compile(
    r"\b(?:\w{0,40}(?:error|exception)|invalid|sig(?:segv|abrt|ill|bus)|segmentation fault|"
    r"panic|assertion)\b",
    re.I,
)


def _title_error(title: str, statement: str) -> str:
    """A long title that names the error, as the error, when the statement does not carry
    it: too long to lead the statement, it would else be lost from the summary."""
    if not statement:
        return ""  # the title leads the summary itself
    context = title_context(title)
    # The error named where the shown error (cut at ERROR_SHOWN) still has it.
    if len(title) <= TITLE_CONTEXT_MAX or not _NAMES_ERROR.search(context[:TITLE_CONTEXT_MAX]):
        return ""
    title_tokens = set(tokens(context))
    if len(title_tokens & set(tokens(statement))) >= TITLE_COVERED * len(title_tokens):
        return ""  # the statement carries the title
    return context


# A log line that says what failed, when no exception or fatal line was found:
# "/tflite: Failed to fetch Hexagon NN version.", "[prores @ 0x7fb8] Specified pixel format
# yuv420p is invalid or not supported".
_FAILURE = re.compile(
    r"\b(?:failed to|failed|cannot|can't|could not|couldn't|unable to|not supported|"
    r"unsupported|not found|no such|permission denied|refused|is invalid|not available|"
    r"does not exist|doesn't exist|not allowed)\b",
    re.I,
)
_LOG_LEAD = re.compile(
    r"(?:[ \t]*(?:\[[^\]\n]{0,80}\]|\d[\d/:.,T-]{5,30}|[A-Z]/[\w.-]{1,40}(?:\([ \t]*\d{1,8}\))?:|"
    r"/?[\w.-]{1,40}:(?=[ \t])|(?:E|W|F|I|ERROR|WARN|WARNING|FATAL|INFO)\b:?))+[ \t]*"
)
# What prose quotes of a failure: a code span, or what follows "I get a runtime error…:".
_QUOTED_FAILURE = re.compile(
    r"`([^`\n]{10,1000})`|\b(?:errors?|exceptions?)\b[^:`\n]{0,60}:[ \t]+([^`\n]{10,1000})",
    re.I,
)
# "… not supported [ERROR:0] global /private/…": the next log record in the same line.
_NEXT_RECORD = re.compile(r"[ \t]+(?=\[?(?:ERROR|WARN(?:ING)?|INFO|DEBUG|FATAL)\b)")
# A warning or info line ("W tensorflow/…] TF-TRT Warning: Could not find TensorRT"), a
# traceback, a call in code (console.error('load failed')), a person writing.
_NOT_FAILURE = re.compile(
    r"warn|:[ \t][IW][ \t]|^[ \t]*[IW]\d{0,4}[ \t]|[\w.]\(['\"]|Traceback|File \"|\.pyx?\b|"
    r"reproduc|\bmake\[\d|(?:leaving|entering) directory",
    re.I,
)
_PERSON = re.compile(r"\b(?:I|my|we|our)\b|^(?:but|and|so)\b", re.I)
FAILURE_LINES = 200  # lines of a chunk read for a failure line
FAILURE_WORDS = 3  # words a failure line must have


def _failure_line(parsed: ParsedIssue) -> str:
    """What a log, or a code span quoted in prose, says failed ("Failed to fetch Hexagon NN
    version."), when it says so in words; ``""`` when nothing does."""
    chunks = [c for s in parsed.sections if s.role in (LOG, ERROR) for c in s.code]
    chunks += [
        m.group(1) or m.group(2)
        for s in parsed.sections
        if s.role in (PROBLEM, OTHER, STEPS, ERROR)
        for p in s.paragraphs
        if "`" in p or ":" in p
        for m in _QUOTED_FAILURE.finditer(p[:PARAGRAPH_MAX])
    ]
    for chunk in chunks:
        for raw in chunk.split("\n")[:FAILURE_LINES]:
            line = raw[:SENTENCE_MAX]
            if not _FAILURE.search(line) or _NOT_FAILURE.search(line):
                continue
            lead = _LOG_LEAD.match(line)
            text = line[lead.end() :] if lead else line.strip()
            text = _NEXT_RECORD.split(text, 1)[0]
            for sentence in split_sentences(text):
                if not _FAILURE.search(sentence) or len(sentence.split()) < FAILURE_WORDS:
                    continue
                if _CONNECTOR.match(sentence) or _PERSON.search(sentence):
                    continue  # "However, 60 white coins cannot be dyed…": prose in a code span
                if sum(map(str.isalpha, sentence)) < 0.6 * len(sentence.replace(" ", "")):
                    continue  # a path or a hex dump
                return truncate(sentence, ERROR_SHOWN)
    return ""


# A log record's own "Error:" (seventh round: "the key specific is missing"): journalctl's
# "bitcoind[7207]: Error: Error parsing command line arguments: Invalid parameter
# -daemonwait", autoconf's "configure: error: libdb_cxx headers missing", a line that starts
# with it. After a record's lead (a "]", ":", ">" or ")" and a blank) or at a line's start,
# never after a word ("I got this error: …" is _failure_line's, when it says what failed).
_LOGGED_ERROR = re.compile(
    r"(?:^|(?<=[\]:>)][ \t]))(?:Error|ERROR|error):[ \t]+(\S[^\n]{9,300})", re.M
)
# Where a log record joined into a paragraph ends: the next record's clock time ("…
# -daemonwait abr 15 16:16:36 host systemd[1]: …"), or a journalctl "░░" line.
_RECORD_END = re.compile(r"[ \t]+(?:(?=(?:\w{3,4}[ \t]+\d{1,2}[ \t]+)?\d{1,2}:\d\d:\d\d\b)|\u2591)")
# "error: in `/bitcoin/bitcoin-cli':" says only where the failure happened, OpenCV's
# "(-2:Unspecified error) in function 'cv::dnn::…'" only in which function.
_LOCATION_ONLY = re.compile(
    r"(?:error:[ \t]*)?(?:in [`'\"]?[^\s`'\"]{1,300}[`'\"]?:?$|"
    r"\(-\d{1,4}:unspecified error\)[ \t]*in function\b)",
    re.I,
)
LOGGED_READ = 20_000  # characters of each section read for a logged error


def _logged_error(parsed: ParsedIssue) -> str:
    """The message of the first log record that says "Error: …" in the issue's code or
    prose (a log pasted without a fence is read as prose), ``""`` when none does."""
    for section in parsed.sections:
        if section.role in (IGNORE, ENV):
            continue
        for chunk in [*section.code, *section.paragraphs]:
            if "rror:" not in chunk and "ERROR:" not in chunk:
                continue
            for match in _LOGGED_ERROR.finditer(chunk[:LOGGED_READ]):
                message = _RECORD_END.split(match.group(1), 1)[0].strip()
                if len(message.split()) < FAILURE_WORDS or _LOCATION_ONLY.match(message):
                    continue
                if not _NOT_FAILURE.search(message):  # "ERROR: CMake Warning at …": a label
                    return truncate(message, ERROR_SHOWN)
    return ""


ERROR_KEY = 40  # characters of an error's message that, found in the summary, make it said


def _error_keys(error: str) -> list[str]:
    """Pieces of ``error`` that, found in the title or the summary, say it already: its name,
    and the start of its message (a title that quotes the message without the name)."""
    name, _, message = error.partition(":")
    name, message = name.strip(), message.strip()
    keys = [name] if len(name) >= 6 else [error[:ERROR_KEY]]
    if len(message) >= 20:
        keys.append(message[:ERROR_KEY])
    return keys


def _fallback(body: str) -> str:
    """No title and no prose: the first words of the body as written, else a placeholder."""
    words = " ".join(body[:2000].split())
    return words[:SUMMARY_MAX] if any(c.isalnum() for c in words) else EMPTY
