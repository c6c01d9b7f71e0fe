"""The error responses each route declares in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorDetail


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request (for example an invalid cursor)",
        401: "API key missing",
        403: "API key not accepted",
        404: "Not found",
        409: "Conflict",
        413: "Request body too large",
        422: "Invalid input",
        431: "Request headers too large",
        503: "Database or broker unavailable",
    }
    return {code: {"model": ErrorDetail, "description": descriptions[code]} for code in codes}
