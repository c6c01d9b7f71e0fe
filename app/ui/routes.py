"""/ui/ pages: issues, one issue with its runs, one run's stage timeline, failed runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator
from sqlalchemy import select

from app.config import Settings
from app.deps import SessionDep, SettingsDep, key_matches
from app.models import EnrichmentRun, Issue
from app.pagination import InvalidCursor
from app.run_events import event_stream
from app.schemas import StageRead, TaskStatusRead, storable_text
from app.services.issues import get_issue, list_issues, to_read
from app.services.runs import get_run, list_runs, task_status
from app.states import FINISHED_STATES, EnrichmentStatus, IssueStatus, RunStateFilter

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_FILES = {"app.css": "text/css", "run.js": "text/javascript"}
PAGE_SIZE = 50
KEY_COOKIE = "issueflow_key"
NOTHING = "\u2013"  # an en dash: no value (yet)
RUNS_OF_ISSUE = 50

templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html

# Everything the pages load comes from this app: no inline script, no other origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


@dataclass(frozen=True)
class StageRow:
    """One stage of the timeline, with the durations the page shows."""

    stage: StageRead
    queue_wait: float | None  # seconds from when it could start to its (last) start
    running: float | None  # seconds of its last attempt


def timeline(status_: TaskStatusRead) -> list[StageRow]:
    rows = []
    ready: datetime | None = status_.created_at
    for stage in status_.stages:
        wait = None
        if stage.started_at is not None and ready is not None:
            wait = max(0.0, (stage.started_at - ready).total_seconds())
        running = None
        if stage.started_at is not None and stage.finished_at is not None:
            running = max(0.0, (stage.finished_at - stage.started_at).total_seconds())
        rows.append(StageRow(stage, wait, running))
        ready = stage.finished_at
    return rows


def seconds(value: float | None) -> str:
    if value is None:
        return NOTHING
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def when(value: datetime | None) -> str:
    return NOTHING if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["seconds"] = seconds
templates.env.filters["when"] = when


def render(request: Request, name: str, settings: Settings, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {
            "writes_need_key": bool(settings.api_keys),
            "reads_need_key": settings.api_read_requires_key,
            "finished_states": [state.value for state in FINISHED_STATES],
            **context,
        },
        headers=SECURITY_HEADERS,
    )
    return response


def _read_access(request: Request, settings: Settings) -> HTMLResponse | None:
    """None when the page may be shown; else the page that asks for the key.

    With ``API_READ_REQUIRES_KEY`` reads need a key, and a browser opening a page cannot
    send a Bearer header: the key is entered once (``POST /ui/key``) and kept in an
    HttpOnly cookie that only the ``/ui/`` paths receive.
    """
    if not settings.api_read_requires_key:
        return None
    offered = request.cookies.get(KEY_COOKIE)
    if offered and key_matches(settings, offered):
        return None
    return _key_page(request, settings, next_path=request.url.path, status_code=401)


def _key_page(
    request: Request, settings: Settings, *, next_path: str, status_code: int, error: str = ""
) -> HTMLResponse:
    response = render(request, "key.html", settings, next_path=next_path, error=error)
    response.status_code = status_code
    return response


def _safe_next(value: str) -> str:
    """Only a path of these pages: never another site (an open redirect)."""
    if value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


@router.post("/key", response_class=HTMLResponse)
async def enter_key(request: Request, settings: SettingsDep) -> Response:
    """The key form of ``API_READ_REQUIRES_KEY`` deployments: a cookie for the pages."""
    form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=4)
    key = (form.get("key") or [""])[0]
    next_path = _safe_next((form.get("next") or ["/ui/"])[0])
    if not settings.api_keys or not key_matches(settings, key):
        return _key_page(
            request,
            settings,
            next_path=next_path,
            status_code=403,
            error="That key is not accepted.",
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        KEY_COOKIE,
        key,
        path="/ui/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/runs/{task_id}/events", response_model=None)
async def run_events_page(
    request: Request,
    settings: SettingsDep,
    task_id: Annotated[str, PathParam(max_length=64), BeforeValidator(storable_text)],
    last_event_id: Annotated[int | None, Header()] = None,
) -> Response:
    """The run page's event stream where reads need a key (the cookie stands for it)."""
    denied = _read_access(request, settings)
    if denied is not None:
        return denied
    return await event_stream(request, settings, task_id=task_id, last_event_id=last_event_id)


