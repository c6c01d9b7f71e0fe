"""One rule for query strings on every route: a parameter the route does not take is a 422
that names the ones it does (``/tasks?issue_id=`` is refused, not silently ignored)."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


def allowed_query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` declares (aliases, as clients spell them).

    Walked for each request that has a query string: a handful of nodes, cheaper than a
    cache (routes are not hashable), and a request without a query string skips it.
    """
    return frozenset(_query_names(route.dependant))


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query_parameters(request: Request) -> None:
    """An app-wide dependency (async: it runs on the event loop, no thread hop)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema or not request.query_params:
        return  # the documentation pages and their assets take what their scripts send
    allowed = allowed_query_parameters(route)
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if not unknown:
        return
    takes = f"takes: {', '.join(sorted(allowed))}" if allowed else "takes no query parameters"
    raise RequestValidationError(
        [
            {
                "type": "unknown_query_parameter",
                "loc": ("query", name),
                "msg": f"unknown query parameter {name!r}; this route {takes}",
            }
            for name in unknown
        ]
    )
