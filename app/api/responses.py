"""Answers built from a model the route already validated.

A route that returns a pydantic model has FastAPI validate it again against the response
model and, for a sync route, do so in another trip through the thread pool: on the hottest
routes (``POST /issues``, ``GET /tasks/<id>``) that cost more than the database. These
routes declare ``response_model`` for the OpenAPI schema and return ``model_response``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response
from pydantic import BaseModel


def model_response(
    model: BaseModel, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``model`` as FastAPI would send it (JSON, by alias), without validating it again."""
    return Response(
        content=model.model_dump_json(by_alias=True),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
