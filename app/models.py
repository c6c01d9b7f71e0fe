"""The database model: issues with their tags, and enrichment runs with one row per stage."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.states import DeliveryState, EnrichmentStatus, IssueStatus, TaskState


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC timestamp")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumColumn(TypeDecorator[E], Generic[E]):
    """A ``StrEnum`` stored as its value in a plain ``VARCHAR`` (no database enum type)."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_type: type[E]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum_type(value)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Issue(Base):
    __tablename__ = "issues"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        Index("ix_issues_enrichment_status_id", "enrichment_status", "id"),
        Index("ix_issues_status_id", "status", "id"),
        # Ids are never reused (migration 0002): a deleted issue's runs keep its id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[IssueStatus] = mapped_column(
        StrEnumColumn(IssueStatus), default=IssueStatus.OPEN
    )
    ai_summary: Mapped[str | None] = mapped_column(Text)
    enrichment_status: Mapped[EnrichmentStatus] = mapped_column(
        StrEnumColumn(EnrichmentStatus), default=EnrichmentStatus.PENDING
    )
    # The run whose result the issue shows or waits for; an edit points it at a newer run.
    enrichment_task_id: Mapped[str | None] = mapped_column(String(64))
    enrichment_error: Mapped[str | None] = mapped_column(Text)
    enriched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tag_rows: Mapped[list[IssueTag]] = relationship(
        back_populates="issue",
        cascade="all, delete-orphan",
        order_by="IssueTag.position",
        lazy="selectin",
        passive_deletes=True,
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class IssueTag(Base):
    """One tag of one issue; ``(tag, issue_id)`` is indexed so ``?tag=`` is an index scan."""

    __tablename__ = "issue_tags"
    __table_args__ = (Index("ix_issue_tags_tag_issue_id", "tag", "issue_id"),)

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)

    issue: Mapped[Issue] = relationship(back_populates="tag_rows")


class EnrichmentRun(Base):
    """One enrichment of one issue: a chain summarise → tag → persist.

    The id is the chain's root (summarise) task id. ``issue_id`` is deliberately not a
    foreign key: a run's record outlives a deleted issue, so ``GET /tasks/<id>`` can still
    say what happened. ``state`` is stored once the run has finished; until then it is
    derived from the stages.
    """

    __tablename__ = "enrichment_runs"
    __table_args__ = (
        Index("ix_enrichment_runs_state_created_at", "state", "created_at", "id"),
        Index("ix_enrichment_runs_created_at", "created_at", "id"),
        Index("ix_enrichment_runs_issue_id", "issue_id"),
        Index("ix_enrichment_runs_dispatched", "dispatched"),
        Index("ix_enrichment_runs_fingerprint", "fingerprint", "finished_at"),
        Index("ix_enrichment_runs_finished_at", "finished_at"),
        Index("ix_enrichment_runs_resumed_at", "resumed_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issue_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[TaskState] = mapped_column(StrEnumColumn(TaskState), default=TaskState.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The outbox: False while the chain still has to reach the broker.
    dispatched: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())
    dispatch_error: Mapped[str | None] = mapped_column(Text)
    # What the result depends on (text, provider, model, prompt version): a later run with
    # the same fingerprint reuses this run's result unless it was started with ``force``.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    force: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # Sent again after it stalled (``pipelines.recovery``): how often, when last, and from
    # which stage. ``resumes`` is also the compare-and-set that lets one sweeper resume it.
    resumes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    resumed_at: Mapped[datetime | None]
    resumed_from: Mapped[str | None] = mapped_column(String(32))

    stages: Mapped[list[EnrichmentStage]] = relationship(
        back_populates="run",
        cascade="all, delete-orphan",
        order_by="EnrichmentStage.position",
        lazy="selectin",
        passive_deletes=True,
    )


class EnrichmentStage(Base):
    __tablename__ = "enrichment_stages"
    __table_args__ = (Index("ix_enrichment_stages_finished_at", "finished_at"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("enrichment_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[TaskState] = mapped_column(StrEnumColumn(TaskState), default=TaskState.PENDING)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The provider's token counts, every attempt's added up (None: the provider reports none).
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # True when the stage reused an earlier run's result instead of calling the provider.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # While the stage waits in RETRY: when its next attempt is due (the countdown's end).
    retry_at: Mapped[datetime | None]
    # What the stage returned, kept once it succeeded: a resumed run starts after it, and a
    # late duplicate of its message passes it on instead of calling the provider again.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[EnrichmentRun] = relationship(back_populates="stages")


class EnrichmentRetry(Base):
    """One retry of one stage and why (``timeout``, ``429``, ``5xx``, ``database``, ...)."""

    __tablename__ = "enrichment_retries"
    __table_args__ = (Index("ix_enrichment_retries_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("enrichment_runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One webhook event of one run (``issue.enriched``, ``run.failed``): the outbox row.

    Inserted in the transaction that ends the run, so an event exists exactly when its run
    ended that way; ``UNIQUE(run_id, event)`` keeps a redelivered persist from recording
    it twice. The id is the ``X-Issueflow-Delivery`` header, the same on every attempt and
    re-send. ``dispatched`` is False while no task message carries it (the API's outbox
    sweeper sends it then).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "event", name="uq_webhook_deliveries_run_id_event"),
        Index("ix_webhook_deliveries_state_created_at", "state", "created_at", "id"),
        Index("ix_webhook_deliveries_created_at", "created_at", "id"),
        Index("ix_webhook_deliveries_dispatched", "dispatched"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("enrichment_runs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[DeliveryState] = mapped_column(
        StrEnumColumn(DeliveryState), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The receiver's last HTTP status (None: no answer), and why the last attempt failed.
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
