"""The web UI: server-rendered pages under ``/ui/`` (Jinja2, no build step, no CDN).

Pages read the database through the same services as the API; the run page follows the
run live through ``GET /tasks/<id>/events``, and its buttons call the API's own write
routes (with the API key, when ``API_KEYS`` is set, as a Bearer header).
"""

from app.ui.routes import router

__all__ = ["router"]
