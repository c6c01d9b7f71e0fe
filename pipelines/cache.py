"""Not paying twice: a result is reused for the same text, provider, model and prompts.

The fingerprint covers everything a result depends on: the issue's title and body, the
provider, its model, its prompt version and its tag taxonomy. Runs store it with their
result; a later run with the same fingerprint, not started with ``?force=true``, takes the
earlier result instead of calling the provider (its stages show ``cached: true``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, select

from app.models import EnrichmentRun
from app.states import TaskState
from pipelines.providers import Provider

FINGERPRINT_VERSION = 1
_LOCAL_MODELS = Path(__file__).resolve().parent / "providers" / "models"

_EARLIER_RESULT = (
    select(EnrichmentRun.result)
    .where(
        EnrichmentRun.fingerprint == bindparam("p_fingerprint"),
        EnrichmentRun.state == TaskState.SUCCESS,
        EnrichmentRun.result.is_not(None),
    )
    .order_by(EnrichmentRun.finished_at.desc())
    .limit(1)
)


def fingerprint(provider: Provider, title: str, body: str) -> str:
    """A hex digest of what a result of ``provider`` for this text depends on: SHA-256 of
    the JSON array ``[version, provider, model, prompt version, taxonomy, title, body]``
    (compact, not ASCII-escaped), UTF-8."""
    text = fingerprint_prefix(provider) + _dumps([title, body])[1:]
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint_prefix(provider: Provider) -> str:
    """The fingerprint's JSON text up to the title: ``[version,...,taxonomy,``.

    PostgreSQL completes it from the issue's row (``_pg_fingerprint``), so summarise finds
    an earlier result in the statement that reads its input."""
    identity = [
        FINGERPRINT_VERSION,
        provider.name,
        _model_of(provider),
        str(getattr(provider, "prompt_version", "")),
        list(getattr(provider, "taxonomy", ())),
    ]
    return _dumps(identity)[:-1] + ","


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pg_fingerprint(title: str, body: str) -> str:
    """SQL for ``fingerprint()`` in PostgreSQL, of the text columns ``title`` and ``body``
    and the parameter ``%(fingerprint_prefix)s``: ``to_json`` escapes text as ``json.dumps``
    does with ``ensure_ascii=False`` (the same six short escapes, ``\\u00xx`` for the other
    control characters, nothing else); the text PostgreSQL stores holds neither NUL nor lone
    surrogates (the API replaces them)."""
    return (
        f"encode(sha256(convert_to(%(fingerprint_prefix)s || to_json({title})::text || ',' "
        f"|| to_json({body})::text || ']', 'UTF8')), 'hex')"
    )


def earlier_result(connection: Connection, fingerprint: str) -> dict[str, Any] | None:
    """The newest successful result with this fingerprint, or None. (On PostgreSQL
    summarise finds it in the read that begins it: ``bookkeeping._PG_SUMMARISE_READ``.)"""
    result = connection.execute(_EARLIER_RESULT, {"p_fingerprint": fingerprint}).scalar()
    return result if isinstance(result, dict) else None


def _model_of(provider: Provider) -> str:
    if provider.name == "local":
        # The offline provider's model is its fitted files: a retrained model is a new one.
        return _local_model_digest()
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) else ""


@lru_cache(maxsize=1)
def _local_model_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_LOCAL_MODELS.glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
