"""The dashboard: log-in by mailed link, cookie sessions with CSRF checks, and the pages for an
account's keys, client set-up and plan. Server-rendered (Jinja2 templates in
``web/templates/dashboard``) with htmx (vendored in ``web/static/dashboard/vendor``)."""

from kamiyo.web.dashboard.routes import routes, static_files
from kamiyo.web.dashboard.viewer import LOGIN_PAGE, Dashboard

__all__ = ["LOGIN_PAGE", "Dashboard", "routes", "static_files"]
