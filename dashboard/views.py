"""The project's own error page: Django's 500 view, except for a database out of reach."""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template import loader
from django.views import defaults

# How long a client is told to wait before asking again when the database is down.
RETRY_AFTER_SECONDS = 30


def server_error(request, template_name: str = defaults.ERROR_500_TEMPLATE_NAME) -> HttpResponse:
    """Django's 500 view (``handler500``), except that a database it cannot use is a 503 saying so.

    Django calls it while handling the exception, so ``sys.exc_info()`` is
    the error. A database that is down, restarting, locked or not migrated
    (``OperationalError``, or ``InterfaceError`` for a connection that went
    away) is not a bug of ours, and it passes: the page says so, and
    ``Retry-After`` tells a client when to ask again. Any other database
    error (bad data, a broken transaction) is a bug, and the 500 page. Like
    Django's, it renders without the request.
    """
    if not isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        return defaults.server_error(request, template_name)
    html = loader.get_template(template_name).render({"unavailable": True})
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
