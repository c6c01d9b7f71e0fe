"""Error responses: what each route declares in the OpenAPI schema, and the handlers that
shape them (``install_error_handlers``).

Every error body is ``{"detail": "..."}``, or for 422 a list of field errors
``{"type", "loc", "msg"[, "input"][, "ctx"]}``. The offending ``input`` is echoed back
only when it is small: a 60 KB body gives a 422 of a few hundred bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from app.schemas import ErrorDetail

log = logging.getLogger(__name__)

# An input whose JSON is longer than this is not echoed back in a 422.
INPUT_ECHO_MAX = 200

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# What pydantic says when the body is not a JSON object; FastAPI passes a body that is not
# declared as JSON on as bytes, which fails the same way.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request (for example an invalid cursor)",
        401: "API key missing",
        403: "API key not accepted",
        404: "Not found",
        409: "Conflict",
        413: "Request body too large",
        422: "Invalid input (a field, the body, or an unknown query parameter)",
        431: "Request headers too large",
        503: "Database or broker unavailable",
    }
    return {code: {"model": ErrorDetail, "description": descriptions[code]} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers for HTTP errors, invalid input and an unreachable database."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 405:
            # Starlette's Allow names only the first route of the path; list them all.
            allow = ", ".join(_allowed_methods(app, request.scope))
            exc = StarletteHTTPException(405, exc.detail, {**(exc.headers or {}), "Allow": allow})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = describe_validation_errors(exc.errors(), request.headers.get("content-type"))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error(
            "database error on %s %s: %s",
            request.method,
            request.url.path,
            type(exc.orig).__name__ if exc.orig else exc,
        )
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)


def describe_validation_errors(
    raw: Sequence[Any], content_type: str | None
) -> list[dict[str, Any]]:
    """The 422 body: each error with its type, location and message, small inputs echoed."""
    detail: list[dict[str, Any]] = []
    for error in raw:
        loc = list(error.get("loc", ()))
        item: dict[str, Any] = {"type": error["type"], "loc": loc, "msg": error["msg"]}
        if loc == ["body"] and (error["type"] in _NOT_AN_OBJECT or error["type"] == "missing"):
            item["type"] = "json_object_expected"
            item["msg"] = _json_expected(content_type)
        else:
            echoed = _small(error.get("input"))
            if echoed is not None:
                item["input"] = echoed
            context = _small(error.get("ctx"))
            if isinstance(context, dict):
                item["ctx"] = context
        detail.append(item)
    return detail


def _json_expected(content_type: str | None) -> str:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return "the body must be a JSON object"
    if not media_type:
        return "the body must be a JSON object (send it with 'Content-Type: application/json')"
    return (
        "the body must be JSON, sent with 'Content-Type: application/json'; "
        f"this request's Content-Type is {media_type!r}"
    )


def _small(value: Any) -> Any:
    """``value`` as JSON data when its JSON is at most INPUT_ECHO_MAX characters, else None.

    None too for what JSON cannot carry: NaN and infinities (floats to ``json.loads``,
    refused by ``json.dumps``), bytes that are not UTF-8, nesting too deep to encode again.
    """
    if value is None:
        return None
    try:
        data = jsonable_encoder(value, custom_encoder={Exception: str})
        text = json.dumps(data, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None
    return data if len(text) <= INPUT_ECHO_MAX else None


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route fully matches for this path (probed through the router)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    ]