@router.get("/", response_class=HTMLResponse)
def issues_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tag: Annotated[str | None, Query(max_length=64), BeforeValidator(storable_text)] = None,
    enrichment_status: EnrichmentStatus | None = None,
    issue_status: Annotated[IssueStatus | None, Query(alias="status")] = None,
    q: Annotated[str | None, Query(max_length=300), BeforeValidator(storable_text)] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    if (denied := _read_access(request, settings)) is not None:
        return denied
    try:
        issues, next_cursor = list_issues(
            session=session,
            limit=PAGE_SIZE,
            cursor=cursor or None,
            q=q or None,
            tags=[tag] if tag else (),
            enrichment_status=enrichment_status,
            status=issue_status,
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    filters = {"q": q, "tag": tag, "enrichment_status": enrichment_status, "status": issue_status}
    query = {key: str(value) for key, value in filters.items() if value}
    return render(
        request,
        "issues.html",
        settings,
        issues=[to_read(issue) for issue in issues],
        next_query={**query, "cursor": next_cursor} if next_cursor else None,
        search=True,
        q=q or "",
        tag=tag or "",
        enrichment_status=enrichment_status.value if enrichment_status else "",
        issue_status=issue_status.value if issue_status else "",
        enrichment_statuses=[s.value for s in EnrichmentStatus],
        issue_statuses=[s.value for s in IssueStatus],
    )


@router.get("/issues/{issue_id}", response_class=HTMLResponse)
def issue_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    issue_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
) -> HTMLResponse:
    if (denied := _read_access(request, settings)) is not None:
        return denied
    issue = get_issue(session=session, issue_id=issue_id)
    if issue is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"issue {issue_id} not found")
    return render(
        request,
        "issue.html",
        settings,
        issue=to_read(issue),
        runs=[task_status(run) for run in runs_of(session, issue)],
    )


def runs_of(session: Any, issue: Issue) -> Sequence[EnrichmentRun]:
    """The issue's runs, newest first (never those of an earlier issue with its id)."""
    return session.scalars(  # type: ignore[no-any-return]
        select(EnrichmentRun)
        .where(EnrichmentRun.issue_id == issue.id, EnrichmentRun.created_at >= issue.created_at)
        .order_by(EnrichmentRun.created_at.desc(), EnrichmentRun.id.desc())
        .limit(RUNS_OF_ISSUE)
    ).all()


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    state: RunStateFilter | None = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    if (denied := _read_access(request, settings)) is not None:
        return denied
    try:
        runs, next_cursor = list_runs(
            session=session, limit=PAGE_SIZE, cursor=cursor or None, state=state
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    titles = dict(
        session.execute(
            select(Issue.id, Issue.title).where(Issue.id.in_({run.issue_id for run in runs}))
        ).all()
    )
    next_query = None
    if next_cursor:
        next_query = {"cursor": next_cursor, **({"state": state.value} if state else {})}
    return render(
        request,
        "runs.html",
        settings,
        runs=[task_status(run) for run in runs],
        titles=titles,
        state=state.value if state else "",
        states=[s.value for s in RunStateFilter],
        next_query=next_query,
    )


@router.get("/runs/{task_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    task_id: Annotated[str, PathParam(max_length=64), BeforeValidator(storable_text)],
) -> HTMLResponse:
    if (denied := _read_access(request, settings)) is not None:
        return denied
    run = get_run(session=session, task_id=task_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no enrichment run knows task {task_id}")
    status_ = task_status(run)
    issue = get_issue(session=session, issue_id=run.issue_id)
    return render(
        request,
        "run.html",
        settings,
        run=status_,
        rows=timeline(status_),
        issue=to_read(issue) if issue is not None else None,
    )


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(
        STATIC / name,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
