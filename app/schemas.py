"""Request and response bodies of the HTTP API (README.md, "HTTP API")."""

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
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.config import BODY_MAX, TITLE_MAX
from app.states import DeliveryState, EnrichmentStatus, IssueStatus, TaskState

# NUL and UTF-16 surrogates (always unpaired in a Python str): PostgreSQL refuses both.
UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")


def storable_text(value: object) -> object:
    """Replace what PostgreSQL cannot store (NUL, lone surrogates) with U+FFFD."""
    if not isinstance(value, str):
        return value  # the strict type check that follows reports it
    return UNSTORABLE.sub("\ufffd", value)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty or only whitespace")
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


# The default of a PATCH field the client left out (typed Any: it is not a valid value).
_NOT_SENT: Any = None


class IssueUpdate(BaseModel):
    """Every field optional; ``null`` is refused (a title or body cannot be unset)."""

    # The fields are not ``X | None`` unions: a union's errors name its members
    # (``function-before[storable_text(), ...]``) and add a contradictory "Input should be
    # None". A field left out keeps the default None, which is never validated: read what
    # was sent with ``changes()``, not through the attributes.
    model_config = ConfigDict(extra="forbid")

    title: Title = _NOT_SENT
    body: Body = _NOT_SENT
    status: IssueStatus = _NOT_SENT

    @field_validator("title", "body", "status", mode="before")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        # Runs only for fields the client sent: an absent field is fine, an explicit null not.
        if value is None:
            raise PydanticCustomError(
                "null_not_allowed",
                "{field} may be left out, but not null",
                {"field": info.field_name},
            )
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


class Usage(BaseModel):
    """Tokens the provider reported; ``cost`` when ``PROVIDER_PRICE_PER_1K_TOKENS`` is set."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = None


class StageRead(BaseModel):
    name: str
    queue: str
    task_id: str
    state: TaskState
    retries: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    # True when the stage reused an earlier run's result (same text, provider, model, prompts).
    cached: bool = False
    # None when the provider reported no token counts (the local provider).
    usage: Usage | None = None
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
    # The stages' usage summed; None when no stage reported any.
    usage: Usage | None = None
    # How often the run was resumed after it stalled (its message lost), when last, and
    # from which stage (README, "Lost messages").
    resumes: int = 0
    resumed_at: datetime | None = None
    resumed_from: str | None = None


class TaskPage(BaseModel):
    items: list[TaskStatusRead]
    next_cursor: str | None


class DeliveryRead(BaseModel):
    """One webhook delivery (``GET /webhooks/deliveries``): the event, its body, and how
    sending it went."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The X-Issueflow-Delivery header, the same on every attempt")
    event: str
    run_id: str
    state: DeliveryState
    attempts: int
    last_status: int | None = Field(description="The receiver's last HTTP status, if any")
    last_error: str | None
    payload: dict[str, Any] = Field(description="The JSON body sent, unchanged on re-sends")
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None


class ErrorDetail(BaseModel):
    """Every error response: ``{"detail": "..."}``, or a list of field errors for 422."""

    detail: str | list[dict[str, Any]]
