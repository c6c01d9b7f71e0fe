"""Request and response bodies of the HTTP API (design.md)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.config import BODY_MAX, TITLE_MAX
from app.states import EnrichmentStatus, IssueStatus, TaskState

# NUL and UTF-16 surrogates (always unpaired in a Python str): PostgreSQL refuses both.
UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")


def storable_text(value: object) -> object:
    """Replace what PostgreSQL cannot store (NUL, lone surrogates) with U+FFFD."""
    if not isinstance(value, str):
        return value  # the strict type check that follows reports it
    return UNSTORABLE.sub("\ufffd", value)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Title = Annotated[
    StrictStr,
    # The schema says what _not_blank checks: some character that is not whitespace.
    Field(min_length=1, max_length=TITLE_MAX, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
    BeforeValidator(storable_text),
]
Body = Annotated[StrictStr, Field(max_length=BODY_MAX), BeforeValidator(storable_text)]


class IssueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body = ""


class IssueUpdate(BaseModel):
    """Every field optional; ``null`` is refused (a title or body cannot be unset)."""

    model_config = ConfigDict(extra="forbid")

    # SkipJsonSchema: the schema must not offer null, which _not_null refuses.
    title: Title | SkipJsonSchema[None] = None
    body: Body | SkipJsonSchema[None] = None
    status: IssueStatus | SkipJsonSchema[None] = None

    @field_validator("title", "body", "status")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for fields the client sent: an absent field is fine, an explicit null not.
        if value is None:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class EnrichmentRead(BaseModel):
    status: EnrichmentStatus
    task_id: str | None
    error: str | None
    enriched_at: datetime | None


class IssueRead(BaseModel):
    id: int
    title: str
    body: str
    status: IssueStatus
    ai_summary: str | None
    tags: list[str]
    enrichment: EnrichmentRead
    created_at: datetime
    updated_at: datetime


class IssueCreated(BaseModel):
    issue: IssueRead
    task_id: str
    status_url: str


class EnrichmentStarted(BaseModel):
    task_id: str
    status_url: str


class IssuePage(BaseModel):
    items: list[IssueRead]
    next_cursor: str | None


class StageRead(BaseModel):
    name: str
    queue: str
    task_id: str
    state: TaskState
    retries: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    retry_at: datetime | None = None  # in RETRY: when the next attempt is due


class Progress(BaseModel):
    completed: int
    total: int


class EnrichmentResult(BaseModel):
    ai_summary: str
    tags: list[str]


class TaskStatusRead(BaseModel):
    task_id: str
    issue_id: int
    state: TaskState
    progress: Progress
    stages: list[StageRead]
    result: EnrichmentResult | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class TaskPage(BaseModel):
    items: list[TaskStatusRead]
    next_cursor: str | None


class ErrorDetail(BaseModel):
    """Every error response: ``{"detail": "..."}``, or a list of field errors for 422."""

    detail: str | list[dict[str, Any]]
